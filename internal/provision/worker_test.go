package provision_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// These tests drive the pool with step tables of their own over real
// Postgres: they are about leases, retries and recording, not AWS.

// nullSessions opens accounts that steps of these tests never call.
type nullSessions struct{}

func (nullSessions) Account(_ context.Context, id, _ string) (*provision.Account, error) {
	return &provision.Account{ID: id}, nil
}

// counter counts step runs by name.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) inc(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[name]++
	return c.n[name]
}

func (c *counter) get(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name]
}

func ok(name string, runs *counter) provision.StepFunc {
	return func(context.Context, *provision.Run) (provision.Result, error) {
		runs.inc(name)
		return provision.Result{Changed: true, After: map[string]string{"step": name}}, nil
	}
}

func table(steps ...provision.StepDef) map[provision.Phase][]provision.StepDef {
	return map[provision.Phase][]provision.StepDef{
		provision.PhaseProvision:   steps,
		provision.PhaseDeprovision: {{Name: "undo", Group: 1, Run: func(context.Context, *provision.Run) (provision.Result, error) { return provision.Result{}, nil }}},
	}
}

func spec(n int) provision.Spec {
	return provision.Spec{
		Source: provision.Side{AccountID: "111111111111", Region: "us-east-1", Bucket: fmt.Sprintf("src-%d", n),
			KMSKeyARN: "arn:aws:kms:us-east-1:111111111111:key/11111111-1111-4111-8111-111111111111"},
		Destination: provision.Side{AccountID: "222222222222", Region: "us-west-2", Bucket: "dst",
			KMSKeyARN: "arn:aws:kms:us-west-2:222222222222:key/22222222-2222-4222-8222-222222222222"},
		Rule: provision.Rule{StorageClass: "STANDARD"},
	}
}

