package provision

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// Groups splits a step table into its groups, in order.
func Groups(steps []StepDef) [][]StepDef {
	var out [][]StepDef
	for i, s := range steps {
		if i == 0 || s.Group != steps[i-1].Group {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], s)
	}
	return out
}

// StepOutcome is how one attempt of a step ended.
type StepOutcome struct {
	Def     StepDef
	Result  Result
	Err     error
	Elapsed time.Duration
}

// Status is what the attempt's record says.
func (o StepOutcome) Status() StepStatus {
	switch {
	case o.Err != nil:
		return StepFailed
	case o.Result.Skipped:
		return StepSkipped
	}
	return StepSucceeded
}

// Recorder records the attempts of steps as they start and end.
type Recorder interface {
	// Started is called before the attempts of a group's steps, with those
	// steps; an error keeps them from running.
	Started(ctx context.Context, defs []StepDef) error
	// Ended is called with each attempt's outcome; an error replaces the step's.
	Ended(ctx context.Context, o StepOutcome) error
}

// RunGroup runs one attempt of each step of a group, concurrently, each
// under its own timeout and holding the locks of the documents it declares
// (StepDef.Locks). With rec (when not nil) it records the start of them
// all at once, then each as it ends; that record is written before the
// locks are released, so that the next holder of a document reads what
// this step learned. It returns the outcomes in group order.
func RunGroup(ctx context.Context, run *Run, group []StepDef, rec Recorder) []StepOutcome {
	out := make([]StepOutcome, len(group))
	if rec != nil {
		if err := rec.Started(ctx, group); err != nil {
			for i, def := range group {
				out[i] = StepOutcome{Def: def, Err: err}
			}
			return out
		}
	}
	var wg sync.WaitGroup
	for i, def := range group {
		wg.Go(func() { out[i] = runOne(ctx, run, def, rec) })
	}
	wg.Wait()
	return out
}

// runOne runs and records one attempt of a step under its locks.
func runOne(ctx context.Context, run *Run, def StepDef, rec Recorder) StepOutcome {
	var o StepOutcome
	switch {
	case def.Skip != nil && def.Skip(run):
		o = StepOutcome{Def: def, Result: Result{Skipped: true}}
	case def.Locks != nil && run.Lock != nil:
		keys := def.Locks(run)
		unlock, err := run.Lock(ctx, keys...)
		if err != nil {
			o = StepOutcome{Def: def, Err: fmt.Errorf("lock %v: %w", keys, err)}
			break
		}
		defer unlock()
		o = attempt(ctx, run, def)
	default:
		o = attempt(ctx, run, def)
	}
	if rec != nil {
		if err := rec.Ended(ctx, o); err != nil {
			o.Err = err
		}
	}
	return o
}

// attempt runs one attempt of a step.
func attempt(ctx context.Context, run *Run, def StepDef) (o StepOutcome) {
	cfg := run.Config.withDefaults()
	timeout := cfg.StepTimeout
	if def.TimeoutFunc != nil {
		timeout = def.TimeoutFunc(cfg)
	}
	stepCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if def.Interruptible && run.interrupt != nil {
		var interrupt context.CancelCauseFunc
		stepCtx, interrupt = context.WithCancelCause(stepCtx)
		defer interrupt(nil)
		go func() {
			select {
			case <-run.interrupt:
				interrupt(ErrInterrupted)
			case <-stepCtx.Done():
			}
		}()
	}
	start := run.now()
	o.Def = def

	defer func() {
		if v := recover(); v != nil {
			run.logger().ErrorContext(ctx, "step panicked", "step", def.Name, "replication_id", run.Replication.ID,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			o.Err = Permanent(fmt.Sprintf("step %s crashed; this is a bug in bucketbridge (the server log has the details)", def.Name), nil)
		}
		o.Elapsed = run.now().Sub(start)
	}()
	o.Result, o.Err = def.Run(stepCtx, run)
	switch {
	case o.Err == nil:
	case errors.Is(context.Cause(stepCtx), ErrInterrupted):
		o.Err = fmt.Errorf("step %s: %w", def.Name, ErrInterrupted)
	case errors.Is(stepCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		o.Err = fmt.Errorf("step %s timed out after %s: %w", def.Name, timeout, o.Err)
	}
	return o
}

// ErrInterrupted ends an interruptible step that a caller's cancel or a
// shutdown stopped.
var ErrInterrupted = errors.New("interrupted: the request was cancelled or the worker is shutting down")

// decisive picks the outcome that decides a group's fate: a lost lease,
// then a permanent failure, then any other failure; ok is false when every
// step succeeded.
func decisive(outcomes []StepOutcome) (o StepOutcome, ok bool) {
	rank := func(err error) int {
		switch {
		case err == nil:
			return 0
		case errors.Is(err, ErrLeaseLost):
			return 3
		case IsPermanent(err):
			return 2
		}
		return 1
	}
	best := 0
	for _, c := range outcomes {
		if r := rank(c.Err); r > best {
			o, best = c, r
		}
	}
	return o, best > 0
}
