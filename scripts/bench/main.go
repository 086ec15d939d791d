// Command bench measures bucketbridge by driving the real server binary
// (HTTP, Postgres, the worker pool and the in-memory AWS of dev mode) and
// prints one table. Absolute figures swing several-fold from one day to the
// next on shared machines, so every figure that can be is set against a
// baseline measured in the same run (pgbench on the same database, or
// another figure of the same run), and the goal is a ratio.
//
//	go run ./scripts/bench            # everything (about 3 minutes on 2 cores)
//	go run ./scripts/bench -only W1,W2
//	go run ./scripts/bench -quick     # fewer requests, for a quick look
//	go run ./scripts/bench -only W3 -pool 60   # servers with a larger database pool
//	go run ./scripts/bench -only W3 -w3 640    # W3 with 640 requests instead of 200
//
// It needs Postgres at DATABASE_URL (each scenario gets a database of its
// own, dropped afterwards) and pgbench. make bench runs it.
package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/awsfake"
	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
)

const (
	token      = "bench-token-0123456789"
	defaultDB  = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	awsLatency = 20 * time.Millisecond
)

// row is one line of the table.
type row struct {
	id, what, measured, baseline, ratio, goal string
	met                                       bool
	notes                                     []string
}

type bench struct {
	bin   string
	admin string
	tmp   string
	quick bool
	// pool, when set, is every server's pool_max_conns.
	pool int
	// w3, when set, is how many requests W3 runs.
	w3      int
	results []row
	// single is W1's one-request time, W3's yardstick.
	single time.Duration
}

func main() {
	only := flag.String("only", "", "comma-separated scenario ids (A1,A3,Q1,W0,W1,W2,W3,W4,R1,M1); all when empty")
	quick := flag.Bool("quick", false, "fewer requests")
	pool := flag.Int("pool", 0, "every server's database pool size (pool_max_conns); the server's own default when 0")
	w3 := flag.Int("w3", 0, "how many requests W3 runs; 200 (64 with -quick) when 0")
	flag.Parse()
	if err := run(*only, *quick, *pool, *w3); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(only string, quick bool, pool, w3 int) error {
	tmp, err := os.MkdirTemp("", "bucketbridge-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	b := &bench{bin: filepath.Join(tmp, "bucketbridge"), admin: cmp.Or(os.Getenv("DATABASE_URL"), defaultDB), tmp: tmp, quick: quick, pool: pool, w3: w3}
	fmt.Fprintln(os.Stderr, "building the server…")
	if out, err := exec.Command("go", "build", "-o", b.bin, "./cmd/server").CombinedOutput(); err != nil {
		return fmt.Errorf("build the server: %v\n%s", err, out)
	}
	scenarios := []struct {
		id string
		fn func(context.Context) error
	}{
		{"A1", b.createLatencyUnderLoad}, {"A3", b.createSaturation}, {"Q1", b.claimLatency},
		{"W0", b.oneRequest(0)}, {"W1", b.oneRequest(awsLatency)}, {"W2", b.sharedDestination},
		{"W3", b.distinctDestinations}, {"W4", b.replicas}, {"R1", b.resumeAfterKill}, {"M1", b.manyStored},
	}
	ctx := context.Background()
	for _, s := range scenarios {
		if only != "" && !slices.Contains(strings.Split(only, ","), s.id) {
			continue
		}
		fmt.Fprintf(os.Stderr, "running %s…\n", s.id)
		if err := s.fn(ctx); err != nil {
			b.results = append(b.results, row{id: s.id, what: "error", measured: err.Error()})
		}
	}
	b.print(os.Stdout)
	return nil
}

func (b *bench) print(w io.Writer) {
	fmt.Fprintln(w, "| # | what | measured | baseline, same run | ratio | goal | met |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range b.results {
		met := "no"
		if r.met {
			met = "yes"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.id, r.what, r.measured, r.baseline, r.ratio, r.goal, met)
	}
	for _, r := range b.results {
		for _, n := range r.notes {
			fmt.Fprintf(w, "\n%s: %s\n", r.id, n)
		}
	}
}

// database creates an empty database and returns its URL and its drop.
func (b *bench) database(ctx context.Context) (string, func(), error) {
	conn, err := pgx.Connect(ctx, b.admin)
	if err != nil {
		return "", nil, fmt.Errorf("connect to %s: %w", b.admin, err)
	}
	defer conn.Close(ctx)
	name := "bb_bench_" + randomHex(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	u, err := url.Parse(b.admin)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		c, err := pgx.Connect(context.Background(), b.admin)
		if err == nil {
			c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)") //nolint:errcheck // best effort
			c.Close(context.Background())
		}
	}
	return u.String(), drop, nil
}

// server is one server process.
type server struct {
	cmd  *exec.Cmd
	base string
	log  *bytes.Buffer
	done chan struct{}
}

// start runs the server binary in dev mode on dbURL with env on top.
func (b *bench) start(ctx context.Context, dbURL string, env map[string]string) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	if b.pool > 0 {
		u, err := url.Parse(dbURL)
		if err != nil {
			return nil, err
		}
		q := u.Query()
		q.Set("pool_max_conns", strconv.Itoa(b.pool))
		u.RawQuery = q.Encode()
		dbURL = u.String()
	}
	cmd := exec.Command(b.bin)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "BB_LISTEN="+addr, "BB_CLOUD=fake",
		"BB_API_TOKENS=bench:"+token, "BB_RATE_LIMIT=0", "BB_SSE_MAX_PER_CALLER=1000",
		// Benchmarks measure bucketbridge, not dev mode's saves of its
		// in-memory AWS; several processes share one database in W4.
		"BB_FAKE_PERSIST=false")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	s := &server{cmd: cmd, base: "http://" + addr, log: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stderr, cmd.Stdout = s.log, s.log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { cmd.Wait(); close(s.done) }() //nolint:errcheck // the exit is read from done
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("the server exited: %s", tail(s.log.String()))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, errors.New("the server did not become ready within a minute")
		}
	}
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck // it may have exited
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		s.kill()
	}
}

