package provision

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"
)

// Defaults of the pool and its steps; the server's configuration starts
// from the same values.
const (
	DefaultWorkers         = 8
	DefaultLease           = 30 * time.Second
	DefaultPoll            = time.Second
	DefaultStepTimeout     = 2 * time.Minute
	DefaultRequestDeadline = time.Hour
	DefaultShutdownGrace   = 20 * time.Second
	DefaultMaxBackoff      = 5 * time.Minute
)

// PoolConfig configures the worker pool. Zero durations take the defaults.
type PoolConfig struct {
	Store    WorkStore
	Sessions Sessions
	// Steps are the step tables by phase.
	Steps map[Phase][]StepDef
	// Workers is how many requests run at once; 0 runs none (the server
	// then serves the API only).
	Workers int
	// Lease is how long a claim lasts without a heartbeat; a dead worker's
	// request is resumed by another after it.
	Lease time.Duration
	// Poll is how often idle workers look for work when no wake-up came.
	Poll time.Duration
	// RequestDeadline is how long a phase may keep retrying before the
	// request fails.
	RequestDeadline time.Duration
	// ShutdownGrace is how long running steps may finish after shutdown begins.
	ShutdownGrace time.Duration
	// MaxBackoff caps the delay between attempts of a failing step.
	MaxBackoff time.Duration
	StepConfig StepConfig
	Logger     *slog.Logger
	// Metrics, when set, counts step attempts.
	Metrics *Metrics
	// Owner names this process in leases; default host/pid/random.
	Owner string
	Now   func() time.Time
}

// Connections is how many database connections a pool of workers running
// these step tables may hold at once: every step of a group may wait for a
// document another replica holds on a connection of its own while it writes
// its record on another, and each worker renews its lease on one more.
func Connections(workers int, steps map[Phase][]StepDef) int {
	widest := 0
	for _, table := range steps {
		for _, g := range Groups(table) {
			widest = max(widest, len(g))
		}
	}
	return workers * (2*widest + 1)
}

// Pool runs requests through their step tables.
type Pool struct {
	cfg PoolConfig
	log *slog.Logger
}

// NewPool validates cfg and fills its defaults.
func NewPool(cfg PoolConfig) (*Pool, error) {
	if cfg.Store == nil || cfg.Sessions == nil {
		return nil, errors.New("provision: PoolConfig needs Store and Sessions")
	}
	if len(cfg.Steps[PhaseProvision]) == 0 || len(cfg.Steps[PhaseDeprovision]) == 0 {
		return nil, errors.New("provision: PoolConfig needs a step table for each phase")
	}
	if cfg.Workers < 0 {
		return nil, errors.New("provision: Workers must not be negative")
	}
	host, _ := os.Hostname()
	cfg.Lease = cmp.Or(cfg.Lease, DefaultLease)
	cfg.Poll = cmp.Or(cfg.Poll, DefaultPoll)
	cfg.RequestDeadline = cmp.Or(cfg.RequestDeadline, DefaultRequestDeadline)
	cfg.ShutdownGrace = cmp.Or(cfg.ShutdownGrace, DefaultShutdownGrace)
	cfg.MaxBackoff = cmp.Or(cfg.MaxBackoff, DefaultMaxBackoff)
	cfg.StepConfig = cfg.StepConfig.withDefaults()
	cfg.Owner = cmp.Or(cfg.Owner, fmt.Sprintf("%s/%d/%04x", host, os.Getpid(), rand.Uint32()&0xffff))
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Pool{cfg: cfg, log: cmp.Or(cfg.Logger, slog.Default())}, nil
}

// Run works until ctx ends, then stops claiming, lets running steps finish
// within the shutdown grace, releases its leases and returns.
func (p *Pool) Run(ctx context.Context) {
	if p.cfg.Workers == 0 {
		return
	}
	wake := p.cfg.Store.Wake(ctx)
	var wg sync.WaitGroup
	for i := range p.cfg.Workers {
		owner := fmt.Sprintf("%s#%d", p.cfg.Owner, i)
		wg.Go(func() { p.work(ctx, owner, wake) })
	}
	wg.Wait()
}

