package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// hit is one request a receiver got.
type hit struct {
	header http.Header
	body   []byte
	// status is what the receiver answered.
	status int
	// Type, ReplicationID and State are read from the payload.
	Type          string
	ReplicationID string
	State         string
	Data          map[string]any
}

func (h hit) id() string { return h.header.Get("webhook-id") }

// receiver is a ticket system's callback endpoint on loopback. answer
// decides each status from the hit and how many hits with its webhook-id
// came before; nil answers 200.
type receiver struct {
	url    string
	mu     sync.Mutex
	hits   []hit
	answer func(h hit, seen int) int
}

// serveReceiver serves a receiver on ln until the test ends.
func serveReceiver(t *testing.T, ln net.Listener, answer func(hit, int) int) *receiver {
	t.Helper()
	rc := &receiver{url: "http://" + ln.Addr().String() + "/hooks/bucketbridge", answer: answer}
	srv := &http.Server{Handler: http.HandlerFunc(rc.serve), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends when the test closes it
	t.Cleanup(func() { srv.Close() })
	return rc
}

func newReceiver(t *testing.T, answer func(hit, int) int) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveReceiver(t, ln, answer)
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h := hit{header: r.Header.Clone(), body: body, status: http.StatusOK}
	var p struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	if json.Unmarshal(body, &p) == nil {
		h.Type, h.Data = p.Type, p.Data
		h.ReplicationID, _ = p.Data["id"].(string)
		h.State, _ = p.Data["state"].(string)
	}
	rc.mu.Lock()
	seen := 0
	for _, o := range rc.hits {
		if o.id() == h.id() {
			seen++
		}
	}
	if rc.answer != nil {
		h.status = rc.answer(h, seen)
	}
	rc.hits = append(rc.hits, h)
	rc.mu.Unlock()
	w.WriteHeader(h.status)
}

// taken returns the hits the receiver answered 2xx, in arrival order.
func (rc *receiver) taken() []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []hit
	for _, h := range rc.hits {
		if h.status/100 == 2 {
			out = append(out, h)
		}
	}
	return out
}

// takenFor returns the hits about one request the receiver answered 2xx.
func (rc *receiver) takenFor(replicationID string) []hit {
	var out []hit
	for _, h := range rc.taken() {
		if h.ReplicationID == replicationID {
			out = append(out, h)
		}
	}
	return out
}

func (rc *receiver) all() []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.hits)
}

// waitLong polls cond until it holds or d passes.
func waitLong(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createWithCallback creates the demo request into prefix with callbackURL
// and returns its URL.
func createWithCallback(t *testing.T, base, prefix, callbackURL string) string {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal([]byte(demo("demo-destination", prefix)), &body); err != nil {
		t.Fatal(err)
	}
	body["callback_url"] = callbackURL
	raw, _ := json.Marshal(body)
	status, created := call(t, devToken, "POST", base+"/v1/replications", string(raw))
	if status != http.StatusAccepted {
		t.Fatalf("create = %d %v", status, created)
	}
	return base + created["links"].(map[string]any)["self"].(string)
}

// deliveries reads a request's deliveries through the API.
func deliveries(t *testing.T, self string) []map[string]any {
	t.Helper()
	status, out := call(t, devToken, "GET", self+"/deliveries", "")
	if status != http.StatusOK {
		t.Fatalf("GET deliveries = %d %v", status, out)
	}
	var ds []map[string]any
	for _, d := range out["items"].([]any) {
		ds = append(ds, d.(map[string]any))
	}
	return ds
}

// at reads a time of an answer.
func at(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("time %v: %v", v, err)
	}
	return tm
}

// verify checks a hit's signature with the Standard Webhooks library, as a
// receiver would, once with each secret.
func verify(t *testing.T, h hit, secrets ...string) {
	t.Helper()
	for i, s := range secrets {
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(h.body, h.header); err != nil {
			t.Errorf("secret %d does not verify delivery %s: %v", i+1, h.id(), err)
		}
	}
}