func (s *server) kill() {
	s.cmd.Process.Kill() //nolint:errcheck // it may have exited
	<-s.done
}

// rss is the process's resident memory in bytes.
func (s *server) rss() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}, Timeout: 2 * time.Minute}

// spec is a request body from one bucket into another.
func spec(src, dst, prefix string, verify bool) []byte {
	b, _ := json.Marshal(map[string]any{
		"source": map[string]string{"account_id": awsfake.DemoSourceAccount, "region": awsfake.DemoSourceRegion,
			"bucket": src, "kms_key_arn": awsfake.DemoSourceKey},
		"destination": map[string]string{"account_id": awsfake.DemoDestinationAccount, "region": awsfake.DemoDestinationRegion,
			"bucket": dst, "kms_key_arn": destinationKey(dst)},
		"rule":   map[string]string{"prefix": prefix},
		"verify": verify,
	})
	return b
}

// destinationKey is the key that encrypts a destination bucket of the
// dev-mode world: a bench destination's own, or KB.
func destinationKey(bucket string) string {
	if i, err := strconv.Atoi(strings.TrimPrefix(bucket, awsfake.BenchDestinationPrefix)); err == nil {
		return awsfake.BenchDestinationKey(i)
	}
	return awsfake.DemoDestinationKey
}

func benchPair(i int) (string, string) {
	return fmt.Sprintf("%s%d", awsfake.BenchSourcePrefix, i), fmt.Sprintf("%s%d", awsfake.BenchDestinationPrefix, i)
}

// create posts one request and returns its id, status and latency.
func (s *server) create(body []byte) (string, int, time.Duration, error) {
	req, _ := http.NewRequest(http.MethodPost, s.base+"/v1/replications", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, 0, err
	}
	defer resp.Body.Close()
	var out struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&out) //nolint:errcheck // a failed create has no id
	return out.ID, resp.StatusCode, time.Since(start), nil
}

func (s *server) get(path string) (int, time.Duration, []byte, error) {
	req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, time.Since(start), body, err
}

