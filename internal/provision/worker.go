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
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// PoolConfig configures the worker pool.
type PoolConfig struct {
	Store    WorkStore
	Sessions Sessions
	// Steps are the step tables by phase.
	Steps map[Phase][]StepDef
	// Workers is how many requests run at once (BB_WORKERS, default 8).
	Workers int
	// Lease is how long a claim lasts without a heartbeat (BB_LEASE, 30s);
	// a dead worker's request is resumed by another after it.
	Lease time.Duration
	// Poll is how often idle workers look for work when no NOTIFY came (1s).
	Poll time.Duration
	// StepTimeout bounds one attempt of one step (BB_STEP_TIMEOUT, 2m);
	// verify gets StepConfig.VerifyTimeout on top.
	StepTimeout time.Duration
	// RequestDeadline is how long a phase may keep retrying before the
	// request fails (BB_REQUEST_DEADLINE, 1h).
	RequestDeadline time.Duration
	// ShutdownGrace is how long running steps may finish after shutdown begins.
	ShutdownGrace time.Duration
	// MaxBackoff caps the delay between attempts of a failing step (5m).
	MaxBackoff time.Duration
	StepConfig StepConfig
	Logger     *slog.Logger
	// Metrics, when set, counts steps and finished requests.
	Metrics *Metrics
	// Owner names this process in leases; default host/pid/random.
	Owner string
	Now   func() time.Time
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
	cfg.Workers = cmp.Or(cfg.Workers, 8)
	cfg.Lease = cmp.Or(cfg.Lease, 30*time.Second)
	cfg.Poll = cmp.Or(cfg.Poll, time.Second)
	cfg.StepTimeout = cmp.Or(cfg.StepTimeout, 2*time.Minute)
	cfg.RequestDeadline = cmp.Or(cfg.RequestDeadline, time.Hour)
	cfg.ShutdownGrace = cmp.Or(cfg.ShutdownGrace, 20*time.Second)
	cfg.MaxBackoff = cmp.Or(cfg.MaxBackoff, 5*time.Minute)
	cfg.StepConfig.VerifyTimeout = cmp.Or(cfg.StepConfig.VerifyTimeout, DefaultVerifyTimeout)
	cfg.Owner = cmp.Or(cfg.Owner, fmt.Sprintf("%s/%d/%04x", host, os.Getpid(), rand.Uint32()&0xffff))
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Pool{cfg: cfg, log: cmp.Or(cfg.Logger, slog.Default())}, nil
}

// Run works until ctx ends, then stops claiming, lets running steps finish
// within the shutdown grace, releases its leases and returns.
func (p *Pool) Run(ctx context.Context) {
	wake := p.cfg.Store.Wake(ctx)
	var wg sync.WaitGroup
	for i := range p.cfg.Workers {
		owner := fmt.Sprintf("%s#%d", p.cfg.Owner, i)
		wg.Go(func() { p.work(ctx, owner, wake) })
	}
	wg.Wait()
}

