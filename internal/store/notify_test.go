package store_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// woken reports whether ch holds a wake-up now, without waiting.
func woken(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestEventsWakeTheFollowersOfTheirRequestAfterTheCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := storetest.NewMigratedDatabase(t)
	open := func() *store.Store {
		s, err := store.Open(ctx, url, storetest.MaxConns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	// s writes; other is another replica following the same requests.
	s, other := open(), open()
	var refuse atomic.Bool
	s.OnTransition(func(context.Context, pgx.Tx, provision.Change) error {
		if refuse.Load() {
			return errors.New("disk full")
		}
		return nil
	})
	r1, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	r2, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(2), RequestedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	marker, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(3), RequestedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	// A follower may name its request in capitals; it is the same request.
	local1 := s.EventsWake(wctx, strings.ToUpper(r1.ID))
	remote1, remote2 := other.EventsWake(wctx, r1.ID), other.EventsWake(wctx, r2.ID)
	local2 := s.EventsWake(wctx, r2.ID)
	remoteMarker := other.EventsWake(wctx, marker.ID)
	// Each store listens on one connection for every channel.
	db := connect(t, url)
	waitUntil(t, func() bool { return listening(t, db, store.EventsChannel) == 2 })
	waitUntil(t, func() bool { return listening(t, db, store.DeliveriesChannel) == 2 })
	// Notifications reach a listener in the order they were sent: once the
	// marker's has arrived, so have those of the requests' creation.
	if _, err := s.Cancel(ctx, marker.ID, "t"); err != nil {
		t.Fatal(err)
	}
	if !received(remoteMarker) {
		t.Fatal("the other replica did not hear the marker's event")
	}
	for _, ch := range []<-chan struct{}{local1, local2, remote1, remote2} {
		woken(ch)
	}

	// A transaction that rolls back wrote no event and wakes no one.
	refuse.Store(true)
	if _, err := s.Cancel(ctx, r1.ID, "t"); err == nil {
		t.Fatal("a cancel whose transaction failed was applied")
	}
	if woken(local1) {
		t.Error("a rolled-back event woke this process's follower")
	}
	refuse.Store(false)

	if _, err := s.Cancel(ctx, r1.ID, "t"); err != nil {
		t.Fatal(err)
	}
	if !woken(local1) {
		t.Error("this process's follower was not woken as the commit returned")
	}
	if !received(remote1) {
		t.Fatal("the other replica's follower was not woken")
	}
	// The listener passes on each notification whole before the next, so
	// the other request's followers would have been woken by now.
	if woken(remote2) || woken(local2) {
		t.Error("followers of another request were woken")
	}

	// An event on r2 goes through the same connections after r1's: once
	// the other replica hears it, this process's listener has heard r1's
	// echo, and (since its follower was woken when it was sent) skipped it.
	if _, err := s.Cancel(ctx, r2.ID, "t"); err != nil {
		t.Fatal(err)
	}
	if !woken(local2) || !received(remote2) {
		t.Fatal("r2's followers were not woken")
	}
	if woken(remote1) {
		t.Error("the rolled-back cancel, or r2's, reached r1's follower in the other replica")
	}
	if woken(local1) {
		t.Error("this process's follower was woken twice for one commit: its own notification came back")
	}
}

func TestALostListenConnectionWakesEveryoneAndListensAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := storetest.NewMigratedDatabase(t)
	s, err := store.Open(ctx, url, storetest.MaxConns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	r, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := store.Open(ctx, url, storetest.MaxConns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	wctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	events, work := s.EventsWake(wctx, r.ID), s.Wake(wctx)
	db := connect(t, url)
	waitUntil(t, func() bool { return listening(t, db, store.EventsChannel) == 1 })
	woken(events)
	woken(work)

	// The database drops the listening connection, as a restart would:
	// notifications sent until it listens again are lost, so whoever waits
	// is told to look for itself, once now and once it listens again.
	if _, err := db.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	for _, when := range []string{"the connection was lost", "it listens again"} {
		if !received(events) || !received(work) {
			t.Fatalf("followers were not woken when %s", when)
		}
	}
	if _, err := other.Cancel(ctx, r.ID, "t"); err != nil {
		t.Fatal(err)
	}
	if !received(events) {
		t.Fatal("another replica's event was not heard on the new connection")
	}
}