// waitFinished waits until every request is in a terminal state and
// returns how many succeeded.
func waitFinished(ctx context.Context, dbURL string, ids []string, within time.Duration) (int, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	deadline := time.Now().Add(within)
	for {
		var open, ok int
		err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE finished_at IS NULL), count(*) FILTER (WHERE state = 'succeeded')
FROM replications WHERE id = ANY($1::uuid[])`, ids).Scan(&open, &ok)
		if err != nil {
			return 0, err
		}
		if open == 0 {
			return ok, nil
		}
		if time.Now().After(deadline) {
			return ok, fmt.Errorf("%d of %d requests still unfinished after %s", open, len(ids), within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scalar runs a query of one value on a connection of its own to dbURL.
func scalar[T any](ctx context.Context, dbURL, sql string, args ...any) (T, error) {
	var v T
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return v, err
	}
	defer conn.Close(ctx)
	err = conn.QueryRow(ctx, sql, args...).Scan(&v)
	return v, err
}

// span is the time from the first creation to the last finish.
func span(ctx context.Context, dbURL string, ids []string) (time.Duration, error) {
	return scalar[time.Duration](ctx, dbURL, `SELECT max(finished_at) - min(created_at) FROM replications WHERE id = ANY($1::uuid[])`, ids)
}

// durations returns finished_at - created_at of each request.
func durations(ctx context.Context, dbURL string, ids []string) ([]time.Duration, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT finished_at - created_at FROM replications WHERE id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[time.Duration])
}

// createLatencyUnderLoad is A1: creates at 200/s for 10 s while 8 workers
// provision them, against pgbench's one-row INSERT at the same rate.
func (b *bench) createLatencyUnderLoad(ctx context.Context) error {
	const rate, seconds = 200, 10
	n := rate * seconds
	db, drop, err := b.database(ctx)
	if err != nil {
		return err
	}
	defer drop()
	s, err := b.start(ctx, db, map[string]string{"BB_WORKERS": "8", "BB_FAKE_LATENCY": awsLatency.String(), "BB_FAKE_BENCH_SOURCES": strconv.Itoa(n)})
	if err != nil {
		return err
	}
	defer s.stop()
	lat := make([]time.Duration, n)
	fails := 0
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / rate)))
		src, dst := benchPair(i + 1)
		wg.Go(func() {
			scheduled := start.Add(time.Duration(i) * time.Second / rate)
			_, status, _, err := s.create(spec(src, dst, "", false))
			mu.Lock()
			defer mu.Unlock()
			lat[i] = time.Since(scheduled)
			if err != nil || status != http.StatusAccepted {
				fails++
			}
		})
	}
	wg.Wait()
	p99 := percentile(lat, 99)
	base, err := b.pgbenchLatency(ctx, db, rate, seconds)
	if err != nil {
		return err
	}
	r := row{id: "A1", what: fmt.Sprintf("create p99 at %d/s for %d s, 8 workers busy (AWS calls %s)", rate, seconds, awsLatency),
		measured: ms(p99), baseline: "pgbench one-row INSERT p99 at the same rate " + ms(base),
		ratio: ratio(p99, base), goal: "≤ 3×", met: float64(p99) <= 3*float64(base)}
	if fails > 0 {
		r.notes = append(r.notes, fmt.Sprintf("%d of %d creates did not answer 202", fails, n))
		r.met = false
	}
	b.results = append(b.results, r)
	return nil
}

// pgbenchLatency runs pgbench's one-row INSERT at rate for seconds on db
// and returns its p99 latency, schedule lag included (as the HTTP latency
// above counts from the scheduled time).
func (b *bench) pgbenchLatency(ctx context.Context, db string, rate, seconds int) (time.Duration, error) {
	if err := prepareInsert(ctx, db); err != nil {
		return 0, err
	}
	script := filepath.Join(b.tmp, "insert.sql")
	os.WriteFile(script, []byte("INSERT INTO bench_rows (payload) VALUES ('x');\n"), 0o644) //nolint:errcheck // pgbench says if not
	prefix := filepath.Join(b.tmp, "pgbench-"+randomHex(4))
	cmd := exec.CommandContext(ctx, "pgbench", "-n", "-f", script, "-c", "8", "-j", "2", "-R", strconv.Itoa(rate),
		"-T", strconv.Itoa(seconds), "-l", "--log-prefix", prefix, db)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("pgbench: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(prefix + "*")
	var lat []time.Duration
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		for _, l := range strings.Split(string(data), "\n") {
			// client transaction latency_us script epoch us [lag_us]
			f := strings.Fields(l)
			if len(f) < 6 {
				continue
			}
			us, _ := strconv.ParseInt(f[2], 10, 64)
			if len(f) >= 7 {
				lag, _ := strconv.ParseInt(f[6], 10, 64)
				us += lag
			}
			lat = append(lat, time.Duration(us)*time.Microsecond)
		}
		os.Remove(f)
	}
	if len(lat) == 0 {
		return 0, errors.New("pgbench logged no transaction")
	}
	return percentile(lat, 99), nil
}

func prepareInsert(ctx context.Context, db string) error {
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_rows (id bigserial PRIMARY KEY, payload text NOT NULL)`)
	return err
}