func create(t *testing.T, st *store.Store, n int) provision.Replication {
	t.Helper()
	r, _, err := st.Create(context.Background(), provision.NewReplication{Spec: spec(n), RequestedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// startPool runs a pool until the test ends (or stop is called) and
// returns the stop function, which waits for the pool to return.
func startPool(t *testing.T, cfg provision.PoolConfig) (stop func()) {
	t.Helper()
	if cfg.Sessions == nil {
		cfg.Sessions = nullSessions{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	if cfg.Poll == 0 {
		cfg.Poll = 20 * time.Millisecond
	}
	if cfg.Workers == 0 {
		cfg.Workers = provision.DefaultWorkers
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 20 * time.Millisecond
	}
	p, err := provision.NewPool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// waitState waits until the request reaches want, failing the test after
// a deadline.
func waitState(t *testing.T, st *store.Store, id string, want provision.State) provision.Replication {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := st.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.State == want {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("replication %s is %s (last error %s), want %s", id, r.State, r.LastError, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func stepStatuses(t *testing.T, st *store.Store, id string) map[string]string {
	t.Helper()
	steps, err := st.Steps(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range steps {
		out[string(s.Phase)+"/"+s.Name] = string(s.Status)
	}
	return out
}

func TestPoolRunsGroupsInOrderAndRecordsEveryStep(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	var runs counter
	var order []string
	var mu sync.Mutex
	track := func(name string) provision.StepFunc {
		return func(ctx context.Context, r *provision.Run) (provision.Result, error) {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			r.Learn(func(f *provision.Facts) {
				if name == "b1" {
					f.RoleName = "learned-by-b1"
				}
			})
			return ok(name, &runs)(ctx, r)
		}
	}
	var sawFact atomic.Bool
	steps := table(
		provision.StepDef{Name: "a", Group: 1, Run: track("a")},
		provision.StepDef{Name: "b1", Group: 2, Run: track("b1")},
		provision.StepDef{Name: "b2", Group: 2, Run: track("b2")},
		provision.StepDef{Name: "c", Group: 3, Run: func(ctx context.Context, r *provision.Run) (provision.Result, error) {
			sawFact.Store(r.Facts().RoleName == "learned-by-b1")
			return provision.Result{Skipped: true}, nil
		}},
	)
	r := create(t, st, 1)
	startPool(t, provision.PoolConfig{Store: st, Steps: steps, Workers: 2})
	done := waitState(t, st, r.ID, provision.StateSucceeded)
	if done.FinishedAt == nil || done.LastError != nil {
		t.Errorf("succeeded request: finished %v, last error %s", done.FinishedAt, done.LastError)
	}
	want := map[string]string{"provision/a": "succeeded", "provision/b1": "succeeded", "provision/b2": "succeeded", "provision/c": "skipped"}
	if diff := cmp.Diff(want, stepStatuses(t, st, r.ID)); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	if order[0] != "a" || len(order) != 3 {
		t.Errorf("order %v: a must run first, then b1 and b2", order)
	}
	if !sawFact.Load() {
		t.Error("a later step did not see what an earlier step learned")
	}
	events, _ := st.Events(context.Background(), r.ID, 0)
	var states []provision.State
	for _, e := range events {
		if e.Type == "state" {
			states = append(states, e.State)
		}
	}
	if diff := cmp.Diff([]provision.State{provision.StatePending, provision.StateRunning, provision.StateSucceeded}, states); diff != "" {
		t.Errorf("state timeline (-want +got):\n%s", diff)
	}
}

func TestPoolRetriesThenSucceedsWithoutRepeatingSucceededSteps(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	var runs counter
	steps := table(
		provision.StepDef{Name: "first", Group: 1, Run: ok("first", &runs)},
		provision.StepDef{Name: "flaky", Group: 2, Run: func(context.Context, *provision.Run) (provision.Result, error) {
			switch runs.inc("flaky") {
			case 1:
				return provision.Result{}, errors.New("ThrottlingException: Rate exceeded")
			case 2:
				return provision.Result{}, provision.Retry(5*time.Millisecond, errors.New("role not visible yet"))
			}
			return provision.Result{}, nil
		}},
	)
	r := create(t, st, 1)
	startPool(t, provision.PoolConfig{Store: st, Steps: steps})
	done := waitState(t, st, r.ID, provision.StateSucceeded)
	if runs.get("first") != 1 || runs.get("flaky") != 3 {
		t.Errorf("runs: first %d (want 1), flaky %d (want 3)", runs.get("first"), runs.get("flaky"))
	}
	if done.Attempt != 0 {
		t.Errorf("attempt = %d after the step succeeded, want 0", done.Attempt)
	}
	steps2, _ := st.Steps(context.Background(), r.ID)
	for _, s := range steps2 {
		if s.Name == "flaky" && s.Attempts != 3 {
			t.Errorf("flaky step records %d attempts, want 3", s.Attempts)
		}
	}
}

func TestPermanentFailureThenRetryResumesAtTheFailedStep(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	var runs counter
	var fixed atomic.Bool
	steps := table(
		provision.StepDef{Name: "first", Group: 1, Run: ok("first", &runs)},
		provision.StepDef{Name: "check", Group: 2, Run: func(context.Context, *provision.Run) (provision.Result, error) {
			runs.inc("check")
			if !fixed.Load() {
				return provision.Result{}, provision.Permanent("bucket demo-unversioned has versioning off; enable it or resubmit with enable_versioning: true", errors.New("versioning Suspended"))
			}
			return provision.Result{}, nil
		}},
	)
	r := create(t, st, 1)
	startPool(t, provision.PoolConfig{Store: st, Steps: steps})
	failed := waitState(t, st, r.ID, provision.StateFailed)
	var problem struct {
		Detail, Step string
		Retryable    bool
	}
	if err := json.Unmarshal(failed.LastError, &problem); err != nil {
		t.Fatalf("last_error %s: %v", failed.LastError, err)
	}
	if problem.Step != "check" || problem.Retryable || problem.Detail == "" || failed.FinishedAt == nil {
		t.Errorf("last_error = %s, finished %v", failed.LastError, failed.FinishedAt)
	}
	fixed.Store(true)
	if _, err := st.Retry(context.Background(), r.ID, "test"); err != nil {
		t.Fatal(err)
	}
	waitState(t, st, r.ID, provision.StateSucceeded)
	if runs.get("first") != 1 || runs.get("check") != 2 {
		t.Errorf("runs: first %d (want 1), check %d (want 2)", runs.get("first"), runs.get("check"))
	}
}

func TestRequestDeadlineTurnsRetriesIntoAFailure(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	steps := table(provision.StepDef{Name: "never", Group: 1, Run: func(context.Context, *provision.Run) (provision.Result, error) {
		return provision.Result{}, errors.New("SlowDown: please reduce your request rate")
	}})
	r := create(t, st, 1)
	startPool(t, provision.PoolConfig{Store: st, Steps: steps, RequestDeadline: 100 * time.Millisecond})
	failed := waitState(t, st, r.ID, provision.StateFailed)
	var problem struct{ Detail, Cause string }
	json.Unmarshal(failed.LastError, &problem)
	if problem.Cause != "SlowDown: please reduce your request rate" || problem.Detail == "" {
		t.Errorf("last_error = %s", failed.LastError)
	}
}

func TestCancelStopsARunningRequestAfterItsCurrentStep(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	var runs counter
	r := create(t, st, 1)
	steps := table(
		provision.StepDef{Name: "slow", Group: 1, Run: func(ctx context.Context, _ *provision.Run) (provision.Result, error) {
			runs.inc("slow")
			if _, err := st.Cancel(ctx, r.ID, "test"); err != nil {
				return provision.Result{}, err
			}
			return provision.Result{}, nil
		}},
		provision.StepDef{Name: "after", Group: 2, Run: ok("after", &runs)},
	)
	startPool(t, provision.PoolConfig{Store: st, Steps: steps, Lease: 300 * time.Millisecond})
	waitState(t, st, r.ID, provision.StateCancelled)
	if runs.get("slow") != 1 || runs.get("after") != 0 {
		t.Errorf("runs: slow %d (want 1), after %d (want 0)", runs.get("slow"), runs.get("after"))
	}
	if rec, ok := stepRecords(t, st, r.ID, provision.PhaseProvision)["after"]; ok {
		t.Errorf("the step after the cancel is recorded as %s (%d attempts), though it never started", rec.Status, rec.Attempts)
	}
}

// shutdownStore begins the pool's shutdown (cancel) right after the
// record of step after is written, as a SIGTERM arriving then would.
type shutdownStore struct {
	*store.Store
	after  string
	cancel context.CancelFunc
}

func (s *shutdownStore) FinishStep(ctx context.Context, c *provision.Claim, rec provision.StepRecord, f provision.Facts) (bool, error) {
	asked, err := s.Store.FinishStep(ctx, c, rec, f)
	if rec.Name == s.after {
		s.cancel()
	}
	return asked, err
}

// TestAShutdownBetweenGroupsRunsEachStepOnce: a shutdown that begins while
// a group's last step ends, before its record is written or right after,
// leaves every step of the next group either started and run to its end
// or not started at all. The request, resumed by another pool, runs each
// step once, with one attempt recorded.
func TestAShutdownBetweenGroupsRunsEachStepOnce(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		// afterRecord begins the shutdown once first's record is written;
		// otherwise first waits for the shutdown before it ends.
		afterRecord bool
	}{{"shutdown before the last record of the group", false}, {"shutdown right after it", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := storetest.New(t)
			r := create(t, st, 1)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var runs counter
			first := ok("first", &runs)
			if !tt.afterRecord {
				first = func(c context.Context, run *provision.Run) (provision.Result, error) {
					cancel()
					return ok("first", &runs)(c, run)
				}
			}
			steps := table(
				provision.StepDef{Name: "first", Group: 1, Run: first},
				provision.StepDef{Name: "second", Group: 2, Run: ok("second", &runs)},
				provision.StepDef{Name: "third", Group: 3, Run: ok("third", &runs)},
			)
			ws := provision.WorkStore(st)
			if tt.afterRecord {
				ws = &shutdownStore{Store: st, after: "first", cancel: cancel}
			}
			p, err := provision.NewPool(provision.PoolConfig{Store: ws, Steps: steps, Sessions: nullSessions{}, Workers: 1,
				Poll: 20 * time.Millisecond, Lease: time.Minute, ShutdownGrace: 10 * time.Second,
				Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
			if err != nil {
				t.Fatal(err)
			}
			p.Run(ctx) // returns once the shutdown is complete
			// The shutdown stops the request at the next group boundary: past
			// first, or past second when second's start was already recorded.
			want := 0
			if tt.afterRecord {
				want = 1
			}
			if runs.get("second") != want || runs.get("third") != 0 {
				t.Errorf("before the shutdown ended, second ran %d time(s) (want %d) and third %d (want 0)", runs.get("second"), want, runs.get("third"))
			}

			startPool(t, provision.PoolConfig{Store: st, Steps: steps})
			waitState(t, st, r.ID, provision.StateSucceeded)
			for name, rec := range stepRecords(t, st, r.ID, provision.PhaseProvision) {
				if n := runs.get(name); n != 1 || rec.Attempts != 1 || rec.Status != "succeeded" {
					t.Errorf("%s ran %d time(s), recorded %s with %d attempt(s); want once, succeeded, 1", name, n, rec.Status, rec.Attempts)
				}
			}
		})
	}
}

// deadStore stands for a worker process that was killed: once dead, none
// of its writes reach the database.
type deadStore struct {
	*store.Store
	dead atomic.Bool
}

var errDead = errors.New("process killed")

func (d *deadStore) check() error {
	if d.dead.Load() {
		return errDead
	}
	return nil
}

func (d *deadStore) Claim(ctx context.Context, owner string, lease time.Duration) (provision.Claim, bool, error) {
	if err := d.check(); err != nil {
		return provision.Claim{}, false, err
	}
	return d.Store.Claim(ctx, owner, lease)
}

func (d *deadStore) Extend(ctx context.Context, c *provision.Claim, lease time.Duration) (bool, error) {
	if err := d.check(); err != nil {
		return false, err
	}
	return d.Store.Extend(ctx, c, lease)
}

func (d *deadStore) StartSteps(ctx context.Context, c *provision.Claim, names ...string) error {
	if err := d.check(); err != nil {
		return err
	}
	return d.Store.StartSteps(ctx, c, names...)
}

func (d *deadStore) FinishStep(ctx context.Context, c *provision.Claim, rec provision.StepRecord, f provision.Facts) (bool, error) {
	if err := d.check(); err != nil {
		return false, err
	}
	return d.Store.FinishStep(ctx, c, rec, f)
}

func (d *deadStore) Fail(ctx context.Context, c *provision.Claim, f provision.Failure) error {
	if err := d.check(); err != nil {
		return err
	}
	return d.Store.Fail(ctx, c, f)
}

func (d *deadStore) Finish(ctx context.Context, c *provision.Claim, a provision.Action, m string) error {
	if err := d.check(); err != nil {
		return err
	}
	return d.Store.Finish(ctx, c, a, m)
}

func (d *deadStore) Release(ctx context.Context, c *provision.Claim) error {
	if err := d.check(); err != nil {
		return err
	}
	return d.Store.Release(ctx, c)
}

// hungStore answers no lease renewal: its database accepts the call and
// never replies.
type hungStore struct{ *store.Store }

func (hungStore) Extend(ctx context.Context, _ *provision.Claim, _ time.Duration) (bool, error) {
	<-ctx.Done()
	return false, ctx.Err()
}

// TestAWorkerWhoseHeartbeatHangsStopsItsStep: when the renewal of a lease
// hangs, the worker must still stop acting on the request before the lease
// runs out, since another worker may then claim it.
func TestAWorkerWhoseHeartbeatHangsStopsItsStep(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	const lease = 600 * time.Millisecond
	stopped := make(chan struct{})
	steps := table(provision.StepDef{Name: "long", Group: 1, Run: func(ctx context.Context, r *provision.Run) (provision.Result, error) {
		<-ctx.Done()
		close(stopped)
		return provision.Result{}, ctx.Err()
	}})
	create(t, st, 1)
	startPool(t, provision.PoolConfig{Store: hungStore{st}, Steps: steps, Workers: 1, Lease: lease})
	select {
	case <-stopped:
	case <-time.After(5 * lease):
		t.Fatal("the step still runs long after the lease it could not renew ran out")
	}
}

func TestAKilledWorkersRequestIsResumedByAnotherFromItsFirstUnfinishedStep(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	var runs counter
	inStep := make(chan struct{})
	unblock := make(chan struct{})
	var victim deadStore
	victim.Store = st
	steps := table(
		provision.StepDef{Name: "one", Group: 1, Run: ok("one", &runs)},
		provision.StepDef{Name: "two", Group: 2, Run: func(ctx context.Context, r *provision.Run) (provision.Result, error) {
			if runs.inc("two") == 1 {
				close(inStep)
				<-unblock // the killed process never gets further
			}
			return provision.Result{Changed: true}, nil
		}},
		provision.StepDef{Name: "three", Group: 3, Run: ok("three", &runs)},
	)
	r := create(t, st, 1)
	startPool(t, provision.PoolConfig{Store: &victim, Steps: steps, Workers: 1, Lease: 300 * time.Millisecond, Owner: "victim"})
	<-inStep
	victim.dead.Store(true) // kill -9: no heartbeat, no more writes

	startPool(t, provision.PoolConfig{Store: st, Steps: steps, Workers: 1, Lease: 300 * time.Millisecond, Owner: "rescuer"})
	waitState(t, st, r.ID, provision.StateSucceeded)
	close(unblock)
	if got := []int{runs.get("one"), runs.get("two"), runs.get("three")}; !cmp.Equal(got, []int{1, 2, 1}) {
		t.Errorf("runs of one, two, three = %v, want [1 2 1]", got)
	}
	events, _ := st.Events(context.Background(), r.ID, 0)
	resumed := false
	for _, e := range events {
		resumed = resumed || e.Type == "lease"
	}
	if !resumed {
		t.Error("the timeline does not say the request was resumed after a lost lease")
	}
}

func TestALateWriteFromAWorkerThatLostItsLeaseIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := storetest.New(t)
	r := create(t, st, 1)
	a, ok, err := st.Claim(ctx, "a", time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("claim a: %v %v", ok, err)
	}
	time.Sleep(5 * time.Millisecond) // let a's one-millisecond lease expire
	b, ok, err := st.Claim(ctx, "b", time.Minute)
	if err != nil || !ok || b.Replication.ID != r.ID {
		t.Fatalf("claim b: %v %v", ok, err)
	}
	if err := st.StartSteps(ctx, &a, "x"); !errors.Is(err, provision.ErrLeaseLost) {
		t.Errorf("late StartStep = %v", err)
	}
	if err := st.Finish(ctx, &a, provision.ActionComplete, "late"); !errors.Is(err, provision.ErrLeaseLost) {
		t.Errorf("late Finish = %v", err)
	}
	if _, err := st.Extend(ctx, &a, time.Minute); !errors.Is(err, provision.ErrLeaseLost) {
		t.Errorf("late Extend = %v", err)
	}
	if got, _ := st.Get(ctx, r.ID); got.State != provision.StateRunning {
		t.Errorf("state = %s after refused writes", got.State)
	}
}

func TestTwoPoolsOnOneDatabaseNeverRunARequestTwiceAtOnce(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	var (
		mu      sync.Mutex
		running = map[string]bool{}
		overlap atomic.Int32
		runs    counter
	)
	step := func(ctx context.Context, r *provision.Run) (provision.Result, error) {
		mu.Lock()
		if running[r.Replication.ID] {
			overlap.Add(1)
		}
		running[r.Replication.ID] = true
		mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		running[r.Replication.ID] = false
		mu.Unlock()
		runs.inc(r.Replication.ID)
		return provision.Result{}, nil
	}
	steps := table(
		provision.StepDef{Name: "s1", Group: 1, Run: step},
		provision.StepDef{Name: "s2", Group: 2, Run: step},
	)
	const n = 30
	var ids []string
	for i := range n {
		ids = append(ids, create(t, st, i).ID)
	}
	startPool(t, provision.PoolConfig{Store: st, Steps: steps, Workers: 4, Owner: "replica-1"})
	startPool(t, provision.PoolConfig{Store: st, Steps: steps, Workers: 4, Owner: "replica-2"})
	for _, id := range ids {
		waitState(t, st, id, provision.StateSucceeded)
		if got := runs.get(id); got != 2 {
			t.Errorf("request %s ran %d steps, want 2", id, got)
		}
	}
	if overlap.Load() != 0 {
		t.Errorf("%d times a request ran on two workers at once", overlap.Load())
	}
}

func TestShutdownLetsTheRunningStepFinishAndReleasesTheLease(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	var runs counter
	inStep := make(chan struct{})
	proceed := make(chan struct{})
	steps := table(
		provision.StepDef{Name: "long", Group: 1, Run: func(ctx context.Context, _ *provision.Run) (provision.Result, error) {
			if runs.inc("long") == 1 {
				close(inStep)
				<-proceed
			}
			return provision.Result{}, ctx.Err()
		}},
		provision.StepDef{Name: "next", Group: 2, Run: ok("next", &runs)},
	)
	r := create(t, st, 1)
	stop := startPool(t, provision.PoolConfig{Store: st, Steps: steps, Workers: 1, ShutdownGrace: 10 * time.Second})
	<-inStep
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	time.Sleep(20 * time.Millisecond) // shutdown has begun while the step runs
	close(proceed)
	<-stopped
	got, _ := st.Get(context.Background(), r.ID)
	if got.State != provision.StateRunning || got.LastError != nil {
		t.Fatalf("after shutdown: %s, last error %s", got.State, got.LastError)
	}
	if s := stepStatuses(t, st, r.ID); s["provision/long"] != "succeeded" || s["provision/next"] != "" {
		t.Fatalf("after shutdown steps = %v: long must be recorded, next not started", s)
	}
	// The lease is released: another replica picks it up at once.
	startPool(t, provision.PoolConfig{Store: st, Steps: steps, Workers: 1, Lease: time.Hour})
	waitState(t, st, r.ID, provision.StateSucceeded)
	if runs.get("long") != 1 || runs.get("next") != 1 {
		t.Errorf("runs: long %d, next %d; want 1 and 1", runs.get("long"), runs.get("next"))
	}
}

// claimDuringShutdown is a store whose first claim commits just as the
// pool begins to shut down (a SIGTERM during the claim's commit): it holds
// the claim until the test says shutdown has begun, then answers as the
// database driver would, with the context's error if that ended meanwhile.
type claimDuringShutdown struct {
	*store.Store
	once             sync.Once
	claimed, resumed chan struct{}
}

func (s *claimDuringShutdown) Claim(ctx context.Context, owner string, lease time.Duration) (provision.Claim, bool, error) {
	c, ok, err := s.Store.Claim(ctx, owner, lease)
	if ok {
		s.once.Do(func() {
			close(s.claimed)
			<-s.resumed
		})
	}
	if err == nil && ctx.Err() != nil {
		return provision.Claim{}, false, ctx.Err() // committed, but unseen
	}
	return c, ok, err
}

// TestARequestClaimedDuringShutdownIsReleased: a claim that lands while
// the pool shuts down is released like any running request, so another
// replica resumes the request at once rather than when the lease expires.
func TestARequestClaimedDuringShutdownIsReleased(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	var runs counter
	steps := table(provision.StepDef{Name: "only", Group: 1, Run: ok("only", &runs)})
	r := create(t, st, 1)
	ws := &claimDuringShutdown{Store: st, claimed: make(chan struct{}), resumed: make(chan struct{})}
	stop := startPool(t, provision.PoolConfig{Store: ws, Steps: steps, Workers: 1, Lease: time.Hour})
	<-ws.claimed
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	time.Sleep(20 * time.Millisecond) // the pool's context ends at once
	close(ws.resumed)
	<-stopped

	startPool(t, provision.PoolConfig{Store: st, Steps: steps, Workers: 1, Lease: time.Hour})
	waitState(t, st, r.ID, provision.StateSucceeded)
	if runs.get("only") != 1 {
		t.Errorf("the step ran %d times, want 1", runs.get("only"))
	}
}

func TestDeprovisionRunsTheInverseTable(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	var runs counter
	steps := map[provision.Phase][]provision.StepDef{
		provision.PhaseProvision:   {{Name: "add", Group: 1, Run: ok("add", &runs)}},
		provision.PhaseDeprovision: {{Name: "remove", Group: 1, Run: ok("remove", &runs), Undoes: "add"}},
	}
	r := create(t, st, 1)
	startPool(t, provision.PoolConfig{Store: st, Steps: steps})
	waitState(t, st, r.ID, provision.StateSucceeded)
	if _, err := st.Deprovision(context.Background(), r.ID, "test"); err != nil {
		t.Fatal(err)
	}
	done := waitState(t, st, r.ID, provision.StateDeprovisioned)
	if done.Phase != provision.PhaseDeprovision || runs.get("remove") != 1 || runs.get("add") != 1 {
		t.Errorf("phase %s, runs add %d remove %d", done.Phase, runs.get("add"), runs.get("remove"))
	}
	want := map[string]string{"provision/add": "succeeded", "deprovision/remove": "succeeded"}
	if diff := cmp.Diff(want, stepStatuses(t, st, r.ID)); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	// A second DELETE is answered with the request as it is.
	again, err := st.Deprovision(context.Background(), r.ID, "test")
	if err != nil || again.State != provision.StateDeprovisioned {
		t.Errorf("second deprovision = %s, %v", again.State, err)
	}
}

// testWriter sends the pool's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// unreachableSessions stands for accounts that cannot be reached.
type unreachableSessions struct{}

func (unreachableSessions) Account(context.Context, string, string) (*provision.Account, error) {
	return nil, provision.Permanent("AssumeRole denied", errors.New("AccessDenied"))
}

func TestDeprovisioningARequestThatWroteNothingTouchesNoAccount(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	var runs counter
	steps := map[provision.Phase][]provision.StepDef{
		provision.PhaseProvision: {
			{Name: "inspect", Group: 1, Run: func(context.Context, *provision.Run) (provision.Result, error) {
				return provision.Result{}, provision.Permanent("key not found: fix the ARN", nil)
			}},
			{Name: "write", Group: 2, Run: ok("write", &runs)},
		},
		provision.PhaseDeprovision: {
			{Name: "resolve", Group: 1, Run: ok("resolve", &runs)},
			{Name: "unwrite", Group: 2, Run: ok("unwrite", &runs), Undoes: "write"},
		},
	}
	r := create(t, st, 1)
	startPool(t, provision.PoolConfig{Store: st, Steps: steps, Sessions: unreachableSessions{}})
	waitState(t, st, r.ID, provision.StateFailed)
	if _, err := st.Deprovision(context.Background(), r.ID, "test"); err != nil {
		t.Fatal(err)
	}
	waitState(t, st, r.ID, provision.StateDeprovisioned)
	if runs.get("resolve")+runs.get("unwrite")+runs.get("write") != 0 {
		t.Errorf("steps ran: %v", runs.n)
	}
	// The accounts could not be reached, so provisioning failed before its
	// first step, and deprovisioning has nothing to do there.
	want := map[string]string{"deprovision/resolve": "skipped", "deprovision/unwrite": "skipped"}
	if diff := cmp.Diff(want, stepStatuses(t, st, r.ID)); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
}
