package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

// The dispatcher talks to the store through its own interface.
var _ webhook.Outbox = (*store.Store)(nil)

// withCallback creates request n with a callback URL.
func withCallback(t *testing.T, s *store.Store, n int) provision.Replication {
	t.Helper()
	sp := spec(n)
	sp.CallbackURL = fmt.Sprintf("https://tickets.example.com/hooks/%d", n)
	r, _, err := s.Create(context.Background(), provision.NewReplication{Spec: sp, RequestedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func enqueue(t *testing.T, s *store.Store, r provision.Replication, typ webhook.EventType) string {
	t.Helper()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.EnqueueDelivery(context.Background(), r.ID, typ, data)
	if err != nil || id == "" {
		t.Fatalf("EnqueueDelivery(%s, %s) = %q, %v", r.ID, typ, id, err)
	}
	return id
}

// later is a dispatcher's clock a little ahead of the database's, so that
// what was just queued is due.
func later() time.Time { return time.Now().Add(time.Minute) }

func TestEnqueueDeliveryNumbersEventsAndBuildsTheStandardPayload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	r := withCallback(t, s, 1)
	before := time.Now().Add(-time.Minute)
	types := []webhook.EventType{webhook.EventSucceeded, webhook.EventDeprovisioned, webhook.EventFailed}
	var ids []string
	for _, typ := range types {
		ids = append(ids, enqueue(t, s, r, typ))
	}
	ds, err := s.Deliveries(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != len(types) {
		t.Fatalf("%d deliveries, want %d", len(ds), len(types))
	}
	wantData, _ := json.Marshal(r)
	for i, d := range ds {
		if d.ID != ids[i] || d.Seq != i+1 || d.Type != types[i] || d.ReplicationID != r.ID || d.URL != r.Spec.CallbackURL {
			t.Errorf("delivery %d: id %s seq %d type %s replication %s url %s", i, d.ID, d.Seq, d.Type, d.ReplicationID, d.URL)
		}
		if d.Status != webhook.StatusPending || d.NextAttemptAt == nil || d.DeliveredAt != nil || d.Tries != 0 || len(d.Attempts) != 0 {
			t.Errorf("new delivery %d: %+v", i, d)
		}
		var p webhook.Payload
		if err := json.Unmarshal(d.Payload, &p); err != nil {
			t.Fatalf("payload %s: %v", d.Payload, err)
		}
		if p.Type != types[i] || p.Timestamp.Location() != time.UTC || p.Timestamp.Before(before) || p.Timestamp.After(later()) {
			t.Errorf("payload type %s timestamp %s", p.Type, p.Timestamp)
		}
		var got, want any
		json.Unmarshal(p.Data, &got)
		json.Unmarshal(wantData, &want)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("payload data differs from what was queued (-want +got):\n%s", diff)
		}
	}

	// A request without a callback URL gets no delivery.
	plain, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(2), RequestedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if id, err := s.EnqueueDelivery(ctx, plain.ID, webhook.EventSucceeded, []byte(`{}`)); id != "" || err != nil {
		t.Fatalf("enqueue without a callback URL = %q, %v", id, err)
	}
	if ds, err := s.Deliveries(ctx, plain.ID); len(ds) != 0 || err != nil {
		t.Fatalf("deliveries of a request without callback URL = %v, %v", ds, err)
	}

	for _, tc := range []struct {
		id   string
		typ  webhook.EventType
		data string
	}{
		{"00000000-0000-0000-0000-000000000000", webhook.EventSucceeded, `{}`},
		{"not-a-uuid", webhook.EventSucceeded, `{}`},
		{r.ID, "replication.exploded", `{}`},
		{r.ID, webhook.EventSucceeded, `{"unterminated"`},
	} {
		if id, err := s.EnqueueDelivery(ctx, tc.id, tc.typ, []byte(tc.data)); err == nil {
			t.Errorf("EnqueueDelivery(%s, %s, %s) = %s, want an error", tc.id, tc.typ, tc.data, id)
		}
	}
	if _, err := s.Deliveries(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("deliveries of an unknown request: %v", err)
	}
}

func TestConcurrentEnqueuesNumberARequestsDeliveriesWithoutGaps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	r := withCallback(t, s, 1)
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			if _, err := s.EnqueueDelivery(ctx, r.ID, webhook.EventSucceeded, []byte(`{}`)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ds, err := s.Deliveries(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range ds {
		if d.Seq != i+1 {
			t.Fatalf("delivery %d has seq %d", i, d.Seq)
		}
	}
	if len(ds) != n {
		t.Fatalf("%d deliveries, want %d", len(ds), n)
	}
}

func claimIDs(t *testing.T, s *store.Store, owner string, now time.Time) []string {
	t.Helper()
	ds, err := s.ClaimDue(context.Background(), owner, now, time.Minute, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	return ids
}

func record(t *testing.T, s *store.Store, owner, id string, status webhook.Status, at, next time.Time) {
	t.Helper()
	rec := webhook.AttemptRecord{DeliveryID: id, Status: status, NextAttemptAt: next,
		Attempt: webhook.Attempt{At: at, StatusCode: 500, Error: "HTTP 500", Duration: 1500 * time.Microsecond}}
	if status == webhook.StatusDelivered {
		rec.Attempt.StatusCode, rec.Attempt.Error = 204, ""
	}
	if err := s.RecordAttempt(context.Background(), owner, rec); err != nil {
		t.Fatalf("RecordAttempt(%s, %s): %v", id, status, err)
	}
}

func TestClaimDueWaitsForTheRequestsEarlierDeliveries(t *testing.T) {
	t.Parallel()
	s := storetest.New(t)
	r1, r2 := withCallback(t, s, 1), withCallback(t, s, 2)
	a1, a2, a3 := enqueue(t, s, r1, webhook.EventSucceeded), enqueue(t, s, r1, webhook.EventDeprovisioned), enqueue(t, s, r1, webhook.EventFailed)
	b1 := enqueue(t, s, r2, webhook.EventCancelled)
	now := later()
	sorted := func(ids []string) map[string]bool {
		m := map[string]bool{}
		for _, id := range ids {
			m[id] = true
		}
		return m
	}
	// Only the first pending delivery of each request is due.
	if diff := cmp.Diff(sorted([]string{a1, b1}), sorted(claimIDs(t, s, "d1", now))); diff != "" {
		t.Fatalf("first claim (-want +got):\n%s", diff)
	}
	// Claimed ones are leased; the next of r1 still waits for a1.
	if got := claimIDs(t, s, "d2", now); len(got) != 0 {
		t.Fatalf("second dispatcher claimed %v while the first holds the leases", got)
	}
	record(t, s, "d1", a1, webhook.StatusDelivered, now, time.Time{})
	record(t, s, "d1", b1, webhook.StatusDelivered, now, time.Time{})
	if diff := cmp.Diff([]string{a2}, claimIDs(t, s, "d2", now)); diff != "" {
		t.Fatalf("after a1 was delivered (-want +got):\n%s", diff)
	}
	// A retry scheduled later keeps a3 waiting until it is done.
	record(t, s, "d2", a2, webhook.StatusPending, now, now.Add(time.Hour))
	if got := claimIDs(t, s, "d2", now.Add(time.Minute)); len(got) != 0 {
		t.Fatalf("claimed %v before a2's retry was due", got)
	}
	if diff := cmp.Diff([]string{a2}, claimIDs(t, s, "d2", now.Add(time.Hour))); diff != "" {
		t.Fatalf("when a2's retry is due (-want +got):\n%s", diff)
	}
	// A failed delivery does not hold the later ones back.
	record(t, s, "d2", a2, webhook.StatusFailed, now.Add(time.Hour), time.Time{})
	if diff := cmp.Diff([]string{a3}, claimIDs(t, s, "d1", now.Add(time.Hour))); diff != "" {
		t.Fatalf("after a2 failed (-want +got):\n%s", diff)
	}

	ds, err := s.Deliveries(context.Background(), r1.ID)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]webhook.Attempt{}
	for _, d := range ds {
		got[d.ID] = d.Attempts
	}
	want := map[string][]webhook.Attempt{
		a1: {{At: now, StatusCode: 204, Duration: 1500 * time.Microsecond}},
		a2: {
			{At: now, StatusCode: 500, Error: "HTTP 500", Duration: 1500 * time.Microsecond},
			{At: now.Add(time.Hour), StatusCode: 500, Error: "HTTP 500", Duration: 1500 * time.Microsecond},
		},
		a3: {},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Sub(b).Abs() < time.Microsecond })); diff != "" {
		t.Fatalf("attempts (-want +got):\n%s", diff)
	}
	if d := ds[0]; d.Status != webhook.StatusDelivered || d.DeliveredAt == nil || d.NextAttemptAt != nil || d.LastStatus != 204 || d.LastError != "" {
		t.Fatalf("delivered delivery: %+v", d)
	}
	if d := ds[1]; d.Status != webhook.StatusFailed || d.DeliveredAt != nil || d.NextAttemptAt != nil || d.Tries != 2 || d.LastStatus != 500 || d.LastError != "HTTP 500" {
		t.Fatalf("failed delivery: %+v", d)
	}
}

func TestAnExpiredLeaseIsTakenOverAndTheLateWriteRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	r := withCallback(t, s, 1)
	id := enqueue(t, s, r, webhook.EventSucceeded)
	now := later()
	if got := claimIDs(t, s, "dead", now); len(got) != 1 {
		t.Fatalf("claimed %v", got)
	}
	if got := claimIDs(t, s, "alive", now.Add(59*time.Second)); len(got) != 0 {
		t.Fatalf("claimed %v while the lease is held", got)
	}
	if diff := cmp.Diff([]string{id}, claimIDs(t, s, "alive", now.Add(61*time.Second))); diff != "" {
		t.Fatalf("after the lease expired (-want +got):\n%s", diff)
	}
	late := webhook.AttemptRecord{DeliveryID: id, Status: webhook.StatusDelivered, Attempt: webhook.Attempt{At: now, StatusCode: 200}}
	if err := s.RecordAttempt(ctx, "dead", late); !errors.Is(err, webhook.ErrLeaseLost) {
		t.Fatalf("late write = %v, want ErrLeaseLost", err)
	}
	record(t, s, "alive", id, webhook.StatusDelivered, now.Add(61*time.Second), time.Time{})
	// Nothing more to record once it is done.
	if err := s.RecordAttempt(ctx, "alive", late); !errors.Is(err, webhook.ErrLeaseLost) {
		t.Fatalf("write after delivery = %v, want ErrLeaseLost", err)
	}
	ds, err := s.Deliveries(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds[0].Attempts) != 1 {
		t.Fatalf("attempts %+v, want only the live dispatcher's", ds[0].Attempts)
	}
}