// apiServer starts an API-only server (no workers) on a database of its
// own; stop stops it and drops the database.
func (b *bench) apiServer(ctx context.Context) (db string, s *server, stop func(), err error) {
	db, drop, err := b.database(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	if s, err = b.start(ctx, db, map[string]string{"BB_WORKERS": "0"}); err != nil {
		drop()
		return "", nil, nil, err
	}
	return db, s, func() { s.stop(); drop() }, nil
}

// createSaturation is A3: creates per second at most (an API-only server,
// 16 clients back to back), against pgbench's one-row INSERT with 8 clients.
func (b *bench) createSaturation(ctx context.Context) error {
	const clients, seconds = 16, 10
	db, s, stop, err := b.apiServer(ctx)
	if err != nil {
		return err
	}
	defer stop()
	var mu sync.Mutex
	done, seq := 0, 0
	end := time.Now().Add(seconds * time.Second)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for time.Now().Before(end) {
				mu.Lock()
				seq++
				n := seq
				mu.Unlock()
				_, status, _, err := s.create(spec(awsfake.DemoSourceBucket, awsfake.DemoDestinationBucket, fmt.Sprintf("a3/%d/", n), false))
				if err == nil && status == http.StatusAccepted {
					mu.Lock()
					done++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	tps := float64(done) / seconds
	if err := prepareInsert(ctx, db); err != nil {
		return err
	}
	script := filepath.Join(b.tmp, "insert.sql")
	os.WriteFile(script, []byte("INSERT INTO bench_rows (payload) VALUES ('x');\n"), 0o644) //nolint:errcheck // pgbench says if not
	out, err := exec.CommandContext(ctx, "pgbench", "-n", "-f", script, "-c", "8", "-j", "2", "-T", strconv.Itoa(seconds), db).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgbench: %v\n%s", err, out)
	}
	base := pgbenchTPS(string(out))
	b.results = append(b.results, row{id: "A3", what: fmt.Sprintf("creates answered 202 per second, %d clients, API only", clients),
		measured: fmt.Sprintf("%.0f/s", tps), baseline: fmt.Sprintf("pgbench one-row INSERT, 8 clients: %.0f tps", base),
		ratio: fmt.Sprintf("%.2f", tps/base), goal: "≥ 0.5×", met: tps >= 0.5*base})
	return nil
}

func pgbenchTPS(out string) float64 {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "tps = ") {
			v, _ := strconv.ParseFloat(strings.Fields(strings.TrimPrefix(l, "tps = "))[0], 64)
			return v
		}
	}
	return 0
}