// work is one worker's claim loop.
func (p *Pool) work(ctx context.Context, owner string, wake <-chan struct{}) {
	for ctx.Err() == nil {
		// A shutdown does not cut a claim short: cancelled half-way, its
		// commit could land unseen and leave the request leased to no one
		// for a whole lease. A claim that lands during shutdown is
		// released at once by process.
		bctx, cancel := bookkeeping(ctx)
		c, ok, err := p.cfg.Store.Claim(bctx, owner, p.cfg.Lease)
		cancel()
		if err != nil && ctx.Err() == nil {
			p.log.ErrorContext(ctx, "claim failed", "error", err, "worker", owner)
		}
		if err != nil || !ok {
			select {
			case <-ctx.Done():
			case <-wake:
			case <-time.After(p.cfg.Poll):
			}
			continue
		}
		p.process(ctx, &c)
	}
}

// process runs a claimed request from its first unfinished step until its
// phase completes or fails, it must wait for a retry, it is cancelled, its
// lease is lost, or the pool shuts down.
func (p *Pool) process(ctx context.Context, c *Claim) {
	x := &execution{pool: p, claim: c, stopping: ctx, log: p.log.With("replication_id", c.Replication.ID, "phase", c.Phase, "worker", c.Owner)}
	// Steps run on a context that outlives shutdown by the grace period,
	// and ends at once when the lease is lost.
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(p.cfg.ShutdownGrace, stopRun)
		context.AfterFunc(runCtx, func() { t.Stop() })
	})
	defer stopGrace()
	x.lease = newLeaseKeeper(p.cfg.Store, c, p.cfg.Lease, p.cfg.Now, x.log, stopRun)
	// Interruptible steps stop waiting at once when a caller cancels a
	// provisioning request or the pool shuts down.
	interrupt := make(chan struct{})
	var interrupted sync.Once
	stopWaiting := func() { interrupted.Do(func() { close(interrupt) }) }
	if c.Phase == PhaseProvision {
		x.lease.onCancel = stopWaiting
	}
	defer context.AfterFunc(ctx, stopWaiting)()
	go x.lease.run(runCtx)
	defer x.lease.wait()
	defer stopRun()

	if x.lease.cancelRequested.Load() {
		x.finish(ctx, ActionCancel, "cancelled by caller before the next step")
		return
	}
	steps, skipped := p.stepsToRun(c)
	for _, def := range skipped {
		if err := x.skip(runCtx, def); err != nil {
			if !errors.Is(err, ErrLeaseLost) {
				x.log.ErrorContext(runCtx, "record skipped step", "step", def.Name, "error", err)
			}
			return
		}
	}
	if len(steps) == 0 {
		x.finish(ctx, ActionComplete, "nothing to remove: provisioning never wrote anything")
		return
	}
	x.run = NewRun(c.Replication, c.Facts)
	x.run.Config, x.run.Lock, x.run.Holders, x.run.Now, x.run.Log = p.cfg.StepConfig, p.cfg.Store.Lock, p.cfg.Store, p.cfg.Now, x.log
	x.run.interrupt, x.run.attempted = interrupt, c.Attempted
	var todos [][]StepDef
	for _, group := range Groups(steps) {
		if todo := slices.DeleteFunc(slices.Clone(group), func(d StepDef) bool { return c.Done[d.Name] }); len(todo) > 0 {
			todos = append(todos, todo)
		}
	}
	for i, todo := range todos {
		if !x.ready(ctx, runCtx, todo[0].Name) {
			return
		}
		x.group = groupRecords{left: len(todo), started: x.group.startedNext}
		if i+1 < len(todos) {
			x.group.next = todos[i+1]
		}
		x.lease.watching.Store(slices.ContainsFunc(todo, func(d StepDef) bool { return d.Interruptible }))
		outcomes := RunGroup(runCtx, x.run, todo, x)
		x.lease.watching.Store(false)
		switch {
		case x.lease.lost.Load():
			return
		case ctx.Err() != nil && !x.group.startedNext:
			// Shutting down: what finished is recorded; another worker
			// resumes the rest, including any step the grace period cut short.
			x.release(ctx)
			return
		}
		if i := slices.IndexFunc(outcomes, func(o StepOutcome) bool { return errors.Is(o.Err, ErrInterrupted) }); i >= 0 && x.lease.cancelRequested.Load() {
			x.finish(ctx, ActionCancel, "cancelled by caller during step "+outcomes[i].Def.Name)
			return
		}
		if o, failed := decisive(outcomes); failed {
			if !errors.Is(o.Err, ErrLeaseLost) {
				x.fail(ctx, o.Def.Name, o.Err)
			}
			return
		}
		for _, def := range todo {
			c.Done[def.Name] = true
			c.Replication.CurrentStep = def.Name
		}
		c.Replication.Attempt = 0 // as the store recorded with each step's success
	}
	if c.Phase == PhaseDeprovision {
		x.finish(ctx, ActionComplete, "everything bucketbridge added is removed")
		return
	}
	msg := "replication is provisioned"
	if f := x.run.Facts(); f.CanaryLatency > 0 {
		// Truncated like the verify step's latency_ms, so both say the same.
		msg += fmt.Sprintf("; the canary replicated in %s", f.CanaryLatency.Truncate(time.Millisecond))
	}
	x.finish(ctx, ActionComplete, msg)
}