func TestACallbackArrivesSignedWithTheRequestAsGETShowsIt(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, nil)
	current, next := newSecret(t), newSecret(t)
	srv := startServer(t, map[string]string{
		"DATABASE_URL":      storetest.NewDatabase(t),
		"BB_CLOUD":          "fake",
		"BB_WEBHOOK_SECRET": current + " " + next,
		"BB_CALLBACK_ALLOW": "127.0.0.1/32",
	})
	self := createWithCallback(t, srv.base, "reports/", rc.url+"?ticket=OPS-1")
	done := waitForState(t, devToken, self)
	if done["state"] != "succeeded" {
		t.Fatalf("request ended %v: %v", done["state"], done["last_error"])
	}
	waitLong(t, 30*time.Second, "the succeeded callback", func() bool { return len(rc.taken()) == 1 })

	h := rc.taken()[0]
	if h.Type != "replication.succeeded" || h.header.Get("Content-Type") != "application/json" {
		t.Errorf("callback type %q content type %q", h.Type, h.header.Get("Content-Type"))
	}
	verify(t, h, current, next)
	stranger, _ := standardwebhooks.NewWebhook(newSecret(t))
	if stranger.Verify(h.body, h.header) == nil {
		t.Error("a secret the server does not hold verifies the callback")
	}
	_, got := call(t, devToken, "GET", self, "")
	if diff := cmp.Diff(got, h.Data); diff != "" {
		t.Errorf("the callback's data is not the request as GET shows it (-GET +data):\n%s", diff)
	}

	// The dispatcher records the attempt once the receiver has answered.
	waitLong(t, 30*time.Second, "the delivery recorded as delivered", func() bool {
		ds := deliveries(t, self)
		return len(ds) == 1 && ds[0]["status"] == "delivered"
	})
	ds := deliveries(t, self)
	if ds[0]["id"] != h.id() || len(ds[0]["attempts"].([]any)) != 1 {
		t.Errorf("deliveries = %v, want the one the receiver got, delivered at the first attempt", ds)
	}

	// The counters move just after the attempt is recorded.
	var missing []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(srv.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = nil
		for _, want := range []string{
			`bucketbridge_webhook_deliveries_total{outcome="delivered",type="replication.succeeded"} 1`,
			`bucketbridge_webhook_attempt_duration_seconds_count{result="2xx"} 1`,
			`bucketbridge_webhook_oldest_pending_seconds `,
		} {
			if !strings.Contains(string(metrics), want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range missing {
		t.Errorf("metrics lack %s", m)
	}
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{current, next} {
		if strings.Contains(srv.logs.String(), strings.TrimPrefix(s, "whsec_")) {
			t.Error("the log shows a webhook secret")
		}
	}
}

// serverBinary builds cmd/server into a directory of the test's, so that
// the test can run it as a process of its own and kill it.
func serverBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bucketbridge-server")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// process is the server running as a process of its own.
type process struct {
	base string
	cmd  *exec.Cmd
	logs *lockedBuffer
	done chan struct{}
}

// startProcess runs bin with env (and a free BB_LISTEN) and waits until it
// is ready; the test's end kills it if it still runs.
func startProcess(t *testing.T, bin string, env map[string]string) *process {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "BB_LISTEN=" + addr}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &process{base: "http://" + addr, cmd: cmd, logs: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait() //nolint:errcheck // a killed server exits with an error
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() {
			t.Logf("log of the server on %s:\n%s", addr, p.logs.String())
		}
	})
	waitLong(t, 60*time.Second, "the server process is ready", func() bool {
		select {
		case <-p.done:
			t.Fatalf("the server exited before serving:\n%s", p.logs.String())
		default:
		}
		resp, err := http.Get(p.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// kill ends the process with SIGKILL: no shutdown, no last words.
func (p *process) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("kill -9: %v", err)
	}
	<-p.done
}

func TestACallbackSurvivesKill9WhileTheReceiverIsDown(t *testing.T) {
	t.Parallel()
	bin := serverBinary(t)
	secret := newSecret(t)
	env := map[string]string{
		"DATABASE_URL":       storetest.NewDatabase(t),
		"BB_CLOUD":           "fake",
		"BB_WORKERS":         "2",
		"BB_LEASE":           "3s",
		"BB_WEBHOOK_SECRET":  secret,
		"BB_CALLBACK_ALLOW":  "127.0.0.1/32",
		"BB_WEBHOOK_BACKOFF": "200ms",
	}
	// The receiver's address, with nothing listening on it yet: every
	// attempt is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	callbackURL := "http://" + addr + "/hooks/bucketbridge"

	first := startProcess(t, bin, env)
	self := createWithCallback(t, first.base, "reports/", callbackURL)
	if done := waitForState(t, devToken, self); done["state"] != "succeeded" {
		t.Fatalf("request ended %v: %v", done["state"], done["last_error"])
	}
	waitLong(t, 30*time.Second, "two refused attempts", func() bool {
		ds := deliveries(t, self)
		return len(ds) == 1 && ds[0]["status"] == "pending" && len(ds[0]["attempts"].([]any)) >= 2
	})
	id := deliveries(t, self)[0]["id"].(string)
	// The removal is asked for just before the server dies: whichever
	// server finishes it, its callback must follow the success's.
	if status, _ := call(t, devToken, "DELETE", self, ""); status != http.StatusAccepted {
		t.Fatalf("DELETE = %d", status)
	}
	first.kill(t)

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on the receiver's address again: %v", err)
	}
	rc := serveReceiver(t, ln, nil)
	restarted := time.Now()
	second := startProcess(t, bin, env)
	self = strings.Replace(self, first.base, second.base, 1)
	// The lease of a delivery claimed just before the kill lasts a minute.
	waitLong(t, 3*time.Minute, "both callbacks after the restart", func() bool {
		return len(rc.taken()) >= 2
	})

	t.Logf("both callbacks arrived %s after the restart began", time.Since(restarted).Round(time.Millisecond))
	got := rc.taken()
	if got[0].id() != id || got[0].Type != "replication.succeeded" {
		t.Errorf("first callback after the restart: %s %s, want the queued delivery %s (replication.succeeded)", got[0].id(), got[0].Type, id)
	}
	if got[1].Type != "replication.deprovisioned" && got[1].Type != "replication.deprovision_failed" {
		t.Errorf("second callback is %s, want the removal's", got[1].Type)
	}
	// Nothing arrived twice under two ids: one id per event.
	ids := map[string]map[string]bool{}
	for _, h := range rc.all() {
		if ids[h.Type] == nil {
			ids[h.Type] = map[string]bool{}
		}
		ids[h.Type][h.id()] = true
		verify(t, h, secret)
	}
	for typ, set := range ids {
		if len(set) != 1 {
			t.Errorf("%s arrived under %d webhook-ids: %v", typ, len(set), set)
		}
	}
	waitLong(t, 30*time.Second, "both deliveries recorded as delivered", func() bool {
		ds := deliveries(t, self)
		return len(ds) == 2 && ds[0]["status"] == "delivered" && ds[1]["status"] == "delivered"
	})
	if ds := deliveries(t, self); ds[0]["id"] != id {
		t.Errorf("deliveries after the restart = %v, want %s first", ds, id)
	}
}

func TestTwoReplicasDeliverEachEventOnceInOrder(t *testing.T) {
	t.Parallel()
	bin := serverBinary(t)
	// The first attempt of every success fails, so that the removal's
	// callback is often queued while the success is still pending: it
	// must wait its turn.
	rc := newReceiver(t, func(h hit, seen int) int {
		if h.Type == "replication.succeeded" && seen == 0 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	env := map[string]string{
		"DATABASE_URL":       storetest.NewDatabase(t),
		"BB_CLOUD":           "fake",
		"BB_WORKERS":         "2",
		"BB_WEBHOOK_SECRET":  newSecret(t),
		"BB_CALLBACK_ALLOW":  "127.0.0.1/32",
		"BB_WEBHOOK_BACKOFF": "300ms",
	}
	replicas := []*process{startProcess(t, bin, env), startProcess(t, bin, env)}
	const requests = 6
	paths := map[string]string{} // replication id -> its path
	var selves []string
	for n := range requests {
		selves = append(selves, createWithCallback(t, replicas[n%2].base, fmt.Sprintf("team-%d/", n), rc.url))
	}
	for n, self := range selves {
		if done := waitForState(t, devToken, self); done["state"] != "succeeded" {
			t.Fatalf("request %d ended %v: %v", n, done["state"], done["last_error"])
		}
		// The other replica's API asks for the removal.
		path := strings.TrimPrefix(self, replicas[n%2].base)
		if status, _ := call(t, devToken, "DELETE", replicas[(n+1)%2].base+path, ""); status != http.StatusAccepted {
			t.Fatalf("DELETE %d = %d", n, status)
		}
		paths[strings.TrimPrefix(path, "/v1/replications/")] = path
	}
	waitLong(t, 90*time.Second, "two callbacks per request", func() bool { return len(rc.taken()) >= 2*requests })

	// waited counts the removals announced while the success was still
	// being retried, which the order held back.
	waited := 0
	for id, path := range paths {
		got := rc.takenFor(id)
		var types, ids []string
		for _, h := range got {
			types = append(types, h.Type)
			ids = append(ids, h.id())
		}
		if len(got) != 2 || types[0] != "replication.succeeded" ||
			(types[1] != "replication.deprovisioned" && types[1] != "replication.deprovision_failed") {
			t.Errorf("request %s: callbacks %v, want the success then the removal, each once", id, types)
			continue
		}
		ds := deliveries(t, replicas[0].base+path)
		var want []string
		for _, d := range ds {
			want = append(want, d["id"].(string))
		}
		if len(ds) == 2 && at(t, ds[1]["created_at"]).Before(at(t, ds[0]["delivered_at"])) {
			waited++
		}
		if diff := cmp.Diff(want, ids); diff != "" {
			t.Errorf("request %s: webhook-ids in arrival order differ from its deliveries in event order (-events +arrivals):\n%s", id, diff)
		}
	}
	if n := len(rc.taken()); n != 2*requests {
		t.Errorf("the receiver took %d callbacks, want %d: one per event", n, 2*requests)
	}
	t.Logf("%d of %d removals were announced while their success was still being retried", waited, requests)
	if waited == 0 {
		t.Error("no removal was announced while its success was pending, so the order was not put to the test")
	}

}
