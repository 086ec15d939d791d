package provision

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// leaseKeeper keeps a claim's lease alive while its request runs, and
// stops the run (through stopRun) once the lease is lost, or about to run
// out without a renewal: past that point another worker may claim the
// request, and two workers must never act on AWS for one request.
type leaseKeeper struct {
	store   WorkStore
	claim   *Claim
	lease   time.Duration
	now     func() time.Time
	log     *slog.Logger
	stopRun context.CancelFunc

	lost            atomic.Bool
	cancelRequested atomic.Bool
	// watching: an interruptible step runs, so a cancel is looked for every
	// cancelPoll rather than with each renewal.
	watching atomic.Bool
	// onCancel runs once a renewal finds a cancel requested.
	onCancel func()

	mu      sync.Mutex
	renewed time.Time
	done    chan struct{}
}

func newLeaseKeeper(store WorkStore, c *Claim, lease time.Duration, now func() time.Time, log *slog.Logger, stopRun context.CancelFunc) *leaseKeeper {
	k := &leaseKeeper{store: store, claim: c, lease: lease, now: now, log: log, stopRun: stopRun,
		renewed: now(), done: make(chan struct{})}
	k.cancelRequested.Store(c.CancelRequested)
	return k
}

// cancelPoll is how often a cancel is looked for while an interruptible
// step waits, so that a caller's cancel stops it within a second.
const cancelPoll = 500 * time.Millisecond

// run renews the lease every third of its length, and every cancelPoll while
// an interruptible step runs, until ctx ends.
func (k *leaseKeeper) run(ctx context.Context) {
	defer close(k.done)
	t := time.NewTicker(min(cancelPoll, k.lease/3))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.mu.Lock()
		due := k.watching.Load() || k.now().Sub(k.renewed) >= k.lease/3
		k.mu.Unlock()
		if !due {
			continue
		}
		if err := k.renew(ctx); err != nil {
			return
		}
	}
}

// sawCancel notes that a caller asked to cancel, once.
func (k *leaseKeeper) sawCancel() {
	if !k.cancelRequested.Swap(true) && k.onCancel != nil {
		k.onCancel()
	}
}

// wait returns once run has.
func (k *leaseKeeper) wait() { <-k.done }

// renew extends the lease once and reads whether a caller asked to cancel.
// It returns ErrLeaseLost, after stopping the run, when the lease is gone
// or cannot be renewed before it runs out; any other failure is logged and
// tolerated, since the next renewal may succeed in time.
func (k *leaseKeeper) renew(ctx context.Context) error {
	if k.lost.Load() {
		return ErrLeaseLost
	}
	// A renewal the database never answers must not outlast the lease: it
	// gets until the point where the run would be stopped anyway.
	k.mu.Lock()
	left := k.renewed.Add(k.lease * 9 / 10).Sub(k.now())
	k.mu.Unlock()
	ectx, cancelExtend := context.WithTimeout(ctx, max(left, 0))
	cancel, err := k.store.Extend(ectx, k.claim, k.lease)
	cancelExtend()
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case err == nil:
		k.renewed = now
		if cancel {
			k.sawCancel()
		}
		return nil
	case errors.Is(err, ErrLeaseLost):
		k.log.WarnContext(ctx, "lease lost; stopping without writing")
	case ctx.Err() != nil:
		return ctx.Err()
	case now.Sub(k.renewed) <= k.lease*9/10:
		k.log.WarnContext(ctx, "lease heartbeat failed; retrying", "error", err)
		return nil
	default:
		k.log.WarnContext(ctx, "cannot renew the lease before it expires; stopping", "error", err)
	}
	k.lost.Store(true)
	k.stopRun()
	return ErrLeaseLost
}