func TestRedeliverQueuesAFinishedDeliveryAgainWithTheSameID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	r := withCallback(t, s, 1)
	id := enqueue(t, s, r, webhook.EventSucceeded)
	if _, err := s.Redeliver(ctx, r.ID, id); !errors.Is(err, webhook.ErrDeliveryPending) {
		t.Fatalf("redeliver a pending delivery = %v, want ErrDeliveryPending", err)
	}
	now := later()
	claimIDs(t, s, "d", now)
	record(t, s, "d", id, webhook.StatusPending, now, now.Add(time.Second))
	claimIDs(t, s, "d", now.Add(time.Second))
	record(t, s, "d", id, webhook.StatusDelivered, now.Add(time.Second), time.Time{})

	d, err := s.Redeliver(ctx, r.ID, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.ID != id || d.Status != webhook.StatusPending || d.Tries != 0 || d.NextAttemptAt == nil || d.DeliveredAt != nil || len(d.Attempts) != 2 {
		t.Fatalf("redelivered: %+v", d)
	}
	if !d.QueuedAt.After(d.CreatedAt) {
		t.Fatalf("queued_at %s not after created_at %s: the maximum age would not start afresh", d.QueuedAt, d.CreatedAt)
	}
	if diff := cmp.Diff([]string{id}, claimIDs(t, s, "d", now.Add(time.Minute))); diff != "" {
		t.Fatalf("claim after redeliver (-want +got):\n%s", diff)
	}
	if _, err := s.Redeliver(ctx, r.ID, id); !errors.Is(err, webhook.ErrDeliveryPending) {
		t.Fatalf("redeliver twice = %v, want ErrDeliveryPending", err)
	}

	other := withCallback(t, s, 2)
	for _, tc := range []struct {
		replication, delivery string
		want                  error
	}{
		{other.ID, id, webhook.ErrDeliveryNotFound}, // another request's delivery
		{r.ID, "00000000-0000-0000-0000-000000000000", webhook.ErrDeliveryNotFound},
		{r.ID, "nope", webhook.ErrDeliveryNotFound},
		{"00000000-0000-0000-0000-000000000000", id, provision.ErrNotFound},
		{"nope", id, provision.ErrNotFound},
	} {
		if _, err := s.Redeliver(ctx, tc.replication, tc.delivery); !errors.Is(err, tc.want) {
			t.Errorf("Redeliver(%s, %s) = %v, want %v", tc.replication, tc.delivery, err, tc.want)
		}
	}
}

func TestOldestPending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	if _, ok, err := s.OldestPending(ctx); ok || err != nil {
		t.Fatalf("OldestPending on no deliveries = %v, %v", ok, err)
	}
	r := withCallback(t, s, 1)
	first := enqueue(t, s, r, webhook.EventSucceeded)
	enqueue(t, s, r, webhook.EventDeprovisioned)
	ds, _ := s.Deliveries(ctx, r.ID)
	oldest, ok, err := s.OldestPending(ctx)
	if err != nil || !ok || !oldest.Equal(ds[0].QueuedAt) {
		t.Fatalf("OldestPending = %s, %v, %v; want %s", oldest, ok, err, ds[0].QueuedAt)
	}
	now := later()
	claimIDs(t, s, "d", now)
	record(t, s, "d", first, webhook.StatusDelivered, now, time.Time{})
	if oldest, _, _ := s.OldestPending(ctx); !oldest.Equal(ds[1].QueuedAt) {
		t.Fatalf("OldestPending after the first was delivered = %s, want %s", oldest, ds[1].QueuedAt)
	}
}