// stepsToRun returns the steps of c's phase still to run, and the
// deprovisioning steps to record as skipped because what they remove was
// never written. When nothing needs removing, no step runs at all, so a
// request that failed before writing anything deprovisions even when its
// accounts cannot be reached.
func (p *Pool) stepsToRun(c *Claim) (run, skipped []StepDef) {
	all := p.cfg.Steps[c.Phase]
	if c.Phase != PhaseDeprovision {
		return all, nil
	}
	removes := false
	for _, def := range all {
		switch {
		case c.Done[def.Name]:
			run = append(run, def) // skipped again by the group loop
		case def.Undoes != "" && !c.Attempted[def.Undoes]:
			skipped = append(skipped, def)
		default:
			removes = removes || def.Undoes != ""
			run = append(run, def)
		}
	}
	if !removes {
		for _, def := range run {
			if !c.Done[def.Name] {
				skipped = append(skipped, def)
			}
		}
		return nil, skipped
	}
	return run, skipped
}

// execution is one run of a claimed request: what process needs besides
// the step tables.
type execution struct {
	pool  *Pool
	claim *Claim
	log   *slog.Logger
	lease *leaseKeeper
	run   *Run
	// stopping ends when the pool shuts down.
	stopping context.Context
	// recording serializes the writes of step records, so that the last
	// write of concurrent steps carries the facts both learned, and guards
	// group.
	recording sync.Mutex
	group     groupRecords
}

// groupRecords follows the records of the running group's steps, so that
// the last of them, when every step ended well, also records the start of
// the next group (StepRecord.Next).
type groupRecords struct {
	started bool      // the group's start was recorded with the group before
	left    int       // steps not yet recorded
	failed  bool      // a step failed
	next    []StepDef // the next group, nil after the last
	// startedNext: the next group's start is recorded. The group then runs
	// as a group whose start StartSteps recorded does: a cancel waits for
	// its end, and a shutdown for its steps within the grace period.
	startedNext bool
}

