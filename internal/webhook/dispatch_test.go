package webhook_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

// clock is the dispatchers' clock; it moves only when a test moves it. It
// starts a minute ahead of the database's, so what was just queued is due.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now().Add(time.Minute).UTC()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// arrival is one request a receiver got.
type arrival struct {
	id            string
	replicationID string
	n             int
}

// receiver is a callback endpoint on loopback; answer decides the status
// of each request from how many requests came before it with that id.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []arrival
	answer func(id string, seen int) int
}

func newReceiver(t *testing.T, answer func(id string, seen int) int) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p struct {
			Data struct {
				ID string `json:"id"`
				N  int    `json:"n"`
			} `json:"data"`
		}
		json.Unmarshal(body, &p)
		id := r.Header.Get(webhook.HeaderID)
		rc.mu.Lock()
		seen := 0
		for _, a := range rc.got {
			if a.id == id {
				seen++
			}
		}
		rc.got = append(rc.got, arrival{id: id, replicationID: p.Data.ID, n: p.Data.N})
		rc.mu.Unlock()
		w.WriteHeader(rc.answer(id, seen))
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func always(status int) func(string, int) int { return func(string, int) int { return status } }

func (rc *receiver) arrivals() []arrival {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]arrival(nil), rc.got...)
}

func (rc *receiver) count(id string) int {
	n := 0
	for _, a := range rc.arrivals() {
		if a.id == id {
			n++
		}
	}
	return n
}

type fixture struct {
	store  *store.Store
	clock  *clock
	sender *webhook.Sender
	mu     sync.Mutex
	wakes  []chan struct{}
}

