package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// clock is a settable time for a store.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.set(t)
	return c
}

func (c *clock) set(t time.Time)     { c.t.Store(&t) }
func (c *clock) now() time.Time      { return *c.t.Load() }
func (c *clock) add(d time.Duration) { c.set(c.now().Add(d)) }

// keyedCreate is a create with caller jira's key k and a body hashing to
// hash.
func keyedCreate(n int, key, hash string) provision.NewReplication {
	return provision.NewReplication{Spec: spec(n), RequestedBy: "jira", IdempotencyKey: key, RequestHash: []byte(hash),
		Answer: func(r provision.Replication) (provision.Response, error) {
			return provision.Response{Status: 202, Body: []byte("created " + r.ID)}, nil
		}}
}

// expiringStore is a store that remembers keys for ttl by the clock c.
func expiringStore(t *testing.T, ttl time.Duration, c *clock) *store.Store {
	t.Helper()
	s := storetest.New(t)
	s.KeepIdempotencyKeys(ttl)
	store.SetClock(s, c.now)
	return s
}

func TestAnIdempotencyKeyIsForgottenAfterItsTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ttl = 24 * time.Hour
	c := newClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	s := expiringStore(t, ttl, c)

	first, _, err := s.Create(ctx, keyedCreate(1, "k", "body A"))
	if err != nil {
		t.Fatal(err)
	}
	// The route is free again, so a new request with the same body could
	// be created; only the key stands in the way while it lives.
	if _, err := s.Cancel(ctx, first.ID, "jira"); err != nil {
		t.Fatal(err)
	}

	c.add(ttl - time.Microsecond)
	if _, replay, err := s.Create(ctx, keyedCreate(1, "k", "body A")); err != nil || replay == nil || replay.ReplicationID != first.ID {
		t.Fatalf("a retry just before the key expires = %+v, %v; want the first answer again", replay, err)
	}
	if _, _, err := s.Create(ctx, keyedCreate(2, "k", "body B")); !errors.Is(err, provision.ErrIdempotencyKeyReused) {
		t.Fatalf("another body just before the key expires = %v, want ErrIdempotencyKeyReused", err)
	}
	if replay, err := s.Replay(ctx, "jira", "k", []byte("body A")); err != nil || replay == nil || replay.ReplicationID != first.ID {
		t.Fatalf("Replay just before the key expires = %+v, %v", replay, err)
	}

	c.add(time.Microsecond)
	if replay, err := s.Replay(ctx, "jira", "k", []byte("body A")); err != nil || replay != nil {
		t.Fatalf("Replay of an expired key = %+v, %v; want nothing remembered", replay, err)
	}
	second, replay, err := s.Create(ctx, keyedCreate(2, "k", "body B"))
	if err != nil || replay != nil || second.ID == first.ID {
		t.Fatalf("an expired key with another body = %+v, %+v, %v; want a new request", second, replay, err)
	}
	// The key now names the second request, for a day from now.
	c.add(ttl - time.Microsecond)
	if _, replay, err := s.Create(ctx, keyedCreate(2, "k", "body B")); err != nil || replay == nil || replay.ReplicationID != second.ID {
		t.Fatalf("a retry of the second request = %+v, %v", replay, err)
	}
	if _, _, err := s.Create(ctx, keyedCreate(1, "k", "body A")); !errors.Is(err, provision.ErrIdempotencyKeyReused) {
		t.Fatalf("the first body with the retaken key = %v, want ErrIdempotencyKeyReused", err)
	}
}

func TestConcurrentRetriesAtTheExpiryEdgeCreateOneRequest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ttl = time.Hour
	c := newClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	s := expiringStore(t, ttl, c)
	first, _, err := s.Create(ctx, keyedCreate(1, "k", "body"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, first.ID, "jira"); err != nil {
		t.Fatal(err)
	}

	// Every retry arrives the moment the key expires: one takes it over and
	// creates a request, all the others replay that one.
	c.add(ttl)
	const n = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created []string
		replays = map[string]int{}
		errs    []error
	)
	for range n {
		wg.Go(func() {
			r, replay, err := s.Create(ctx, keyedCreate(1, "k", "body"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err)
			case replay != nil:
				replays[replay.ReplicationID]++
				if want := "created " + replay.ReplicationID; string(replay.Body) != want {
					errs = append(errs, fmt.Errorf("replayed %q, want %q", replay.Body, want))
				}
			default:
				created = append(created, r.ID)
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("retries at the expiry edge failed: %v", errs)
	}
	if len(created) != 1 || created[0] == first.ID || len(replays) != 1 || replays[created[0]] != n-1 {
		t.Fatalf("created %v and replayed %v; want one new request and %d replays of it", created, replays, n-1)
	}
	page, err := s.List(ctx, provision.Filter{Scope: everything, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 2 {
		t.Fatalf("%d requests stored, want the first and one new one", len(page.Items))
	}
}

func TestForgettingExpiredKeysGoesInBoundedBatchesAndKeepsLiveOnes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ttl = time.Hour
	c := newClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	s := expiringStore(t, ttl, c)
	var old []provision.Replication
	for i := range 5 {
		r, _, err := s.Create(ctx, keyedCreate(i, fmt.Sprintf("old-%d", i), "body"))
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, r)
	}
	c.add(ttl / 2)
	if _, _, err := s.Create(ctx, keyedCreate(10, "young", "body")); err != nil {
		t.Fatal(err)
	}
	c.add(ttl / 2)

	var batches []int64
	for {
		n, err := s.ForgetExpiredIdempotencyKeys(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, n)
		if n < 2 {
			break
		}
	}
	if fmt.Sprint(batches) != "[2 2 1]" {
		t.Errorf("forgot %v keys per batch of at most 2, want [2 2 1]", batches)
	}
	if replay, err := s.Replay(ctx, "jira", "young", []byte("body")); err != nil || replay == nil {
		t.Errorf("the live key was forgotten: %+v, %v", replay, err)
	}
	// Forgetting a key forgets the answer, never the request.
	for _, r := range old {
		if _, err := s.Get(ctx, r.ID); err != nil {
			t.Errorf("request %s of a forgotten key: %v", r.ID, err)
		}
	}
}