// ready prepares the next group: it honours a cancel before provisioning
// further (the last step's record read it, and the lease keeper reads it
// with every renewal) and opens the accounts' sessions before the first
// group that needs them. It reports whether the group may run; when not,
// the request has been released, finished or failed as needed. A group
// whose start is recorded already runs unless the lease is lost.
func (x *execution) ready(ctx, runCtx context.Context, next string) bool {
	if x.group.startedNext {
		return !x.lease.lost.Load()
	}
	if ctx.Err() != nil {
		x.release(ctx)
		return false
	}
	if x.lease.lost.Load() {
		return false
	}
	if x.lease.cancelRequested.Load() && x.claim.Phase == PhaseProvision {
		msg := "cancelled by caller"
		if s := x.claim.Replication.CurrentStep; s != "" {
			msg += " after step " + s
		}
		x.finish(ctx, ActionCancel, msg)
		return false
	}
	if x.run.Source != nil {
		return true
	}
	// The two accounts' sessions open at once: each may need an AssumeRole.
	r, sessions := x.claim.Replication, x.pool.cfg.Sessions
	var (
		src, dst       *Account
		srcErr, dstErr error
		wg             sync.WaitGroup
	)
	wg.Go(func() { src, srcErr = sessions.Account(runCtx, r.Source.AccountID, r.Source.Region) })
	wg.Go(func() { dst, dstErr = sessions.Account(runCtx, r.Destination.AccountID, r.Destination.Region) })
	wg.Wait()
	if err := errors.Join(srcErr, dstErr); err != nil {
		if !x.lease.lost.Load() {
			x.fail(ctx, next, fmt.Errorf("open provisioner sessions: %w", err))
		}
		return false
	}
	x.run.Source, x.run.Destination = src, dst
	return true
}

// Started implements Recorder: it records the start of the group's steps,
// unless the last record of the group before did.
func (x *execution) Started(ctx context.Context, defs []StepDef) error {
	if x.group.started {
		return nil
	}
	return x.pool.cfg.Store.StartSteps(ctx, x.claim, stepNames(defs)...)
}

func stepNames(defs []StepDef) []string {
	names := make([]string, len(defs))
	for i, def := range defs {
		names[i] = def.Name
	}
	return names
}

// Ended implements Recorder: it stores the attempt's record with the facts
// learned so far. The write outlives the run's context briefly, so that a
// step that finished during shutdown is still recorded.
func (x *execution) Ended(ctx context.Context, o StepOutcome) error {
	rec := StepRecord{Phase: x.claim.Phase, Name: o.Def.Name, Status: o.Status(), Changed: o.Result.Changed,
		Before: encodeDoc(o.Result.Before), After: encodeDoc(o.Result.After), Warnings: stepWarnings(x.claim.Phase, o)}
	if o.Err != nil {
		rec.Error = x.pool.problem(o.Def.Name, o.Err, !IsPermanent(o.Err))
	}
	x.pool.cfg.Metrics.step(x.claim.Phase, o.Def.Name, rec.Status, o.Elapsed)
	bctx, cancel := bookkeeping(ctx)
	defer cancel()
	x.recording.Lock()
	defer x.recording.Unlock()
	g := &x.group
	g.left--
	g.failed = g.failed || o.Err != nil
	if g.left == 0 && !g.failed && g.next != nil && x.stopping.Err() == nil {
		rec.Next = stepNames(g.next)
	}
	asked, err := x.pool.cfg.Store.FinishStep(bctx, x.claim, rec, x.run.Facts())
	if asked {
		x.lease.sawCancel()
	}
	g.startedNext = err == nil && rec.StartsNext(asked)
	return err
}

// skip records a step that has nothing to do.
func (x *execution) skip(ctx context.Context, def StepDef) error {
	if err := x.pool.cfg.Store.StartSteps(ctx, x.claim, def.Name); err != nil {
		return err
	}
	after := map[string]string{"reason": "nothing to remove: provisioning never started " + cmp.Or(def.Undoes, "a step that writes")}
	rec := StepRecord{Phase: x.claim.Phase, Name: def.Name, Status: StepSkipped, After: encodeDoc(after)}
	_, err := x.pool.cfg.Store.FinishStep(ctx, x.claim, rec, x.claim.Facts)
	if err == nil {
		x.claim.Done[def.Name] = true
	}
	return err
}

// finish applies action (complete or cancel) to the request.
func (x *execution) finish(ctx context.Context, action Action, message string) {
	bctx, cancel := bookkeeping(ctx)
	defer cancel()
	if err := x.pool.cfg.Store.Finish(bctx, x.claim, action, message); err != nil {
		if !errors.Is(err, ErrLeaseLost) {
			x.log.ErrorContext(bctx, "record the end of the request", "action", action, "error", err)
		}
		return
	}
	x.log.InfoContext(bctx, "request finished", "action", action)
}

