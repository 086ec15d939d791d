package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// stateCounter is the part of the store the requests-by-state gauge reads.
type stateCounter interface {
	CountByState(ctx context.Context) (map[provision.State]int, error)
}

// stateCollector reports how many stored requests are in each state, read
// from the database at every scrape, so every replica reports the same.
type stateCollector struct {
	store stateCounter
	log   *slog.Logger
	desc  *prometheus.Desc
}

func newStateCollector(store stateCounter, log *slog.Logger) *stateCollector {
	return &stateCollector{store: store, log: log, desc: prometheus.NewDesc(
		"bucketbridge_replications", "Stored replication requests by state.", []string{"state"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.store.CountByState(ctx)
	if err != nil {
		c.log.WarnContext(ctx, "count replications for metrics", "error", err)
		return
	}
	for _, s := range provision.States {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}
