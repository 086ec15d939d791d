package store_test

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// connect opens a plain connection to the store's database, to act as
// someone bypassing the store.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestTheDatabaseKnowsTheSameLifecycleAsTheCode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := storetest.NewMigratedDatabase(t)
	db := connect(t, url)

	rows, err := db.Query(ctx, `SELECT COALESCE(from_state::text, ''), action, to_state::text FROM replication_transitions`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (provision.Transition, error) {
		var tr provision.Transition
		err := r.Scan(&tr.From, &tr.Action, &tr.To)
		return tr, err
	})
	if err != nil {
		t.Fatal(err)
	}
	key := func(a, b provision.Transition) int {
		return cmpStrings(string(a.From)+"/"+string(a.Action), string(b.From)+"/"+string(b.Action))
	}
	want := slices.Clone(provision.Transitions)
	slices.SortFunc(want, key)
	slices.SortFunc(got, key)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("replication_transitions differs from provision.Transitions (-code +database):\n%s", diff)
	}

	var states []string
	if err := db.QueryRow(ctx, `SELECT enum_range(NULL::replication_state)::text[]`).Scan(&states); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(asStrings(provision.States), states); diff != "" {
		t.Errorf("enum replication_state differs from provision.States (-code +database):\n%s", diff)
	}
	for _, c := range []struct {
		constraint string
		want       []string
	}{
		{"replication_steps_status", asStrings(provision.StepStatuses)},
		{"replication_events_type", asStrings(provision.EventTypes)},
	} {
		var def string
		if err := db.QueryRow(ctx, `SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1`, c.constraint).Scan(&def); err != nil {
			t.Fatalf("read constraint %s: %v", c.constraint, err)
		}
		var allowed []string
		for _, m := range regexp.MustCompile(`'([a-z_]+)'`).FindAllStringSubmatch(def, -1) {
			allowed = append(allowed, m[1])
		}
		if diff := cmp.Diff(c.want, allowed); diff != "" {
			t.Errorf("constraint %s allows other values than the code writes (-code +database):\n%s", c.constraint, diff)
		}
	}
}

func cmpStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func asStrings[S ~string](v []S) []string {
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = string(s)
	}
	return out
}

func TestTheDatabaseRefusesAStateChangeTheLifecycleLacks(t *testing.T) {
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
	db := connect(t, url)
	for _, to := range []provision.State{provision.StateSucceeded, provision.StateDeprovisioned, provision.StateDeprovisioning} {
		_, err := db.Exec(ctx, `UPDATE replications SET state = $2, finished_at = now() WHERE id = $1`, r.ID, to)
		if err == nil || !regexpMatch(`cannot move from pending to `+string(to), err.Error()) {
			t.Errorf("raw UPDATE pending -> %s = %v, want it refused", to, err)
		}
	}
	if _, err := db.Exec(ctx, `UPDATE replications SET state = 'cancelled', finished_at = now() WHERE id = $1`, r.ID); err != nil {
		t.Errorf("a transition the lifecycle has (pending -> cancelled) was refused: %v", err)
	}
	_, err = db.Exec(ctx, `INSERT INTO replications (id, state, source_account_id, source_region, source_bucket, source_kms_key_arn,
	destination_account_id, destination_region, destination_bucket, destination_kms_key_arn, requested_by, finished_at)
	VALUES (gen_random_uuid(), 'succeeded', '1', 'r', 'a', 'k', '2', 'r', 'b', 'k', 't', now())`)
	if err == nil {
		t.Error("a request inserted as succeeded was accepted; requests are created pending")
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

func TestEveryStateChangeIsAnEventWithItsActorNumberedPerRequest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	a, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(2), RequestedBy: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	c, ok, err := s.Claim(ctx, "w1", time.Minute)
	if err != nil || !ok || c.Replication.ID != a.ID {
		t.Fatalf("claim = %v %v %v", c.Replication.ID, ok, err)
	}
	if err := s.Finish(ctx, &c, provision.ActionComplete, "done"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deprovision(ctx, a.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, b.ID, "dave"); err != nil {
		t.Fatal(err)
	}
	type row struct {
		Seq   int64
		State provision.State
		Actor string
	}
	timeline := func(id string) []row {
		events, err := s.Events(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []row
		for _, e := range events {
			out = append(out, row{e.Seq, e.State, e.Actor})
		}
		return out
	}
	wantA := []row{
		{1, provision.StatePending, "alice"},
		{2, provision.StateRunning, "worker:w1"},
		{3, provision.StateSucceeded, "worker:w1"},
		{4, provision.StateDeprovisioning, "carol"},
	}
	if diff := cmp.Diff(wantA, timeline(a.ID)); diff != "" {
		t.Errorf("timeline of a (-want +got):\n%s", diff)
	}
	wantB := []row{{1, provision.StatePending, "bob"}, {2, provision.StateCancelled, "dave"}}
	if diff := cmp.Diff(wantB, timeline(b.ID)); diff != "" {
		t.Errorf("timeline of b (-want +got):\n%s", diff)
	}
	after, err := s.Events(ctx, a.ID, 2)
	if err != nil || len(after) != 2 || after[0].Seq != 3 {
		t.Errorf("events after 2 = %v, %v; want events 3 and 4", after, err)
	}
}

func TestHooksRunInTheTransitionsTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	var (
		mu       sync.Mutex
		seen     []provision.Transition
		observed []provision.State
		refuse   = provision.ActionCancel
	)
	s.OnTransition(func(ctx context.Context, tx pgx.Tx, c provision.Change) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, c.Transition)
		if c.Action == refuse {
			return errors.New("outbox unavailable")
		}
		// What the hook reads is the transition's own, uncommitted state.
		var state provision.State
		if err := tx.QueryRow(ctx, `SELECT state FROM replications WHERE id = $1`, c.Replication.ID).Scan(&state); err != nil {
			return err
		}
		if state != c.To {
			return errors.New("the hook does not see the new state")
		}
		return nil
	})
	s.AfterTransition(func(c provision.Change) {
		mu.Lock()
		defer mu.Unlock()
		observed = append(observed, c.To)
	})
	r, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, r.ID, "t"); err == nil {
		t.Fatal("a cancel whose hook failed was applied")
	}
	got, err := s.Get(ctx, r.ID)
	if err != nil || got.State != provision.StatePending {
		t.Fatalf("after a failed hook the request is %s (%v), want still pending", got.State, err)
	}
	events, _ := s.Events(ctx, r.ID, 0)
	if len(events) != 1 {
		t.Errorf("%d events after a rolled-back cancel, want only the creation", len(events))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0].Action != provision.ActionCreate || seen[1].Action != provision.ActionCancel {
		t.Errorf("hooks saw %v, want create then cancel", seen)
	}
	if diff := cmp.Diff([]provision.State{provision.StatePending}, observed); diff != "" {
		t.Errorf("after-commit observers saw (-want +got):\n%s", diff)
	}
}