// claimLatency is Q1: from creation to a worker's claim, idle pool.
func (b *bench) claimLatency(ctx context.Context) error {
	n := 200
	if b.quick {
		n = 50
	}
	db, drop, err := b.database(ctx)
	if err != nil {
		return err
	}
	defer drop()
	s, err := b.start(ctx, db, map[string]string{"BB_WORKERS": "8", "BB_FAKE_BENCH_SOURCES": strconv.Itoa(n)})
	if err != nil {
		return err
	}
	defer s.stop()
	var ids []string
	for i := range n {
		src, dst := benchPair(i + 1)
		id, status, _, err := s.create(spec(src, dst, "", false))
		if err != nil || status != http.StatusAccepted {
			return fmt.Errorf("create: %d %v", status, err)
		}
		ids = append(ids, id)
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := waitFinished(ctx, db, ids, 2*time.Minute); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT c.at - a.at FROM replication_events a
JOIN replication_events c ON c.replication_id = a.replication_id AND c.state = 'running'
WHERE a.state = 'pending' AND a.replication_id = ANY($1::uuid[])`, ids)
	if err != nil {
		return err
	}
	waits, err := pgx.CollectRows(rows, pgx.RowTo[time.Duration])
	if err != nil {
		return err
	}
	p99 := percentile(waits, 99)
	b.results = append(b.results, row{id: "Q1", what: fmt.Sprintf("created → claimed p99, idle pool of 8 (%d requests)", n),
		measured: ms(p99), baseline: "—", ratio: "—", goal: "≤ 50 ms", met: p99 <= 50*time.Millisecond})
	return nil
}

// oneRequest is W0 (no AWS latency) and W1 (d per AWS call): one request
// at a time, created to finished, median of several.
func (b *bench) oneRequest(d time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
		n := 15
		if b.quick {
			n = 5
		}
		db, drop, err := b.database(ctx)
		if err != nil {
			return err
		}
		defer drop()
		s, err := b.start(ctx, db, map[string]string{"BB_WORKERS": "8", "BB_FAKE_LATENCY": d.String(), "BB_FAKE_BENCH_SOURCES": strconv.Itoa(n)})
		if err != nil {
			return err
		}
		defer s.stop()
		var times []time.Duration
		for i := range n {
			src, dst := benchPair(i + 1)
			id, status, _, err := s.create(spec(src, dst, "", true))
			if err != nil || status != http.StatusAccepted {
				return fmt.Errorf("create: %d %v", status, err)
			}
			if ok, err := waitFinished(ctx, db, []string{id}, time.Minute); err != nil || ok != 1 {
				return fmt.Errorf("request %s did not succeed: %v\n%s", id, err, tail(s.log.String()))
			}
			t, err := durations(ctx, db, []string{id})
			if err != nil {
				return err
			}
			times = append(times, t[0])
		}
		med := percentile(times, 50)
		delay := awsfake.DefaultReplicationDelay
		if d == 0 {
			got := med - delay
			b.results = append(b.results, row{id: "W0", what: "one request, no AWS latency, minus the fake's replication delay (" + ms(delay) + ")",
				measured: ms(got), baseline: "—", ratio: "—", goal: "≤ 40 ms", met: got <= 40*time.Millisecond,
				notes: []string{fmt.Sprintf("created → succeeded, median of %d: %s", n, ms(med))}})
			return nil
		}
		b.single = med
		bound := 16*d + delay + 40*time.Millisecond
		b.results = append(b.results, row{id: "W1", what: fmt.Sprintf("one request, %s per AWS call, created → succeeded (median of %d)", d, n),
			measured: ms(med), baseline: "16 × d + replication delay + 40 ms = " + ms(bound), ratio: ratio(med, bound),
			goal: "≤ 1×", met: med <= bound})
		return nil
	}
}

// load is what a throughput run measured.
type load struct {
	rps float64 // requests per second, first creation to last finish
	ok  int     // requests that succeeded
	// commits is the transactions the database committed per request (its
	// creation, its work and the bench's own polling), which says what
	// each request costs Postgres whatever the machine's speed that day.
	commits float64
	// cpu is the CPU time per request of the server and of Postgres; zero
	// when Postgres is not a process of this machine.
	cpu cpuUse
}

func (l load) String() string {
	return fmt.Sprintf("%.1f requests/s (%d succeeded; %.1f commits a request)", l.rps, l.ok, l.commits)
}

// cpuNote says, after prefix, what the CPU time per request allows the
// machine, when it was measured. The load generator's share of the cores
// is left out, so the bound is generous.
func (l load) cpuNote(prefix string) []string {
	per := l.cpu.server + l.cpu.postgres
	if per <= 0 {
		return nil
	}
	cores := runtime.NumCPU()
	return []string{fmt.Sprintf("%sCPU per request %s in the server and %s in Postgres; at that cost %d cores serve at most %.0f requests/s",
		prefix, ms(l.cpu.server), ms(l.cpu.postgres), cores, float64(cores)/per.Seconds())}
}

// throughput runs n requests with workers.
func (b *bench) throughput(ctx context.Context, workers, n int, pair func(i int) (string, string)) (load, error) {
	db, drop, err := b.database(ctx)
	if err != nil {
		return load{}, err
	}
	defer drop()
	s, err := b.start(ctx, db, map[string]string{"BB_WORKERS": strconv.Itoa(workers), "BB_FAKE_LATENCY": awsLatency.String(),
		"BB_FAKE_BENCH_SOURCES": strconv.Itoa(n)})
	if err != nil {
		return load{}, err
	}
	defer s.stop()
	meter, _ := newCPUMeter(ctx, s.cmd.Process.Pid, db) // nil when Postgres is elsewhere
	before, err := committed(ctx, db)
	if err != nil {
		return load{}, err
	}
	var cpu0 cpuUse
	if meter != nil {
		cpu0, _ = meter.read()
	}
	ids, err := createAll(s, n, pair)
	if err != nil {
		return load{}, err
	}
	var l load
	if l.ok, err = waitFinished(ctx, db, ids, 10*time.Minute); err != nil {
		return l, err
	}
	if meter != nil {
		if cpu1, err := meter.read(); err == nil {
			l.cpu = cpuUse{server: (cpu1.server - cpu0.server) / time.Duration(n), postgres: (cpu1.postgres - cpu0.postgres) / time.Duration(n)}
		}
	}
	d, err := span(ctx, db, ids)
	if err != nil {
		return l, err
	}
	l.rps = float64(n) / d.Seconds()
	s.stop() // its connections report their last statistics as they close
	after, err := committed(ctx, db)
	if err != nil {
		return l, err
	}
	l.commits = float64(after-before) / float64(n)
	return l, nil
}

// committed is how many transactions the database at dbURL has committed.
func committed(ctx context.Context, dbURL string) (int64, error) {
	return scalar[int64](ctx, dbURL, `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`)
}

// createAll creates n requests at once (16 at a time) and returns their ids.
func createAll(s *server, n int, pair func(i int) (string, string)) ([]string, error) {
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			src, dst := pair(i + 1)
			id, status, _, err := s.create(spec(src, dst, "", true))
			if err == nil && status != http.StatusAccepted {
				err = fmt.Errorf("create answered %d", status)
			}
			ids[i], errs[i] = id, err
		})
	}
	wg.Wait()
	return ids, errors.Join(errs...)
}

// sharedDestination is W2: requests from distinct sources into one
// destination bucket and key, whose documents they all share.
//
// 150 requests, not 200: each source bucket has its own role, named in
// two statements of the destination's bucket policy, and S3 caps a bucket
// policy at 20 KB, which about 150 roles of these names fill; beyond that
// requests fail, as they would on AWS.
func (b *bench) sharedDestination(ctx context.Context) error {
	n := 150
	if b.quick {
		n = 64
	}
	l, err := b.throughput(ctx, 16, n, func(i int) (string, string) {
		src, _ := benchPair(i)
		return src, awsfake.DemoDestinationBucket
	})
	if err != nil {
		return err
	}
	b.results = append(b.results, row{id: "W2", what: fmt.Sprintf("%d requests from distinct sources into one destination, %s per call, 16 workers", n, awsLatency),
		measured: l.String(), baseline: "—", ratio: "—", goal: "≥ 40 requests/s", met: l.rps >= 40 && l.ok == n,
		notes: l.cpuNote("")})
	return nil
}

// distinctDestinations is W3: requests that share no document, against
// W / the one-request time of W1.
func (b *bench) distinctDestinations(ctx context.Context) error {
	if b.single == 0 {
		if err := b.oneRequest(awsLatency)(ctx); err != nil {
			return err
		}
	}
	n := 200
	if b.quick {
		n = 64
	}
	n = cmp.Or(b.w3, n)
	for _, w := range []int{8, 32, 64} {
		l, err := b.throughput(ctx, w, n, benchPair)
		if err != nil {
			return err
		}
		ideal := float64(w) / b.single.Seconds()
		// n requests on w workers take at least ⌈n/w⌉ one-request times
		// even on a machine of unbounded speed.
		ceiling := fmt.Sprintf("%d workers: %d requests take at least %d × one request, so the ratio is at most %.2f",
			w, n, (n+w-1)/w, float64(n)/float64(w*((n+w-1)/w)))
		b.results = append(b.results, row{id: "W3", what: fmt.Sprintf("%d requests into distinct destinations, %s per call, %d workers", n, awsLatency, w),
			measured: l.String(), baseline: fmt.Sprintf("W / one request (%s) = %.1f/s", ms(b.single), ideal),
			ratio: fmt.Sprintf("%.2f", l.rps/ideal), goal: "≥ 0.9×", met: l.rps >= 0.9*ideal && l.ok == n,
			notes: append(l.cpuNote(fmt.Sprintf("%d workers: ", w)), ceiling)})
	}
	return nil
}

// replicas is W4: 3 server processes of 8 workers on one database against
// one process of 24, and no step run twice. The machine's speed drifts
// within minutes, so the two are run in turns, a quarter of the requests
// at a time and in the order A B B A A B B A, which cancels a steady drift;
// each side's rate is all its requests over all its time.
func (b *bench) replicas(ctx context.Context) error {
	n, rounds := 2000, 4
	if b.quick {
		n, rounds = 300, 2
	}
	type side struct {
		procs, workers, ok, twice int
		took                      time.Duration
	}
	measure := func(sd *side, n int) error {
		db, drop, err := b.database(ctx)
		if err != nil {
			return err
		}
		defer drop()
		var servers []*server
		for range sd.procs {
			s, err := b.start(ctx, db, map[string]string{"BB_WORKERS": strconv.Itoa(sd.workers), "BB_FAKE_LATENCY": awsLatency.String(),
				"BB_FAKE_BENCH_SOURCES": strconv.Itoa(n)})
			if err != nil {
				return err
			}
			defer s.stop()
			servers = append(servers, s)
		}
		ids, err := createAll(servers[0], n, benchPair)
		if err != nil {
			return err
		}
		ok, err := waitFinished(ctx, db, ids, 20*time.Minute)
		sd.ok += ok
		if err != nil {
			return err
		}
		d, err := span(ctx, db, ids)
		if err != nil {
			return err
		}
		sd.took += d
		twice, err := doubleRuns(ctx, db)
		sd.twice += twice
		return err
	}
	one, three := &side{procs: 1, workers: 24}, &side{procs: 3, workers: 8}
	for r := range rounds {
		turns := []*side{one, three}
		if r%2 == 1 {
			turns = []*side{three, one}
		}
		for _, sd := range turns {
			if err := measure(sd, n/rounds); err != nil {
				return err
			}
		}
	}
	rate := func(sd *side) float64 { return float64(n) / sd.took.Seconds() }
	b.results = append(b.results, row{id: "W4", what: fmt.Sprintf("%d requests, 3 processes × 8 workers vs 1 × 24, %s per call, in turns of %d", n, awsLatency, n/rounds),
		measured: fmt.Sprintf("%.1f requests/s (%d succeeded, %d steps run twice)", rate(three), three.ok, three.twice),
		baseline: fmt.Sprintf("1 × 24: %.1f requests/s (%d succeeded, %d steps run twice)", rate(one), one.ok, one.twice),
		ratio:    fmt.Sprintf("%.2f", rate(three)/rate(one)), goal: "≥ 0.9×, 0 run twice",
		met: rate(three) >= 0.9*rate(one) && three.twice == 0 && one.twice == 0 && one.ok == n && three.ok == n})
	return nil
}

// doubleRuns counts step attempts beyond the first that no failure asked
// for, and requests resumed after a lost lease: a step run twice.
func doubleRuns(ctx context.Context, db string) (int, error) {
	return scalar[int](ctx, db, `SELECT
  (SELECT coalesce(sum(s.attempts - 1), 0) FROM replication_steps s
   WHERE NOT EXISTS (SELECT 1 FROM replication_events e WHERE e.replication_id = s.replication_id AND e.type = 'retry'))
+ (SELECT count(*) FROM replication_events WHERE type = 'lease')`)
}

// resumeAfterKill is R1: a process holding 8 running requests is killed
// with SIGKILL; another resumes each within the lease and 5 s.
func (b *bench) resumeAfterKill(ctx context.Context) error {
	const lease = 30 * time.Second
	db, drop, err := b.database(ctx)
	if err != nil {
		return err
	}
	defer drop()
	env := map[string]string{"BB_WORKERS": "8", "BB_LEASE": lease.String(), "BB_FAKE_LATENCY": "300ms", "BB_FAKE_BENCH_SOURCES": "8"}
	victim, err := b.start(ctx, db, env)
	if err != nil {
		return err
	}
	ids, err := createAll(victim, 8, benchPair)
	if err != nil {
		victim.kill()
		return err
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		victim.kill()
		return err
	}
	defer conn.Close(ctx)
	for deadline := time.Now().Add(time.Minute); ; {
		var held int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM replications WHERE state = 'running' AND lease_owner IS NOT NULL`).Scan(&held); err != nil {
			victim.kill()
			return err
		}
		if held == 8 {
			break
		}
		if time.Now().After(deadline) {
			victim.kill()
			return fmt.Errorf("only %d of 8 requests running", held)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // well inside the steps
	killed := time.Now()
	victim.kill()
	rescuer, err := b.start(ctx, db, env)
	if err != nil {
		return err
	}
	defer rescuer.stop()
	ok, err := waitFinished(ctx, db, ids, 3*time.Minute)
	if err != nil {
		return err
	}
	rows, err := conn.Query(ctx, `SELECT min(at) FROM replication_events WHERE type = 'lease' AND replication_id = ANY($1::uuid[]) GROUP BY replication_id`, ids)
	if err != nil {
		return err
	}
	resumed, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
	if err != nil {
		return err
	}
	var worst time.Duration
	for _, at := range resumed {
		worst = max(worst, at.Sub(killed))
	}
	b.results = append(b.results, row{id: "R1", what: fmt.Sprintf("kill -9 of a process running 8 requests, %s lease: kill → resumed, worst", lease),
		measured: fmt.Sprintf("%s (%d resumed, %d succeeded)", ms(worst), len(resumed), ok), baseline: "lease + 5 s = " + ms(lease+5*time.Second),
		ratio: ratio(worst, lease+5*time.Second), goal: "≤ 1×, all succeed", met: worst <= lease+5*time.Second && len(resumed) == 8 && ok == 8})
	return nil
}

// manyStored is M1: 100k stored requests and 100 open event streams.
func (b *bench) manyStored(ctx context.Context) error {
	const stored, streams = 100000, 100
	db, s, stop, err := b.apiServer(ctx)
	if err != nil {
		return err
	}
	defer stop()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `INSERT INTO replications (id, state, source_account_id, source_region, source_bucket, source_kms_key_arn,
	destination_account_id, destination_region, destination_bucket, destination_kms_key_arn, rule_prefix, requested_by, approved_by, created_at)
SELECT gen_random_uuid(), 'pending', $1, $2, $3, $4, $5, $6, $7, $8, 'm1/' || g || '/', 'token:bench', 'token:bench', now() - g * interval '1 second'
FROM generate_series(1, $9::int) g`, awsfake.DemoSourceAccount, awsfake.DemoSourceRegion, awsfake.DemoSourceBucket, awsfake.DemoSourceKey,
		awsfake.DemoDestinationAccount, awsfake.DemoDestinationRegion, awsfake.DemoDestinationBucket, awsfake.DemoDestinationKey, stored)
	if err != nil {
		return fmt.Errorf("store %d requests: %w", stored, err)
	}
	conn.Exec(ctx, "ANALYZE replications") //nolint:errcheck // only the plan's statistics
	rows, err := conn.Query(ctx, `SELECT id::text FROM replications ORDER BY created_at DESC LIMIT $1`, streams)
	if err != nil {
		return err
	}
	follow, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	sctx, stopStreams := context.WithCancel(ctx)
	defer stopStreams()
	opened := make(chan error, streams)
	for _, id := range follow {
		go func() {
			req, _ := http.NewRequestWithContext(sctx, http.MethodGet, s.base+"/v1/replications/"+id+"/events", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Accept", "text/event-stream")
			resp, err := (&http.Client{}).Do(req)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("stream answered %d", resp.StatusCode)
			}
			opened <- err
			if err == nil {
				io.Copy(io.Discard, resp.Body) //nolint:errcheck // read until the stream is stopped
				resp.Body.Close()
			}
		}()
	}
	for range streams {
		if err := <-opened; err != nil {
			return err
		}
	}
	var lat []time.Duration
	cursor := ""
	for range 200 {
		path := "/v1/replications?limit=50"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		status, d, body, err := s.get(path)
		if err != nil || status != http.StatusOK {
			return fmt.Errorf("list: %d %v", status, err)
		}
		lat = append(lat, d)
		var page struct {
			NextCursor *string `json:"next_cursor"`
		}
		json.Unmarshal(body, &page) //nolint:errcheck // a page without a cursor starts over
		cursor = ""
		if page.NextCursor != nil {
			cursor = *page.NextCursor
		}
	}
	rss, err := s.rss()
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, db, 2)
	if err != nil {
		return err
	}
	plan, err := st.ListPlan(ctx, provision.Filter{Limit: 50, Scope: provision.Scope{All: true}})
	st.Close()
	if err != nil {
		return err
	}
	p99 := percentile(lat, 99)
	b.results = append(b.results, row{id: "M1", what: fmt.Sprintf("%dk stored requests, %d open event streams", stored/1000, streams),
		measured: fmt.Sprintf("RSS %.0f MB; list p99 %s", float64(rss)/(1<<20), ms(p99)), baseline: "—", ratio: "—",
		goal: "RSS ≤ 150 MB; list p99 ≤ 20 ms, keyset index", met: rss <= 150<<20 && p99 <= 20*time.Millisecond && strings.Contains(plan, "replications_created"),
		notes: []string{"the listing's plan:\n\n" + indent(plan)}})
	return nil
}

func percentile(v []time.Duration, p int) time.Duration {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func ratio(a, b time.Duration) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
