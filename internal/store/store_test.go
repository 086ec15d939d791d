package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

func spec(n int) provision.Spec {
	return provision.Spec{
		Source: provision.Side{AccountID: "111111111111", Region: "us-east-1",
			Bucket: fmt.Sprintf("src-%d", n), KMSKeyARN: "arn:aws:kms:us-east-1:111111111111:key/11111111-1111-4111-8111-111111111111"},
		Destination: provision.Side{AccountID: "222222222222", Region: "us-west-2",
			Bucket: "dst", KMSKeyARN: "arn:aws:kms:us-west-2:222222222222:key/22222222-2222-4222-8222-222222222222"},
		Rule:   provision.Rule{StorageClass: "STANDARD"},
		Verify: true,
		Ticket: fmt.Sprintf("OPS-%d", n%3),
	}
}

// everything is the scope of a caller who may see every request.
var everything = provision.Scope{All: true}

func TestMigrationsUpDownUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := store.Open(ctx, storetest.NewDatabase(t), storetest.MaxConns)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ready(ctx); !errors.Is(err, store.ErrMigrationsPending) {
		t.Fatalf("Ready on an empty database = %v, want ErrMigrationsPending", err)
	}
	for i, step := range []func(context.Context) error{s.Migrate, s.MigrateDown, s.Migrate} {
		if err := step(ctx); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready after migrating: %v", err)
	}
	if _, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "t"}); err != nil {
		t.Fatalf("create after up/down/up: %v", err)
	}
}

func TestCreateGetCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	r, replay, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "alice"})
	if err != nil || replay != nil {
		t.Fatalf("Create = %v, %v", replay, err)
	}
	if r.State != provision.StatePending || r.FinishedAt != nil {
		t.Fatalf("new replication state %s finished %v", r.State, r.FinishedAt)
	}
	got, err := s.Get(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, got); diff != "" {
		t.Fatalf("Get differs from Create (-want +got):\n%s", diff)
	}
	c, err := s.Cancel(ctx, r.ID, "t")
	if err != nil {
		t.Fatal(err)
	}
	if c.State != provision.StateCancelled || c.FinishedAt == nil {
		t.Fatalf("cancelled: state %s finished %v", c.State, c.FinishedAt)
	}
	var se *provision.StateError
	if _, err := s.Cancel(ctx, r.ID, "t"); !errors.As(err, &se) || se.State != provision.StateCancelled {
		t.Fatalf("second cancel = %v, want StateError(cancelled)", err)
	}
	if _, err := s.Get(ctx, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, provision.ErrNotFound) {
		t.Fatalf("Get unknown = %v", err)
	}
	events, err := s.Events(ctx, r.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var states []provision.State
	for _, e := range events {
		states = append(states, e.State)
	}
	if diff := cmp.Diff([]provision.State{provision.StatePending, provision.StateCancelled}, states); diff != "" {
		t.Fatalf("timeline states (-want +got):\n%s", diff)
	}
	// A cancelled route is free again.
	if _, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "alice"}); err != nil {
		t.Fatalf("create after cancel: %v", err)
	}
}

func TestCreateDuplicateLiveRoute(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	first, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "a"})
	if err != nil {
		t.Fatal(err)
	}
	var dup *provision.DuplicateError
	_, _, err = s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "b"})
	if !errors.As(err, &dup) || dup.ExistingID != first.ID {
		t.Fatalf("duplicate create = %v, want DuplicateError naming %s", err, first.ID)
	}
	other := spec(1)
	other.Rule.Prefix = "logs/"
	if _, _, err := s.Create(ctx, provision.NewReplication{Spec: other, RequestedBy: "b"}); err != nil {
		t.Fatalf("another prefix is another route: %v", err)
	}
}

func TestDeprovisioningACancelledRequestWhoseRouteWasReusedIsAConflict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	old, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Cancel(ctx, old.ID, "t"); err != nil {
		t.Fatal(err)
	}
	newer, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "a"})
	if err != nil {
		t.Fatal(err)
	}
	var dup *provision.DuplicateError
	if _, err := s.Deprovision(ctx, old.ID, "t"); !errors.As(err, &dup) || dup.ExistingID != newer.ID {
		t.Fatalf("deprovision the cancelled request = %v, want DuplicateError naming %s", err, newer.ID)
	}
}