func (p *Pool) work(ctx context.Context, owner string, wake <-chan struct{}) {
	for ctx.Err() == nil {
		c, ok, err := p.cfg.Store.Claim(ctx, owner, p.cfg.Lease)
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

// process runs a claimed request from its first unfinished step until it
// finishes, fails, must wait for a retry, is cancelled, loses its lease, or
// the pool shuts down.
func (p *Pool) process(ctx context.Context, c *Claim) {
	log := p.log.With("replication_id", c.Replication.ID, "phase", c.Phase, "worker", c.Owner)

	// Steps run on a context that outlives shutdown by the grace period,
	// and ends at once when the lease is lost.
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(p.cfg.ShutdownGrace, cancelRun)
		context.AfterFunc(runCtx, func() { t.Stop() })
	})
	defer stopGrace()

	var lost, cancelRequested atomic.Bool
	cancelRequested.Store(c.CancelRequested)
	heartbeatDone := make(chan struct{})
	defer func() { <-heartbeatDone }()
	defer cancelRun()
	go func() {
		defer close(heartbeatDone)
		t := time.NewTicker(p.cfg.Lease / 3)
		defer t.Stop()
		renewed := time.Now()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
			}
			cancel, err := p.cfg.Store.Extend(runCtx, c, p.cfg.Lease)
			switch {
			case errors.Is(err, ErrLeaseLost):
				log.WarnContext(runCtx, "lease lost; stopping without writing")
				lost.Store(true)
				cancelRun()
				return
			case err != nil && time.Since(renewed) > p.cfg.Lease*9/10:
				// Another worker may claim the request any moment now: stop
				// acting on AWS rather than risk running it twice.
				log.WarnContext(runCtx, "cannot renew the lease before it expires; stopping", "error", err)
				lost.Store(true)
				cancelRun()
				return
			case err != nil:
				log.WarnContext(runCtx, "lease heartbeat failed", "error", err)
			default:
				renewed = time.Now()
				if cancel {
					cancelRequested.Store(true)
				}
			}
		}
	}()

	// bookkeeping writes survive the end of runCtx briefly, so a step that
	// finished during shutdown is still recorded.
	bookkeeping := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	}
	fail := func(step string, err error) {
		bctx, cancel := bookkeeping()
		defer cancel()
		f := p.failure(c, step, err)
		if f.Permanent {
			log.WarnContext(bctx, "request failed", "step", step, "error", err)
		} else {
			log.InfoContext(bctx, "step will be retried", "step", step, "retry_at", f.RetryAt, "attempt", c.Replication.Attempt+1, "error", err)
		}
		if err := p.cfg.Store.Fail(bctx, c, f); err != nil && !errors.Is(err, ErrLeaseLost) {
			log.ErrorContext(bctx, "record failure", "error", err)
		} else if err == nil && f.Permanent {
			p.cfg.Metrics.finish(StateFailed)
		}
	}
	finish := func(state State, message string) {
		bctx, cancel := bookkeeping()
		defer cancel()
		if err := p.cfg.Store.Finish(bctx, c, state, message); err != nil {
			if !errors.Is(err, ErrLeaseLost) {
				log.ErrorContext(bctx, "record finish", "error", err)
			}
			return
		}
		p.cfg.Metrics.finish(state)
		log.InfoContext(bctx, "request finished", "state", state)
	}
	release := func() {
		bctx, cancel := bookkeeping()
		defer cancel()
		if err := p.cfg.Store.Release(bctx, c); err != nil {
			log.ErrorContext(bctx, "release lease", "error", err)
		}
	}

	if cancelRequested.Load() {
		finish(StateCancelled, "cancelled by caller before the next step")
		return
	}
	steps, skipped := p.stepsToRun(c)
	for _, def := range skipped {
		if err := p.skip(runCtx, c, def); err != nil {
			if !errors.Is(err, ErrLeaseLost) {
				log.ErrorContext(runCtx, "record skipped step", "step", def.Name, "error", err)
			}
			return
		}
	}
	if len(steps) == 0 {
		finish(StateDeprovisioned, "nothing to remove: provisioning never wrote anything")
		return
	}
	run := NewRun(c.Replication, c.Facts)
	run.Config, run.Lock, run.Now = p.cfg.StepConfig, p.cfg.Store.Lock, p.cfg.Now
	var err error
	if run.Source, err = p.cfg.Sessions.Account(runCtx, c.Replication.Source.AccountID, c.Replication.Source.Region); err == nil {
		run.Destination, err = p.cfg.Sessions.Account(runCtx, c.Replication.Destination.AccountID, c.Replication.Destination.Region)
	}
	if err != nil {
		if !lost.Load() {
			fail("resolve_accounts", fmt.Errorf("open provisioner sessions: %w", err))
		}
		return
	}

	for _, group := range groups(steps) {
		if ctx.Err() != nil {
			release()
			return
		}
		// Renewing the lease between groups also reads a cancel request
		// made while the last group ran.
		if cancel, err := p.cfg.Store.Extend(runCtx, c, p.cfg.Lease); errors.Is(err, ErrLeaseLost) {
			return
		} else if cancel {
			cancelRequested.Store(true)
		}
		if cancelRequested.Load() && c.Phase == PhaseProvision {
			msg := "cancelled by caller"
			if c.Replication.CurrentStep != "" {
				msg += " after step " + c.Replication.CurrentStep
			}
			finish(StateCancelled, msg)
			return
		}
		var (
			wg   sync.WaitGroup
			errs = make([]error, len(group))
		)
		for i, def := range group {
			if c.Done[def.Name] {
				continue
			}
			wg.Go(func() { errs[i] = p.runStep(runCtx, c, run, def) })
		}
		wg.Wait()
		if lost.Load() {
			return
		}
		if ctx.Err() != nil {
			// Shutting down: what finished is recorded; another worker
			// resumes the rest, including any step the grace period cut short.
			release()
			return
		}
		if i, err := worst(errs); err != nil {
			if errors.Is(err, ErrLeaseLost) {
				return
			}
			fail(group[i].Name, err)
			return
		}
		for _, def := range group {
			c.Done[def.Name] = true
			c.Replication.CurrentStep = def.Name
		}
		c.Replication.Attempt = 0 // as the store recorded with each step's success
	}
	if c.Phase == PhaseDeprovision {
		finish(StateDeprovisioned, "everything bucketbridge added is removed")
		return
	}
	msg := "replication is provisioned"
	if f := run.Facts(); f.CanaryLatency > 0 {
		msg += fmt.Sprintf("; the canary replicated in %s", f.CanaryLatency.Round(time.Millisecond))
	}
	finish(StateSucceeded, msg)
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