func setup(t *testing.T) *fixture {
	t.Helper()
	return &fixture{store: storetest.New(t), clock: newClock(), sender: newSender(t, webhook.SenderConfig{})}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// start runs a dispatcher until the test ends or stop is called.
func (f *fixture) start(t *testing.T, cfg webhook.DispatcherConfig) (stop func()) {
	t.Helper()
	wake := make(chan struct{}, 1)
	f.mu.Lock()
	f.wakes = append(f.wakes, wake)
	f.mu.Unlock()
	cfg.Outbox, cfg.Sender, cfg.Wake, cfg.NowFunc = f.store, f.sender, wake, f.clock.Now
	cfg.Backoff = max(cfg.Backoff, time.Minute)
	cfg.Poll = 50 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := webhook.NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// poke wakes every dispatcher, as a NOTIFY would.
func (f *fixture) poke() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.wakes {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

func (f *fixture) request(t *testing.T, n int, url string) provision.Replication {
	t.Helper()
	sp := provision.Spec{
		Source: provision.Side{AccountID: "111111111111", Region: "us-east-1",
			Bucket: fmt.Sprintf("src-%d", n), KMSKeyARN: "arn:aws:kms:us-east-1:111111111111:key/11111111-1111-4111-8111-111111111111"},
		Destination: provision.Side{AccountID: "222222222222", Region: "us-west-2",
			Bucket: "dst", KMSKeyARN: "arn:aws:kms:us-west-2:222222222222:key/22222222-2222-4222-8222-222222222222"},
		Rule:        provision.Rule{StorageClass: "STANDARD"},
		CallbackURL: url,
	}
	r, _, err := f.store.Create(context.Background(), provision.NewReplication{Spec: sp, RequestedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// enqueue queues event n of request r and wakes the dispatchers.
func (f *fixture) enqueue(t *testing.T, r provision.Replication, typ webhook.EventType, n int) string {
	t.Helper()
	id, err := f.store.EnqueueDelivery(context.Background(), r.ID, typ, fmt.Appendf(nil, `{"id": %q, "n": %d}`, r.ID, n))
	if err != nil || id == "" {
		t.Errorf("enqueue %s of %s: %q, %v", typ, r.ID, id, err)
	}
	f.poke()
	return id
}

func (f *fixture) delivery(t *testing.T, replicationID, id string) webhook.Delivery {
	t.Helper()
	ds, err := f.store.Deliveries(context.Background(), replicationID)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.ID == id {
			return d
		}
	}
	t.Fatalf("no delivery %s of %s", id, replicationID)
	return webhook.Delivery{}
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metric returns the value of a counter or gauge, or the sample count of a
// histogram, whose labels include labels.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func TestAReceiverThatFailsTwiceGetsThreeAttemptsWithGrowingGaps(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rc := newReceiver(t, func(_ string, seen int) int {
		if seen < 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	reg := prometheus.NewRegistry()
	f.start(t, webhook.DispatcherConfig{Backoff: time.Minute, Metrics: webhook.NewMetrics(reg)})
	r := f.request(t, 1, rc.srv.URL+"/hook")
	id := f.enqueue(t, r, webhook.EventSucceeded, 0)

	for attempt := 1; attempt <= 2; attempt++ {
		var d webhook.Delivery
		waitFor(t, fmt.Sprintf("attempt %d is recorded", attempt), func() bool {
			d = f.delivery(t, r.ID, id)
			return len(d.Attempts) == attempt
		})
		if d.Status != webhook.StatusPending || d.NextAttemptAt == nil || d.LastStatus != 500 {
			t.Fatalf("after failed attempt %d: %+v", attempt, d)
		}
		if attempt == 1 {
			waitFor(t, "the oldest pending delivery is reported", func() bool {
				return metric(t, reg, "bucketbridge_webhook_oldest_pending_seconds", nil) >= 50
			})
		}
		// Time passes until the retry is due.
		f.clock.Set(*d.NextAttemptAt)
		f.poke()
	}
	var d webhook.Delivery
	waitFor(t, "the delivery is delivered", func() bool {
		d = f.delivery(t, r.ID, id)
		return d.Status == webhook.StatusDelivered
	})

	if len(d.Attempts) != 3 {
		t.Fatalf("%d attempts, want 3: %+v", len(d.Attempts), d.Attempts)
	}
	for i, want := range []int{500, 500, 200} {
		if got := d.Attempts[i].StatusCode; got != want {
			t.Errorf("attempt %d answered %d, want %d", i+1, got, want)
		}
	}
	first, second := d.Attempts[1].At.Sub(d.Attempts[0].At), d.Attempts[2].At.Sub(d.Attempts[1].At)
	if first < time.Minute || second < 2*time.Minute || second <= first {
		t.Fatalf("gaps between attempts %s and %s, want at least 1m, then at least 2m and longer", first, second)
	}
	// One webhook-id for all three, the delivery's.
	for _, a := range rc.arrivals() {
		if a.id != id {
			t.Fatalf("receiver saw webhook-id %q, want %q", a.id, id)
		}
	}
	if n := len(rc.arrivals()); n != 3 {
		t.Fatalf("receiver got %d requests, want 3", n)
	}
	if got := metric(t, reg, "bucketbridge_webhook_deliveries_total", map[string]string{"type": "replication.succeeded", "outcome": "delivered"}); got != 1 {
		t.Errorf("delivered counter %v, want 1", got)
	}
	if got := metric(t, reg, "bucketbridge_webhook_attempt_duration_seconds", map[string]string{"result": "5xx"}); got != 2 {
		t.Errorf("5xx attempts %v, want 2", got)
	}
	waitFor(t, "no delivery is reported pending", func() bool {
		return metric(t, reg, "bucketbridge_webhook_oldest_pending_seconds", nil) == 0
	})
}

func TestGoneStopsTheRetriesAtOnce(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var goneID string
	var mu sync.Mutex
	rc := newReceiver(t, func(id string, _ int) int {
		mu.Lock()
		defer mu.Unlock()
		if id == goneID {
			return http.StatusGone
		}
		return http.StatusOK
	})
	reg := prometheus.NewRegistry()
	f.start(t, webhook.DispatcherConfig{Metrics: webhook.NewMetrics(reg)})
	r := f.request(t, 1, rc.srv.URL+"/hook")
	mu.Lock()
	goneID = f.enqueue(t, r, webhook.EventSucceeded, 0)
	mu.Unlock()
	waitFor(t, "the delivery fails", func() bool { return f.delivery(t, r.ID, goneID).Status == webhook.StatusFailed })

	// Much later, the request's next event is delivered (a failed delivery
	// does not hold it back), and the gone one is not tried again.
	f.clock.Set(f.clock.Now().Add(48 * time.Hour))
	next := f.enqueue(t, r, webhook.EventDeprovisioned, 1)
	waitFor(t, "the next event is delivered", func() bool { return f.delivery(t, r.ID, next).Status == webhook.StatusDelivered })
	if n := rc.count(goneID); n != 1 {
		t.Fatalf("the receiver that answered 410 was called %d times, want once", n)
	}
	d := f.delivery(t, r.ID, goneID)
	if len(d.Attempts) != 1 || d.LastStatus != http.StatusGone || d.NextAttemptAt != nil {
		t.Fatalf("gone delivery: %+v", d)
	}
	if got := metric(t, reg, "bucketbridge_webhook_deliveries_total", map[string]string{"outcome": "gone"}); got != 1 {
		t.Errorf("gone counter %v, want 1", got)
	}
}

func TestADeliveryFailsAfterTheMaximumAge(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rc := newReceiver(t, always(http.StatusServiceUnavailable))
	reg := prometheus.NewRegistry()
	const maxAge = 10 * time.Minute
	f.start(t, webhook.DispatcherConfig{Backoff: time.Minute, MaxAge: maxAge, Metrics: webhook.NewMetrics(reg)})
	r := f.request(t, 1, rc.srv.URL+"/hook")
	id := f.enqueue(t, r, webhook.EventFailed, 0)
	var d webhook.Delivery
	for attempt := 1; ; attempt++ {
		waitFor(t, fmt.Sprintf("attempt %d is recorded", attempt), func() bool {
			d = f.delivery(t, r.ID, id)
			return len(d.Attempts) == attempt
		})
		if d.Status != webhook.StatusPending {
			break
		}
		if deadline := d.QueuedAt.Add(maxAge); d.NextAttemptAt.After(deadline) {
			t.Fatalf("next attempt %s after the deadline %s", d.NextAttemptAt, deadline)
		}
		f.clock.Set(*d.NextAttemptAt)
		f.poke()
	}
	last := d.Attempts[len(d.Attempts)-1]
	if d.Status != webhook.StatusFailed || !last.At.Equal(d.QueuedAt.Add(maxAge)) {
		t.Fatalf("status %s, last attempt at %s, want failed at the deadline %s", d.Status, last.At, d.QueuedAt.Add(maxAge))
	}
	if len(d.Attempts) < 4 {
		t.Fatalf("only %d attempts in %s with a 1m backoff", len(d.Attempts), maxAge)
	}
	if got := metric(t, reg, "bucketbridge_webhook_deliveries_total", map[string]string{"type": "replication.failed", "outcome": "expired"}); got != 1 {
		t.Errorf("expired counter %v, want 1", got)
	}
}

func TestTwoReplicasDeliverEveryEventOnceAndInOrder(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rc := newReceiver(t, always(http.StatusNoContent))
	for _, owner := range []string{"replica-a", "replica-b"} {
		f.start(t, webhook.DispatcherConfig{Owner: owner, Concurrency: 4})
	}
	const requests, events = 24, 5
	types := []webhook.EventType{webhook.EventAwaitingApproval, webhook.EventSucceeded, webhook.EventDeprovisioned, webhook.EventFailed, webhook.EventCancelled}
	rs := make([]provision.Replication, requests)
	for i := range rs {
		rs[i] = f.request(t, i, rc.srv.URL+"/hook")
	}
	// Each request's events happen one after another, while other requests'
	// events and the deliveries go on at the same time. (Eight at once
	// keeps the connections this test needs well within Postgres's limit,
	// which other tests share.)
	var wg sync.WaitGroup
	busy := make(chan struct{}, 8)
	for _, r := range rs {
		wg.Go(func() {
			busy <- struct{}{}
			defer func() { <-busy }()
			for n := range events {
				f.enqueue(t, r, types[n], n)
			}
		})
	}
	wg.Wait()
	waitFor(t, "every event arrived", func() bool { return len(rc.arrivals()) >= requests*events })

	// Every delivery is recorded as delivered once...
	ids := map[string]bool{}
	for _, r := range rs {
		ds, err := f.store.Deliveries(context.Background(), r.ID)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "every delivery is recorded", func() bool {
			ds, _ = f.store.Deliveries(context.Background(), r.ID)
			for _, d := range ds {
				if d.Status != webhook.StatusDelivered {
					return false
				}
			}
			return len(ds) == events
		})
		for _, d := range ds {
			ids[d.ID] = true
			if len(d.Attempts) != 1 {
				t.Errorf("delivery %s of %s has %d attempts", d.ID, r.ID, len(d.Attempts))
			}
		}
	}
	// ...and arrived once, each request's in the order of its events.
	seen := map[string]int{}
	next := map[string]int{}
	for _, a := range rc.arrivals() {
		seen[a.id]++
		if !ids[a.id] {
			t.Errorf("unknown webhook-id %s", a.id)
		}
		if a.n != next[a.replicationID] {
			t.Errorf("request %s: event %d arrived when %d was next", a.replicationID, a.n, next[a.replicationID])
		}
		next[a.replicationID] = a.n + 1
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("delivery %s arrived %d times", id, n)
		}
	}
	if len(seen) != requests*events {
		t.Fatalf("%d distinct deliveries arrived, want %d", len(seen), requests*events)
	}
}

func TestAKilledDispatchersDeliveryIsSentAgainWithTheSameWebhookID(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rc := newReceiver(t, always(http.StatusOK))
	r := f.request(t, 1, rc.srv.URL+"/hook")
	id := f.enqueue(t, r, webhook.EventSucceeded, 0)

	// A replica claims the delivery, sends it and dies before recording.
	const lease = 2 * time.Minute
	claimed, err := f.store.ClaimDue(context.Background(), "dead-replica", f.clock.Now(), lease, 10)
	if err != nil || len(claimed) != 1 || claimed[0].ID != id {
		t.Fatalf("claim = %+v, %v", claimed, err)
	}
	if res := f.sender.Send(context.Background(), claimed[0], f.clock.Now()); !res.Delivered() {
		t.Fatalf("dead replica's attempt: %d %v", res.StatusCode, res.Err)
	}

	// Another replica leaves it alone while the lease holds: it delivers a
	// later event of another request, but not this one.
	f.start(t, webhook.DispatcherConfig{Owner: "live-replica", Lease: lease})
	other := f.request(t, 2, rc.srv.URL+"/hook")
	otherID := f.enqueue(t, other, webhook.EventSucceeded, 0)
	waitFor(t, "the other request's event is delivered", func() bool {
		return f.delivery(t, other.ID, otherID).Status == webhook.StatusDelivered
	})
	if n := rc.count(id); n != 1 {
		t.Fatalf("delivery sent %d times while the dead replica's lease held", n)
	}

	// Once the lease expires, it is sent again with the same webhook-id.
	f.clock.Set(f.clock.Now().Add(lease + time.Second))
	f.poke()
	waitFor(t, "the delivery is delivered", func() bool { return f.delivery(t, r.ID, id).Status == webhook.StatusDelivered })
	if n := rc.count(id); n != 2 {
		t.Fatalf("receiver saw webhook-id %s %d times, want twice (once from each replica)", id, n)
	}
	late := webhook.AttemptRecord{DeliveryID: id, Status: webhook.StatusDelivered, Attempt: webhook.Attempt{At: f.clock.Now(), StatusCode: 200}}
	if err := f.store.RecordAttempt(context.Background(), "dead-replica", late); !errors.Is(err, webhook.ErrLeaseLost) {
		t.Fatalf("the dead replica's late record = %v, want ErrLeaseLost", err)
	}
	if d := f.delivery(t, r.ID, id); len(d.Attempts) != 1 {
		t.Fatalf("attempts %+v, want the live replica's only", d.Attempts)
	}
}

func TestStoppingLetsTheAttemptUnderWayFinishAndRecordsIt(t *testing.T) {
	t.Parallel()
	f := setup(t)
	arrived, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
	}))
	defer srv.Close()
	d, err := webhook.NewDispatcher(webhook.DispatcherConfig{Outbox: f.store, Sender: f.sender, NowFunc: f.clock.Now, Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		d.Run(ctx)
	}()
	r := f.request(t, 1, srv.URL+"/hook")
	id := f.enqueue(t, r, webhook.EventSucceeded, 0)
	<-arrived
	// Shutdown begins while the receiver is still answering.
	cancel()
	close(release)
	<-stopped
	if got := f.delivery(t, r.ID, id); got.Status != webhook.StatusDelivered || len(got.Attempts) != 1 {
		t.Fatalf("after stopping: %s with %d attempts, want the finished attempt recorded", got.Status, len(got.Attempts))
	}
}

func TestNewDispatcherRefusesALeaseShorterThanAnAttempt(t *testing.T) {
	t.Parallel()
	sender := newSender(t, webhook.SenderConfig{Timeout: time.Minute})
	_, err := webhook.NewDispatcher(webhook.DispatcherConfig{Outbox: &store.Store{}, Sender: sender, Lease: 30 * time.Second})
	if err == nil {
		t.Fatal("NewDispatcher accepted a lease shorter than the attempt timeout")
	}
}
