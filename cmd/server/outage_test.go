package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/awsfake"
)

// postgresBin holds the Postgres server programs the outage test runs.
const postgresBin = "/usr/lib/postgresql/15/bin"

// cluster is a Postgres server of the test's own, on a free port, which the
// test stops and starts at will without touching anyone else's.
type cluster struct {
	t    *testing.T
	dir  string // owned by the postgres user
	port string
}

// newCluster initializes and starts a cluster, stopped and removed when
// the test ends. Postgres refuses to run as root, so it runs as the
// postgres user; the test is skipped where that cannot be done.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	if _, err := os.Stat(filepath.Join(postgresBin, "initdb")); err != nil {
		t.Skipf("no Postgres server programs in %s", postgresBin)
	}
	if os.Geteuid() != 0 {
		t.Skip("running a Postgres cluster of the test's own needs root, to run it as the postgres user")
	}
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Skipf("no postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	// Not t.TempDir: its parent is private to root, and the postgres user
	// must reach the directory.
	dir, err := os.MkdirTemp("", "bb-outage-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	c := &cluster{t: t, dir: dir, port: strings.TrimPrefix(freeAddr(t), "127.0.0.1:")}
	t.Cleanup(func() {
		c.pgctl("stop", "-m", "immediate") //nolint:errcheck // it may be stopped already
		os.RemoveAll(dir)
	})
	if out, err := c.run(filepath.Join(postgresBin, "initdb"), "-D", c.data(), "-U", "postgres", "--auth=trust",
		"-E", "UTF8", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	c.start()
	return c
}

func (c *cluster) data() string { return filepath.Join(c.dir, "data") }

// url is the cluster's database for the server.
func (c *cluster) url() string {
	return "postgres://postgres@127.0.0.1:" + c.port + "/postgres?sslmode=disable"
}

// run runs a program as the postgres user.
func (c *cluster) run(program string, args ...string) ([]byte, error) {
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", program}, args...)...)
	cmd.Dir = c.dir
	return cmd.CombinedOutput()
}

func (c *cluster) pgctl(args ...string) ([]byte, error) {
	return c.run(filepath.Join(postgresBin, "pg_ctl"), append([]string{"-D", c.data(), "-w", "-t", "60"}, args...)...)
}

// start starts the server and waits until it accepts connections.
func (c *cluster) start() {
	c.t.Helper()
	opts := fmt.Sprintf("-p %s -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", c.port, c.dir)
	if out, err := c.pgctl("-l", filepath.Join(c.dir, "log"), "-o", opts, "start"); err != nil {
		c.t.Fatalf("start Postgres: %v\n%s", err, out)
	}
}

// crash stops the server at once, as a crash or a failover would: every
// session is cut without a goodbye, and the next start recovers.
func (c *cluster) crash() {
	c.t.Helper()
	if out, err := c.pgctl("stop", "-m", "immediate"); err != nil {
		c.t.Fatalf("stop Postgres: %v\n%s", err, out)
	}
}

// timed is one API call's answer and how long it took.
type timed struct {
	status  int
	ctype   string
	retry   string
	body    string
	elapsed time.Duration
	err     error
}

func timedCall(method, url, body string) timed {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+devToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	client := &http.Client{Timeout: time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		return timed{err: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return timed{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), retry: resp.Header.Get("Retry-After"),
		body: string(raw), elapsed: time.Since(start)}
}

// benchRequest asks to replicate bench source bucket n into bench
// destination bucket n: requests that share no document, so that they run
// side by side.
func benchRequest(n int) string {
	return fmt.Sprintf(`{"source": {"account_id": %q, "region": %q, "bucket": "%s%d", "kms_key_arn": %q},
 "destination": {"account_id": %q, "region": %q, "bucket": "%s%d", "kms_key_arn": %q}}`,
		awsfake.DemoSourceAccount, awsfake.DemoSourceRegion, awsfake.BenchSourcePrefix, n, awsfake.DemoSourceKey,
		awsfake.DemoDestinationAccount, awsfake.DemoDestinationRegion, awsfake.BenchDestinationPrefix, n, awsfake.DemoDestinationKey)
}

// TestPostgresGoesAwayUnderLoad crashes the database while requests are
// being provisioned, keeps it down past a lease, and starts it again.
func TestPostgresGoesAwayUnderLoad(t *testing.T) {
	t.Parallel()
	pg := newCluster(t)
	const (
		requests   = 8
		dbTimeout  = 2 * time.Second
		lease      = 3 * time.Second
		downFor    = 5 * time.Second // past the lease
		recoveryIn = 10 * time.Second
	)
	srv := startServer(t, map[string]string{
		"DATABASE_URL": pg.url(), "BB_CLOUD": "fake", "BB_WORKERS": "4",
		"BB_LEASE": lease.String(), "BB_DATABASE_TIMEOUT": dbTimeout.String(),
		// Every AWS call takes a while, so that requests are mid-way when
		// the database goes.
		"BB_FAKE_LATENCY": "50ms", "BB_FAKE_BENCH_SOURCES": strconv.Itoa(requests + 1),
	})
	var selfs []string
	for i := 1; i <= requests; i++ {
		status, created := call(t, devToken, "POST", srv.base+"/v1/replications", benchRequest(i))
		if status != http.StatusAccepted {
			t.Fatalf("create %d = %d %v", i, status, created)
		}
		selfs = append(selfs, srv.base+created["links"].(map[string]any)["self"].(string))
	}
	// Wait until several are mid-way through their steps, past those that
	// only read.
	early := map[any]bool{nil: true, "resolve_accounts": true, "inspect_source": true, "inspect_destination": true}
	waitFor(t, func() bool {
		midway := 0
		for _, self := range selfs {
			if _, r := call(t, devToken, "GET", self, ""); r["state"] == "running" && !early[r["current_step"]] {
				midway++
			}
		}
		return midway >= 3
	})
	// A stream follows one of them through the outage.
	stream := follow(t, srv.base, strings.TrimPrefix(selfs[0], srv.base))
	type end struct {
		err error
		at  time.Time
	}
	streamEnded := make(chan end, 1)
	go func() {
		lines := bufio.NewScanner(stream)
		for lines.Scan() {
		}
		streamEnded <- end{lines.Err(), time.Now()}
	}()

	down := time.Now()
	pg.crash()

	// While it is down, every call is answered in bounded time: readiness
	// and the API with 503 problems, never a 500, never a hang.
	probes := []struct{ method, url, body string }{
		{"GET", srv.base + "/readyz", ""},
		{"GET", srv.base + "/v1/replications", ""},
		{"GET", selfs[1], ""},
		{"GET", selfs[1] + "/steps", ""},
		{"GET", selfs[1] + "/events", ""},
		{"POST", selfs[1] + "/cancel", ""},
		{"POST", srv.base + "/v1/replications", benchRequest(requests + 1)},
	}
	var slowest time.Duration
	calls := 0
	for time.Since(down) < downFor {
		var wg sync.WaitGroup
		answers := make([]timed, len(probes))
		for i, p := range probes {
			wg.Go(func() { answers[i] = timedCall(p.method, p.url, p.body) })
		}
		wg.Wait()
		for i, a := range answers {
			p := probes[i]
			slowest, calls = max(slowest, a.elapsed), calls+1
			switch {
			case a.err != nil:
				t.Errorf("%s %s while the database is down: %v", p.method, p.url, a.err)
			case a.status != http.StatusServiceUnavailable || a.ctype != "application/problem+json" || a.retry == "" && p.url != srv.base+"/readyz":
				t.Errorf("%s %s while the database is down = %d %q Retry-After %q: %s", p.method, p.url, a.status, a.ctype, a.retry, a.body)
			case a.elapsed > dbTimeout+2*time.Second:
				t.Errorf("%s %s while the database is down took %s", p.method, p.url, a.elapsed)
			case strings.Contains(a.body, "127.0.0.1") || strings.Contains(a.body, "SQLSTATE"):
				t.Errorf("%s %s shows internals: %s", p.method, p.url, a.body)
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("while the database was down, %d calls were answered 503, the slowest in %s", calls, slowest.Round(time.Millisecond))
	select {
	case e := <-streamEnded:
		if e.err != nil {
			t.Errorf("the event stream did not end cleanly: %v", e.err)
		}
		t.Logf("the event stream ended %s after the database went away", e.at.Sub(down).Round(time.Millisecond))
	default:
		t.Errorf("the event stream is still open %s after the database went away", time.Since(down).Round(time.Millisecond))
	}
	t.Logf("while the database was down, workers stopped %d runs for want of their leases",
		strings.Count(srv.logs.String(), "cannot renew the lease before it expires; stopping"))

	pg.start()
	up := time.Now()
	// Within the bound, everything serves again...
	deadline := up.Add(recoveryIn)
	for {
		ready := timedCall("GET", srv.base+"/readyz", "")
		list := timedCall("GET", srv.base+"/v1/replications", "")
		if ready.status == http.StatusOK && list.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after the database came back: readyz %d, listing %d %s", recoveryIn, ready.status, list.status, list.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("serving %s after the database came back", time.Since(up).Round(time.Millisecond))
	// ...and every request in flight finishes, every step recorded.
	finished := map[string]map[string]any{}
	for time.Now().Before(deadline) && len(finished) < len(selfs) {
		for _, self := range selfs {
			if a := timedCall("GET", self, ""); a.status == http.StatusOK {
				if _, r := call(t, devToken, "GET", self, ""); r["state"] == "succeeded" || r["state"] == "failed" {
					finished[self] = r
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d of %d requests finished %s after the database came back", len(finished), len(selfs), time.Since(up).Round(time.Millisecond))
	for _, self := range selfs {
		r, ok := finished[self]
		if !ok {
			_, now := call(t, devToken, "GET", self, "")
			t.Errorf("%s is still %v (step %v) %s after the database came back", self, now["state"], now["current_step"], recoveryIn)
			continue
		}
		if r["state"] != "succeeded" {
			t.Errorf("%s ended %v: %v", self, r["state"], r["last_error"])
		}
		_, steps := call(t, devToken, "GET", self+"/steps", "")
		got := map[string]any{}
		for _, s := range steps["items"].([]any) {
			step := s.(map[string]any)
			got[step["name"].(string)] = step["status"]
		}
		for _, name := range []string{"resolve_accounts", "inspect_source", "inspect_destination", "ensure_replication_role",
			"put_role_policy", "update_destination_key_policy", "update_destination_bucket_policy", "put_replication_rule", "verify"} {
			if got[name] != "succeeded" {
				t.Errorf("%s: step %s is %v after the outage", self, name, got[name])
			}
		}
	}
	if _, running := call(t, devToken, "GET", srv.base+"/v1/replications?state=running", ""); len(running["items"].([]any)) != 0 {
		t.Errorf("requests left running after the outage: %v", running["items"])
	}
	if err := srv.stop(); err != nil {
		t.Errorf("run after the outage: %v", err)
	}
}