// skip records a step that has nothing to do.
func (p *Pool) skip(ctx context.Context, c *Claim, def StepDef) error {
	if err := p.cfg.Store.StartStep(ctx, c, def.Name); err != nil {
		return err
	}
	after := map[string]string{"reason": "nothing to remove: provisioning never started " + cmp.Or(def.Undoes, "a step that writes")}
	err := p.cfg.Store.FinishStep(ctx, c, StepRecord{Phase: c.Phase, Name: def.Name, Status: "skipped", After: encodeDoc(after)}, c.Facts)
	if err == nil {
		c.Done[def.Name] = true
	}
	return err
}

// runStep runs one attempt of a step and records it.
func (p *Pool) runStep(ctx context.Context, c *Claim, run *Run, def StepDef) error {
	if err := p.cfg.Store.StartStep(ctx, c, def.Name); err != nil {
		return err
	}
	timeout := p.cfg.StepTimeout
	if def.Name == "verify" {
		timeout += p.cfg.StepConfig.VerifyTimeout
	}
	stepCtx, cancel := context.WithTimeout(ctx, timeout)
	start := time.Now()
	res, err := p.callStep(stepCtx, def, run)
	elapsed := time.Since(start)
	if err != nil && errors.Is(stepCtx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("step %s timed out after %s: %w", def.Name, timeout, err)
	}
	cancel()

	rec := StepRecord{Phase: c.Phase, Name: def.Name, Changed: res.Changed,
		Before: encodeDoc(res.Before), After: encodeDoc(res.After)}
	switch {
	case err != nil:
		rec.Status = "failed"
		rec.Error = p.problem(def.Name, err, !IsPermanent(err))
	case res.Skipped:
		rec.Status = "skipped"
	default:
		rec.Status = "succeeded"
	}
	bctx, bcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer bcancel()
	p.cfg.Metrics.step(c.Phase, def.Name, rec.Status, elapsed)
	run.record.Lock()
	ferr := p.cfg.Store.FinishStep(bctx, c, rec, run.Facts())
	run.record.Unlock()
	if ferr != nil {
		return ferr
	}
	return err
}

// callStep runs a step, turning a panic into a permanent error so one bad
// step cannot take the worker down.
func (p *Pool) callStep(ctx context.Context, def StepDef, run *Run) (res Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			p.log.ErrorContext(ctx, "step panicked", "step", def.Name, "replication_id", run.Replication.ID,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			err = Permanent(fmt.Sprintf("step %s crashed; this is a bug in bucketbridge (the server log has the details)", def.Name), nil)
		}
	}()
	return def.Run(ctx, run)
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

// worst picks the error that decides a group's outcome: a lost lease, then
// a permanent failure, then any other.
func worst(errs []error) (int, error) {
	best, rank := -1, 0
	for i, err := range errs {
		r := 0
		switch {
		case err == nil:
		case errors.Is(err, ErrLeaseLost):
			r = 3
		case IsPermanent(err):
			r = 2
		default:
			r = 1
		}
		if r > rank {
			best, rank = i, r
		}
	}
	if best < 0 {
		return -1, nil
	}
	return best, errs[best]
}

// groups splits a step table into its groups, in order.
func groups(steps []StepDef) [][]StepDef {
	var out [][]StepDef
	for i, s := range steps {
		if i == 0 || s.Group != steps[i-1].Group {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], s)
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
