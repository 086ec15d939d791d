package provision_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"testing"
	"time"

	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/bucketbridge/bucketbridge/internal/awsfake"
	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// BenchmarkProvision provisions batches of requests from distinct source
// buckets into the demo destination, through the worker pool and real
// Postgres, with every fake AWS call taking a fixed latency. It reports the
// throughput and the end-to-end time of a request (created → succeeded).
func BenchmarkProvision(b *testing.B) {
	for _, bc := range []struct {
		workers  int
		requests int
		latency  time.Duration
	}{
		{1, 1, 0}, {1, 1, 20 * time.Millisecond},
		{8, 32, 20 * time.Millisecond}, {16, 32, 20 * time.Millisecond},
	} {
		b.Run(fmt.Sprintf("workers=%d/requests=%d/latency=%s", bc.workers, bc.requests, bc.latency), func(b *testing.B) {
			var e2e []time.Duration
			var total time.Duration
			for range b.N {
				d, per := provisionBatch(b, bc.workers, bc.requests, bc.latency)
				total += d
				e2e = append(e2e, per...)
			}
			sort.Slice(e2e, func(i, j int) bool { return e2e[i] < e2e[j] })
			b.ReportMetric(float64(bc.requests*b.N)/total.Seconds(), "requests/s")
			b.ReportMetric(float64(e2e[len(e2e)/2].Milliseconds()), "p50-ms")
			b.ReportMetric(float64(e2e[len(e2e)*95/100].Milliseconds()), "p95-ms")
		})
	}
}

// provisionBatch runs one batch; set-up is outside the timer and the time
// that counts is returned.
func provisionBatch(b *testing.B, workers, requests int, latency time.Duration) (time.Duration, []time.Duration) {
	b.StopTimer()
	ctx := context.Background()
	st := storetest.New(b)
	c := awsfake.NewWithConfig(awsfake.Config{ReplicationDelay: 50 * time.Millisecond})
	c.SeedDemo("", "")
	specs := make([]provision.Spec, requests)
	for i := range specs {
		s := demoSpec()
		s.Source.Bucket = fmt.Sprintf("bench-source-%d", i)
		if err := c.AddBucket(srcAcct, s.Source.Region, s.Source.Bucket, awsfake.BucketOptions{
			Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: s.Source.KMSKeyARN}); err != nil {
			b.Fatal(err)
		}
		specs[i] = s
	}
	if latency > 0 {
		for _, acct := range []string{srcAcct, dstAcct, awsfake.DemoServiceAccount} {
			c.Faults(acct).Latency("*", latency, 0)
		}
	}
	pool, err := provision.NewPool(provision.PoolConfig{
		Store: st, Sessions: fakeSessions(c, awsfake.DefaultExternalID), Workers: workers,
		Steps: map[provision.Phase][]provision.StepDef{
			provision.PhaseProvision: provision.ProvisionSteps(), provision.PhaseDeprovision: provision.DeprovisionSteps(),
		},
		Poll: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		StepConfig: provision.StepConfig{PollInterval: 50 * time.Millisecond},
	})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	start := time.Now()
	go func() { defer close(done); pool.Run(runCtx) }()
	ids := make([]string, requests)
	for i, s := range specs {
		r, _, err := st.Create(ctx, provision.NewReplication{Spec: s, RequestedBy: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = r.ID
	}
	per := waitAll(b, st, ids)
	elapsed := time.Since(start)
	cancel()
	<-done
	st.Close() // each batch has its own database; free its connections now
	b.StartTimer()
	return elapsed, per
}

// waitAll waits until every request succeeded and returns each one's
// created → finished time.
func waitAll(b *testing.B, st *store.Store, ids []string) []time.Duration {
	deadline := time.Now().Add(2 * time.Minute)
	var out []time.Duration
	for _, id := range ids {
		for {
			r, err := st.Get(context.Background(), id)
			if err != nil {
				b.Fatal(err)
			}
			if r.State == provision.StateSucceeded {
				out = append(out, r.FinishedAt.Sub(r.CreatedAt))
				break
			}
			if r.State.Terminal() || time.Now().After(deadline) {
				b.Fatalf("request %s is %s: %s", id, r.State, r.LastError)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return out
}
