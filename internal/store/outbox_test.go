package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

// render stands in for the API's rendering of a request.
func render(r provision.Replication) ([]byte, error) {
	return json.Marshal(map[string]any{"id": r.ID, "state": r.State, "updated_at": r.UpdatedAt})
}

// announced is what a receiver learns from one delivery.
type announced struct {
	Seq   int
	Type  webhook.EventType
	State provision.State
}

func announcements(t *testing.T, s *store.Store, id string) []announced {
	t.Helper()
	ds, err := s.Deliveries(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	out := []announced{}
	for _, d := range ds {
		var p struct {
			Data struct{ State provision.State } `json:"data"`
		}
		if err := json.Unmarshal(d.Payload, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, announced{d.Seq, d.Type, p.Data.State})
	}
	return out
}

// received reports whether ch gets a value within a few seconds.
func received(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

func TestACallbackIsQueuedExactlyWhenItsTransitionCommits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := storetest.NewMigratedDatabase(t)
	s, err := store.Open(ctx, url, storetest.MaxConns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	// Another replica on the same database, whose dispatcher must hear of
	// the delivery too.
	other, err := store.Open(ctx, url, storetest.MaxConns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)

	s.QueueCallbacks(render)
	// A later hook of the same transition fails while refuse is set, as a
	// full disk or a lost connection would: the transition rolls back.
	var refuse atomic.Bool
	s.OnTransition(func(context.Context, pgx.Tx, provision.Change) error {
		if refuse.Load() {
			return errors.New("disk full")
		}
		return nil
	})
	wctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	local, remote := s.DeliveriesWake(wctx), other.DeliveriesWake(wctx)

	r := withCallback(t, s, 1)
	refuse.Store(true)
	if _, err := s.Cancel(ctx, r.ID, "alice"); err == nil {
		t.Fatal("a cancel whose transaction failed was applied")
	}
	if got, _ := s.Get(ctx, r.ID); got.State != provision.StatePending {
		t.Fatalf("after the rolled-back cancel the request is %s, want pending", got.State)
	}
	if got := announcements(t, s, r.ID); len(got) != 0 {
		t.Fatalf("a transition that rolled back left deliveries: %v", got)
	}

	// Let the LISTEN connections settle before the commit they must hear of.
	db := connect(t, url)
	waitUntil(t, func() bool { return listening(t, db, store.DeliveriesChannel) == 2 })
	refuse.Store(false)
	cancelled, err := s.Cancel(ctx, r.ID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := []announced{{1, webhook.EventCancelled, provision.StateCancelled}}
	if diff := cmp.Diff(want, announcements(t, s, r.ID)); diff != "" {
		t.Fatalf("deliveries after the committed cancel (-want +got):\n%s", diff)
	}
	ds, _ := s.Deliveries(ctx, r.ID)
	var p webhook.Payload
	json.Unmarshal(ds[0].Payload, &p)
	wantData, _ := render(cancelled)
	var gotData, wantDataAny any
	json.Unmarshal(p.Data, &gotData)
	json.Unmarshal(wantData, &wantDataAny)
	if diff := cmp.Diff(wantDataAny, gotData); diff != "" {
		t.Errorf("the payload's data is not the request as the transition left it (-want +got):\n%s", diff)
	}
	if !received(local) {
		t.Error("this process's dispatcher was not woken after the commit")
	}
	if !received(remote) {
		t.Error("the other replica's dispatcher was not woken after the commit")
	}

	// A request without a callback URL is never announced.
	plain, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(2), RequestedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, plain.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	if got := announcements(t, s, plain.ID); len(got) != 0 {
		t.Errorf("a request without callback URL got deliveries: %v", got)
	}
}

// listening counts the sessions of db's database listening on channel.
func listening(t *testing.T, db *pgx.Conn, channel string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND query LIKE '%LISTEN "'||$1||'"%'`, channel).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEveryFinishAnnouncesItsStateInTheOrderOfTheEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	s.QueueCallbacks(render)
	r := withCallback(t, s, 1)

	claim := func() *provision.Claim {
		t.Helper()
		c, ok, err := s.Claim(ctx, "w1", time.Minute)
		if err != nil || !ok || c.Replication.ID != r.ID {
			t.Fatalf("claim = %s %v %v", c.Replication.ID, ok, err)
		}
		return &c
	}
	fail := func(c *provision.Claim) {
		t.Helper()
		if err := s.Fail(ctx, c, provision.Failure{Step: "x", Problem: []byte(`{"title":"no"}`), Permanent: true}); err != nil {
			t.Fatal(err)
		}
	}
	finish := func(c *provision.Claim) {
		t.Helper()
		if err := s.Finish(ctx, c, provision.ActionComplete, "done"); err != nil {
			t.Fatal(err)
		}
	}
	fail(claim()) // running -> failed
	if _, err := s.Retry(ctx, r.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	finish(claim()) // running -> succeeded
	if _, err := s.Deprovision(ctx, r.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	fail(claim()) // deprovisioning -> deprovision_failed
	if _, err := s.Deprovision(ctx, r.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	finish(claim()) // deprovisioning -> deprovisioned

	want := []announced{
		{1, webhook.EventFailed, provision.StateFailed},
		{2, webhook.EventSucceeded, provision.StateSucceeded},
		{3, webhook.EventDeprovisionFailed, provision.StateDeprovisionFailed},
		{4, webhook.EventDeprovisioned, provision.StateDeprovisioned},
	}
	if diff := cmp.Diff(want, announcements(t, s, r.ID)); diff != "" {
		t.Errorf("deliveries (-want +got):\n%s", diff)
	}
}

func TestConcurrentTransitionsQueueOneCallbackEach(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	s.QueueCallbacks(render)
	const requests, racers = 12, 3
	var ids []string
	for n := range requests {
		ids = append(ids, withCallback(t, s, n).ID)
	}
	// Several callers cancel each request at once; one of them wins.
	var wg sync.WaitGroup
	var won atomic.Int32
	for _, id := range ids {
		for range racers {
			wg.Go(func() {
				_, err := s.Cancel(ctx, id, "racer")
				var se *provision.StateError
				switch {
				case err == nil:
					won.Add(1)
				case !errors.As(err, &se):
					t.Errorf("cancel %s: %v", id, err)
				}
			})
		}
	}
	wg.Wait()
	if won.Load() != requests {
		t.Errorf("%d cancels succeeded, want one per request (%d)", won.Load(), requests)
	}
	for _, id := range ids {
		want := []announced{{1, webhook.EventCancelled, provision.StateCancelled}}
		if diff := cmp.Diff(want, announcements(t, s, id)); diff != "" {
			t.Errorf("deliveries of %s (-want +got):\n%s", id, diff)
		}
	}
}