func TestCancellingARequestWaitingToRetryCancelsItAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	r, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "a"})
	if err != nil {
		t.Fatal(err)
	}
	c, ok, err := s.Claim(ctx, "w", time.Minute)
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	retry := provision.Failure{Step: "inspect_source", RetryAt: time.Now().Add(time.Hour),
		Problem: []byte(`{"type":"x","title":"Step will be retried","status":503}`)}
	if err := s.Fail(ctx, &c, retry); err != nil {
		t.Fatal(err)
	}
	got, err := s.Cancel(ctx, r.ID, "t")
	if err != nil || got.State != provision.StateCancelled || got.FinishedAt == nil {
		t.Fatalf("cancel a request waiting an hour to retry = %s, %v; want cancelled now", got.State, err)
	}
}

func TestCreateIdempotentUnderConcurrency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	answer := func(r provision.Replication) (provision.Response, error) {
		return provision.Response{Status: 202, Body: []byte("created " + r.ID)}, nil
	}
	in := provision.NewReplication{Spec: spec(1), RequestedBy: "jira", IdempotencyKey: "k1", RequestHash: []byte("h1"), Answer: answer}
	const n = 8
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ids      = map[string]int{}
		replays  int
		failures []error
	)
	for range n {
		wg.Go(func() {
			r, replay, err := s.Create(ctx, in)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				failures = append(failures, err)
			case replay != nil:
				replays++
				ids[replay.ReplicationID]++
				if want := "created " + replay.ReplicationID; string(replay.Body) != want || replay.Status != 202 {
					failures = append(failures, fmt.Errorf("replayed %d %q, want 202 %q", replay.Status, replay.Body, want))
				}
			default:
				ids[r.ID]++
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("concurrent identical creates failed: %v", failures)
	}
	if len(ids) != 1 || replays != n-1 {
		t.Fatalf("got ids %v and %d replays, want one id and %d replays", ids, replays, n-1)
	}
	page, err := s.List(ctx, provision.Filter{Scope: everything, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 {
		t.Fatalf("%d rows stored, want 1", len(page.Items))
	}
	in.RequestHash = []byte("other body")
	if _, _, err := s.Create(ctx, in); !errors.Is(err, provision.ErrIdempotencyKeyReused) {
		t.Fatalf("same key, other body = %v", err)
	}
	in.RequestedBy = "another caller"
	in.Spec = spec(2)
	if _, replay, err := s.Create(ctx, in); err != nil || replay != nil {
		t.Fatalf("same key from another caller = %v, %v; keys are per caller", replay, err)
	}
}

func TestListPagesWithoutGapsOrDuplicatesWhileInserting(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	want := map[string]bool{}
	for i := range 23 {
		r, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(i), RequestedBy: "t"})
		if err != nil {
			t.Fatal(err)
		}
		want[r.ID] = true
	}
	seen := map[string]int{}
	cursor := ""
	inserted := 100
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("pagination does not end")
		}
		page, err := s.List(ctx, provision.Filter{Scope: everything, Limit: 5, After: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Items {
			seen[r.ID]++
		}
		// Rows arriving mid-listing must not disturb the pages still to come.
		if _, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(inserted), RequestedBy: "t"}); err != nil {
			t.Fatal(err)
		}
		inserted++
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("replication %s listed %d times, want once", id, seen[id])
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("replication %s listed %d times", id, n)
		}
	}
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	for i := range 6 {
		sp := spec(i)
		if i == 5 {
			sp.Source.AccountID = "333333333333"
			sp.Source.KMSKeyARN = "arn:aws:kms:us-east-1:333333333333:key/11111111-1111-4111-8111-111111111111"
		}
		r, _, err := s.Create(ctx, provision.NewReplication{Spec: sp, RequestedBy: "t"})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := s.Cancel(ctx, r.ID, "t"); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(f provision.Filter) int {
		f.Limit = 50
		if f.Scope.Accounts == nil {
			f.Scope = everything
		}
		p, err := s.List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Items)
	}
	for _, tc := range []struct {
		name string
		f    provision.Filter
		want int
	}{
		{"all", provision.Filter{}, 6},
		{"cancelled", provision.Filter{States: []provision.State{provision.StateCancelled}}, 1},
		{"pending", provision.Filter{States: []provision.State{provision.StatePending}}, 5},
		{"any of two states", provision.Filter{States: []provision.State{provision.StatePending, provision.StateCancelled}}, 6},
		{"destination account matches every row", provision.Filter{AccountID: "222222222222"}, 6},
		{"source account", provision.Filter{AccountID: "333333333333"}, 1},
		{"ticket", provision.Filter{Ticket: "OPS-0"}, 2},
		{"nothing", provision.Filter{Ticket: "NOPE"}, 0},
		{"scope of the destination", provision.Filter{Scope: provision.Scope{Accounts: []string{"222222222222"}}}, 6},
		{"scope of one source", provision.Filter{Scope: provision.Scope{Accounts: []string{"333333333333"}}}, 1},
		{"scope of two sources", provision.Filter{Scope: provision.Scope{Accounts: []string{"111111111111", "333333333333"}}}, 6},
		{"scope of another account", provision.Filter{Scope: provision.Scope{Accounts: []string{"444444444444"}}}, 0},
		{"empty scope", provision.Filter{Scope: provision.Scope{Accounts: []string{}}}, 0},
		{"scope and account filter", provision.Filter{Scope: provision.Scope{Accounts: []string{"333333333333"}}, AccountID: "222222222222"}, 1},
	} {
		if got := count(tc.f); got != tc.want {
			t.Errorf("%s: %d items, want %d", tc.name, got, tc.want)
		}
	}
	if p, err := s.List(ctx, provision.Filter{Limit: 50}); err != nil || len(p.Items) != 0 {
		t.Errorf("a filter without a scope listed %d items (%v); want none", len(p.Items), err)
	}
	if _, err := s.List(ctx, provision.Filter{Scope: everything, Limit: 5, After: "not-a-cursor"}); !errors.Is(err, provision.ErrBadCursor) {
		t.Errorf("bad cursor = %v", err)
	}
}

