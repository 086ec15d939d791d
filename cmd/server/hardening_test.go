package main

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

func TestConfigBoundsStreamsKeysAndDatabaseWork(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(nil, func(k string) string { return map[string]string{"BB_CLOUD": "fake"}[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StreamsPerCaller != 10 || cfg.Streams != 500 || cfg.StreamLifetime != 15*time.Minute ||
		cfg.IdempotencyTTL != 24*time.Hour || cfg.DatabaseTimeout != 10*time.Second {
		t.Errorf("defaults: %d streams per caller, %d in all, lifetime %s, keys kept %s, database timeout %s",
			cfg.StreamsPerCaller, cfg.Streams, cfg.StreamLifetime, cfg.IdempotencyTTL, cfg.DatabaseTimeout)
	}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("starting", "config", cfg)
	for _, want := range []string{`"sse_max_per_caller":10`, `"sse_max":500`, `"sse_max_lifetime":"15m0s"`,
		`"idempotency_ttl":"24h0m0s"`, `"database_timeout":"10s"`} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("the start-up log lacks %s: %s", want, logged.String())
		}
	}
	for _, tc := range []struct{ key, value string }{
		{"BB_SSE_MAX_PER_CALLER", "0"}, {"BB_SSE_MAX_PER_CALLER", "ten"}, {"BB_SSE_MAX", "-1"},
		{"BB_SSE_MAX_LIFETIME", "0s"}, {"BB_SSE_MAX_LIFETIME", "forever"},
		{"BB_IDEMPOTENCY_TTL", "-24h"}, {"BB_IDEMPOTENCY_TTL", "1d"},
		{"BB_DATABASE_TIMEOUT", "0"},
	} {
		env := map[string]string{"BB_CLOUD": "fake", tc.key: tc.value}
		if _, err := loadConfig(nil, func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s=%q: error %v, want one naming %s", tc.key, tc.value, err, tc.key)
		}
	}
}

// follow opens an event stream on the request at path and returns its
// body once the first events have arrived.
func follow(t *testing.T, base, path string) io.ReadCloser {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+devToken)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream = %d", resp.StatusCode)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp.Body
}

func TestShutdownWithOpenStreamsIsPromptAndClean(t *testing.T) {
	t.Parallel()
	// No workers: the request stays pending, and its streams stay open.
	srv := startServer(t, map[string]string{"DATABASE_URL": storetest.NewDatabase(t), "BB_CLOUD": "fake", "BB_WORKERS": "0"})
	status, created := call(t, devToken, "POST", srv.base+"/v1/replications", demo("demo-destination", ""))
	if status != http.StatusAccepted {
		t.Fatalf("create = %d", status)
	}
	self := created["links"].(map[string]any)["self"].(string)
	var bodies []io.ReadCloser
	for range 8 {
		bodies = append(bodies, follow(t, srv.base, self))
	}
	start := time.Now()
	if err := srv.stop(); err != nil {
		t.Fatalf("run returned %v with streams open", err)
	}
	// The default grace is 20 s: the streams must not have waited it out.
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutting down with open streams took %s", took)
	}
	for i, b := range bodies {
		lines := bufio.NewScanner(b)
		for lines.Scan() {
		}
		if err := lines.Err(); err != nil {
			t.Errorf("stream %d did not end cleanly: %v", i, err)
		}
	}
}

func TestTheJanitorForgetsExpiredKeysInBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := storetest.NewMigratedDatabase(t)
	st, err := store.Open(ctx, url, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	st.KeepIdempotencyKeys(24 * time.Hour)
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	keys := func() (expired, live int) {
		t.Helper()
		if err := db.QueryRow(ctx, `SELECT count(*) FILTER (WHERE created_at <= now() - interval '24 hours'),
    count(*) FILTER (WHERE created_at > now() - interval '24 hours') FROM idempotency_keys`).Scan(&expired, &live); err != nil {
			t.Fatal(err)
		}
		return expired, live
	}
	if _, err := db.Exec(ctx, `INSERT INTO idempotency_keys (caller, key, request_hash, created_at)
SELECT 'token:jira', 'old-' || g, '\x00'::bytea, now() - interval '25 hours' - g * interval '1 second' FROM generate_series(1, 2500) g
UNION ALL
SELECT 'token:jira', 'young-' || g, '\x00'::bytea, now() - interval '23 hours' FROM generate_series(1, 10) g`); err != nil {
		t.Fatal(err)
	}
	n, err := sweep(ctx, st, 1000)
	if err != nil || n != 2500 {
		t.Fatalf("a sweep forgot %d keys (%v), want the 2500 expired ones", n, err)
	}
	if expired, live := keys(); expired != 0 || live != 10 {
		t.Fatalf("after the sweep %d expired and %d live keys are left, want 0 and 10", expired, live)
	}

	// The janitor keeps sweeping while the server runs.
	jctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		forgetIdempotencyKeys(jctx, st, 20*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
		close(done)
	}()
	if _, err := db.Exec(ctx, `UPDATE idempotency_keys SET created_at = created_at - interval '2 hours'`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { expired, live := keys(); return expired == 0 && live == 0 })
	cancel()
	<-done
}