// fail records a failed attempt of step: the request fails, or waits for
// its next attempt.
func (x *execution) fail(ctx context.Context, step string, err error) {
	bctx, cancel := bookkeeping(ctx)
	defer cancel()
	f := x.pool.failure(x.claim, step, err)
	if f.Permanent {
		x.log.WarnContext(bctx, "request failed", "step", step, "error", err)
	} else {
		x.log.InfoContext(bctx, "step will be retried", "step", step, "retry_at", f.RetryAt, "attempt", x.claim.Replication.Attempt+1, "error", err)
	}
	if err := x.pool.cfg.Store.Fail(bctx, x.claim, f); err != nil && !errors.Is(err, ErrLeaseLost) {
		x.log.ErrorContext(bctx, "record failure", "step", step, "error", err)
	}
}

// release gives the lease up (shutdown), so another worker resumes at once.
func (x *execution) release(ctx context.Context) {
	bctx, cancel := bookkeeping(ctx)
	defer cancel()
	if err := x.pool.cfg.Store.Release(bctx, x.claim); err != nil {
		x.log.ErrorContext(bctx, "release lease", "error", err)
	}
}

// bookkeeping is the context of the engine's own writes: they outlive the
// end of the run briefly, so a step that finished during shutdown is still
// recorded.
func bookkeeping(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// failure decides what a failed attempt means for the request.
func (p *Pool) failure(c *Claim, step string, err error) Failure {
	now := p.cfg.Now()
	var retry *RetryError
	switch {
	case IsPermanent(err):
		return Failure{Step: step, Permanent: true, Problem: p.problem(step, err, false)}
	case now.Sub(c.PhaseStartedAt) > p.cfg.RequestDeadline:
		err = Permanent(fmt.Sprintf("gave up after retrying for %s (BB_REQUEST_DEADLINE); fix the cause and POST .../retry", p.cfg.RequestDeadline), err)
		return Failure{Step: step, Permanent: true, Problem: p.problem(step, err, false)}
	case errors.As(err, &retry):
		return Failure{Step: step, RetryAt: now.Add(retry.After), Problem: p.problem(step, err, true)}
	}
	return Failure{Step: step, RetryAt: now.Add(p.backoff(c.Replication.Attempt)), Problem: p.problem(step, err, true)}
}

// backoff is exponential from one second, capped at MaxBackoff, with jitter
// so that requests failing together do not retry together.
func (p *Pool) backoff(attempt int) time.Duration {
	d := p.cfg.MaxBackoff
	if attempt < 20 {
		d = min(time.Second<<attempt, p.cfg.MaxBackoff)
	}
	return d/2 + rand.N(d/2+1)
}

// problem renders a step error as the RFC 9457 object stored in last_error
// and in the step's record.
func (p *Pool) problem(step string, err error, retryable bool) json.RawMessage {
	pr := struct {
		Type      string `json:"type"`
		Title     string `json:"title"`
		Status    int    `json:"status"`
		Detail    string `json:"detail"`
		Step      string `json:"step"`
		Retryable bool   `json:"retryable"`
		Cause     string `json:"cause,omitempty"`
	}{Step: step, Retryable: retryable}
	var perm *PermanentError
	if errors.As(err, &perm) {
		pr.Type, pr.Title, pr.Status = "urn:bucketbridge:problem:step-failed", "Step failed", 422
		pr.Detail = perm.Detail
		if perm.Err != nil {
			pr.Cause = perm.Err.Error()
		}
	} else {
		pr.Type, pr.Title, pr.Status = "urn:bucketbridge:problem:step-retrying", "Step will be retried", 503
		pr.Detail = err.Error()
	}
	b, _ := json.Marshal(pr)
	return b
}

// stepWarnings are o's warnings, each naming the phase and the step.
func stepWarnings(phase Phase, o StepOutcome) []Warning {
	out := make([]Warning, len(o.Result.Warnings))
	for i, w := range o.Result.Warnings {
		w.Phase, w.Step = phase, o.Def.Name
		out[i] = w
	}
	return out
}

func encodeDoc(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"unencodable": err.Error()})
	}
	return b
}