func TestPoolSizeComesFromTheWorkersUnlessTheURLSetsIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := storetest.NewMigratedDatabase(t)
	for _, tc := range []struct {
		url  string
		ask  int
		want int
	}{
		{url, 57, 57},
		{url + "&pool_max_conns=7", 57, 7},
		{"host=127.0.0.1 user=postgres pool_max_conns=9 dbname=" + dbName(t, url), 57, 9},
	} {
		s, err := store.Open(ctx, tc.url, tc.ask)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.MaxConns(); got != tc.want {
			t.Errorf("Open(%q, %d).MaxConns() = %d, want %d", tc.url, tc.ask, got, tc.want)
		}
		s.Close()
	}
}

func dbName(t *testing.T, url string) string {
	t.Helper()
	i := strings.LastIndex(url, "/")
	name, _, _ := strings.Cut(url[i+1:], "?")
	return name
}

func TestPeersAreTheRequestsHoldingDocumentsOnABucket(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	create := func(n int, dst string) provision.Replication {
		sp := spec(n)
		sp.Destination.Bucket = dst
		r, _, err := s.Create(ctx, provision.NewReplication{Spec: sp, RequestedBy: "t"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	removed := create(1, "dst-a")
	running := create(2, "dst-a")
	other := create(3, "dst-b")
	cancelled := create(4, "dst-a")
	if _, err := s.Cancel(ctx, cancelled.ID, "t"); err != nil {
		t.Fatal(err)
	}
	// Claim removed, running and other (all three runnable).
	claimed := map[string]provision.Claim{}
	for len(claimed) < 3 {
		c, ok, err := s.Claim(ctx, "w", time.Minute)
		if err != nil || !ok {
			t.Fatalf("claim: %v %v", ok, err)
		}
		claimed[c.Replication.ID] = c
	}
	c := claimed[removed.ID]
	if err := s.Finish(ctx, &c, provision.ActionComplete, "done"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deprovision(ctx, removed.ID, "t"); err != nil {
		t.Fatal(err)
	}
	peers, err := s.Peers(ctx, provision.PeerFilter{DestinationBucket: "dst-a"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range peers {
		got = append(got, p.ID)
	}
	// The one deprovisioning has given its grants up; the cancelled one may
	// still hold some.
	if diff := cmp.Diff([]string{running.ID, cancelled.ID}, got); diff != "" {
		t.Errorf("peers into dst-a (-want +got):\n%s", diff)
	}
	peers, err = s.Peers(ctx, provision.PeerFilter{SourceBucket: other.Source.Bucket})
	if err != nil || len(peers) != 1 || peers[0].ID != other.ID {
		t.Errorf("peers from %s = %v, %v", other.Source.Bucket, peers, err)
	}
	// With Leaving, the one being deprovisioned is among them too.
	peers, err = s.Peers(ctx, provision.PeerFilter{DestinationBucket: "dst-a", Leaving: true})
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, p := range peers {
		got = append(got, p.ID)
	}
	if diff := cmp.Diff([]string{removed.ID, running.ID, cancelled.ID}, got); diff != "" {
		t.Errorf("peers into dst-a, leaving ones too (-want +got):\n%s", diff)
	}
}

// TestStepWarningsReplaceTheirOwnAndKeepOthers: the warnings a step reports
// are shown with the request, each naming its phase and step; a step that
// ends again replaces its own warnings and no one else's, even when many
// steps end at once; and the request's options come back as stored.
func TestStepWarningsReplaceTheirOwnAndKeepOthers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	sp := spec(1)
	sp.SetSourceDefaultEncryption = true
	r, _, err := s.Create(ctx, provision.NewReplication{Spec: sp, RequestedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.SetSourceDefaultEncryption || r.Warnings == nil || len(r.Warnings) != 0 {
		t.Fatalf("created request: set_source_default_encryption %v, warnings %#v; want true and an empty list", r.SetSourceDefaultEncryption, r.Warnings)
	}
	c, ok, err := s.Claim(ctx, "w", time.Minute)
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	finish := func(step string, ws ...provision.Warning) {
		t.Helper()
		if err := s.StartSteps(ctx, &c, step); err != nil {
			t.Fatal(err)
		}
		for i := range ws {
			ws[i].Phase, ws[i].Step = provision.PhaseProvision, step
		}
		rec := provision.StepRecord{Phase: provision.PhaseProvision, Name: step, Status: provision.StepSucceeded, Warnings: ws}
		if _, err := s.FinishStep(ctx, &c, rec, provision.Facts{}); err != nil {
			t.Fatal(err)
		}
	}
	w := func(code string) provision.Warning { return provision.Warning{Code: code, Message: code + " found"} }
	finish(provision.StepInspectSource, w("a"), w("b"))
	finish(provision.StepPutReplicationRule, w("c"))
	finish(provision.StepInspectSource, w("d"))
	finish(provision.StepEnableVersioningSource)
	got, err := s.Get(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []provision.Warning{
		{Phase: provision.PhaseProvision, Step: provision.StepPutReplicationRule, Code: "c", Message: "c found"},
		{Phase: provision.PhaseProvision, Step: provision.StepInspectSource, Code: "d", Message: "d found"},
	}
	if diff := cmp.Diff(want, got.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}

	// Many steps ending at once each add theirs.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			step := fmt.Sprintf("step-%d", i)
			if err := s.StartSteps(ctx, &c, step); err != nil {
				t.Error(err)
				return
			}
			rec := provision.StepRecord{Phase: provision.PhaseProvision, Name: step, Status: provision.StepSucceeded,
				Warnings: []provision.Warning{{Phase: provision.PhaseProvision, Step: step, Code: "x", Message: step}}}
			if _, err := s.FinishStep(ctx, &c, rec, provision.Facts{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err = s.Get(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Warnings) != len(want)+8 {
		t.Errorf("after 8 steps ended at once there are %d warnings, want %d: %+v", len(got.Warnings), len(want)+8, got.Warnings)
	}
}

// TestStepsComeInTheOrderOfTheirTable: steps of one group start at once,
// in any order; they are listed in the order of the step table, so that
// the same request always reads the same.
func TestStepsComeInTheOrderOfTheirTable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := storetest.New(t)
	r, _, err := s.Create(ctx, provision.NewReplication{Spec: spec(1), RequestedBy: "t"})
	if err != nil {
		t.Fatal(err)
	}
	c, ok, err := s.Claim(ctx, "w", time.Minute)
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	// Started against the table's order.
	started := []string{provision.StepInspectDestination, provision.StepResolveAccounts, provision.StepInspectSource}
	for _, name := range started {
		if err := s.StartSteps(ctx, &c, name); err != nil {
			t.Fatal(err)
		}
	}
	steps, err := s.Steps(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range steps {
		got = append(got, st.Name)
	}
	want := []string{provision.StepResolveAccounts, provision.StepInspectSource, provision.StepInspectDestination}
	if !slices.Equal(got, want) {
		t.Errorf("steps listed %v, want the table's order %v", got, want)
	}
}
