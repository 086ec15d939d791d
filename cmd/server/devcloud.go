package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/awsfake"
	"github.com/bucketbridge/bucketbridge/internal/store"
)

// openDevCloud returns dev mode's in-memory AWS, kept in the database of
// the requests: the world a previous server left there, or the demo world
// when there is none. Every call of the returned cloud answers only once
// the world it left is saved, so a restarted server never finds an AWS
// older than its requests' records.
//
// Replicas sharing a database in dev mode each have a world of their own,
// and the database keeps the one saved last; with BB_FAKE_PERSIST=false
// the world lives in the process alone, from the demo seed.
func openDevCloud(ctx context.Context, cfg config, st *store.Store, log *slog.Logger) (*awsfake.Cloud, error) {
	if !cfg.FakePersist {
		cloud := awsfake.NewDemo(cfg.ProvisionerRole, cfg.ExternalID)
		if err := cloud.SeedBench(cfg.FakeBenchSources); err != nil {
			return nil, err
		}
		tuneDevCloud(cloud, cfg)
		log.InfoContext(ctx, "dev mode: the in-memory AWS lives in this process alone (BB_FAKE_PERSIST=false)")
		return cloud, nil
	}
	cloud := awsfake.NewWithConfig(awsfake.Config{SaveFunc: st.SaveDevCloud})
	saved, err := st.LoadDevCloud(ctx)
	if err != nil {
		return nil, err
	}
	if saved == nil {
		cloud.SeedDemo(cfg.ProvisionerRole, cfg.ExternalID)
		if err := cloud.SeedBench(cfg.FakeBenchSources); err != nil {
			return nil, err
		}
		log.InfoContext(ctx, "dev mode: seeded the demo world into the in-memory AWS, which is kept in the database from now on")
	} else {
		var snap awsfake.Snapshot
		if err := json.Unmarshal(saved, &snap); err != nil {
			return nil, fmt.Errorf("dev mode: read the in-memory AWS saved in the database: %w (make reset-dev starts dev mode over)", err)
		}
		if err := cloud.Restore(&snap); err != nil {
			return nil, fmt.Errorf("dev mode: %w (make reset-dev starts dev mode over)", err)
		}
		// The provisioner role and external ID follow this server's
		// settings, whatever they were when the world was saved.
		cloud.SeedProvisioners(cfg.ProvisionerRole, cfg.ExternalID)
		log.InfoContext(ctx, "dev mode: restored the in-memory AWS from the database", "buckets", len(snap.Buckets),
			"keys", len(snap.Keys), "pending_replications", len(snap.Pending))
	}
	if err := cloud.Flush(ctx); err != nil {
		return nil, fmt.Errorf("dev mode: save the in-memory AWS: %w", err)
	}
	tuneDevCloud(cloud, cfg)
	return cloud, nil
}

// tuneDevCloud adds BB_FAKE_LATENCY to every call of the in-memory AWS.
func tuneDevCloud(cloud *awsfake.Cloud, cfg config) {
	if cfg.FakeLatency > 0 {
		for _, acct := range append(awsfake.Demo().Accounts, awsfake.DemoServiceAccount) {
			cloud.Faults(acct).Latency("*", cfg.FakeLatency, 0)
		}
	}
}

// flushDevCloud saves what changed in the background since the last call
// (replications decided after their caller stopped asking), before the
// store closes. What it cannot save is decided again after the restart.
func flushDevCloud(ctx context.Context, cloud *awsfake.Cloud, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := cloud.Flush(ctx); err != nil {
		log.WarnContext(ctx, "dev mode: the in-memory AWS's last changes are not saved; pending replications are decided again at the next start", "error", err)
	}
}
