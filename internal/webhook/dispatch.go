package webhook

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"
)

// Retry timing defaults.
const (
	// DefaultBackoff is the delay before the first retry when
	// BB_WEBHOOK_BACKOFF is not set; each later delay doubles.
	DefaultBackoff = 5 * time.Second
	// MaxBackoff caps the delay between two attempts.
	MaxBackoff = time.Hour
	// DefaultMaxAge is how long a delivery is retried when
	// BB_WEBHOOK_MAX_AGE is not set.
	DefaultMaxAge = 24 * time.Hour
)

// Outbox is the storage the dispatcher works on. Times are the
// dispatcher's clock, passed in, so that every replica and every test
// agrees on what is due.
type Outbox interface {
	// ClaimDue leases to owner, until now+lease, up to limit deliveries
	// that are pending, due at or before now, not leased (or whose lease
	// expired), and have no earlier delivery of the same request still
	// pending. Several dispatchers may claim at once; none gets a
	// delivery another holds.
	ClaimDue(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Delivery, error)
	// RecordAttempt stores an attempt and the delivery's new status, and
	// releases the lease; it returns ErrLeaseLost, writing nothing, when
	// owner no longer holds the lease.
	RecordAttempt(ctx context.Context, owner string, rec AttemptRecord) error
	// OldestPending returns when the oldest pending delivery was queued,
	// and false when none is pending.
	OldestPending(ctx context.Context) (time.Time, bool, error)
}

// DispatcherConfig configures a Dispatcher.
type DispatcherConfig struct {
	// Outbox is where deliveries are claimed and recorded. Required.
	Outbox Outbox
	// Sender makes the attempts. Required.
	Sender *Sender
	// Wake receives a value when deliveries were queued (Postgres NOTIFY);
	// polling every Poll is the fallback. May be nil.
	Wake <-chan struct{}
	// Backoff is the delay before the first retry, doubled for each
	// later one up to MaxBackoff, with jitter (BB_WEBHOOK_BACKOFF, default
	// DefaultBackoff).
	Backoff time.Duration
	// MaxAge is how long after being queued a delivery is retried before
	// it fails (BB_WEBHOOK_MAX_AGE, default DefaultMaxAge).
	MaxAge time.Duration
	// Lease is how long a claim lasts; it must outlast an attempt, so that
	// a delivery is sent twice only when its dispatcher died (default
	// three times the sender's timeout, at least one minute).
	Lease time.Duration
	// Poll is how often to look for due deliveries without a wake-up (1s).
	Poll time.Duration
	// Concurrency is how many attempts run at once (8).
	Concurrency int
	// Owner names this dispatcher in leases; default host/pid/random.
	Owner   string
	Metrics *Metrics
	Logger  *slog.Logger
	// NowFunc is the clock; time.Now when nil.
	NowFunc func() time.Time
}

// Dispatcher sends due deliveries, one per server replica. Several may
// share one database: each delivery is claimed by one of them at a time.
type Dispatcher struct {
	cfg DispatcherConfig
	log *slog.Logger
}

// NewDispatcher validates cfg and fills its defaults.
func NewDispatcher(cfg DispatcherConfig) (*Dispatcher, error) {
	if cfg.Outbox == nil || cfg.Sender == nil {
		return nil, errors.New("webhook: DispatcherConfig needs Outbox and Sender")
	}
	if cfg.Backoff < 0 || cfg.MaxAge < 0 || cfg.Lease < 0 || cfg.Poll < 0 || cfg.Concurrency < 0 {
		return nil, errors.New("webhook: DispatcherConfig durations and Concurrency must not be negative")
	}
	timeout := cfg.Sender.cfg.Timeout
	host, _ := os.Hostname()
	cfg.Backoff = cmp.Or(cfg.Backoff, DefaultBackoff)
	cfg.MaxAge = cmp.Or(cfg.MaxAge, DefaultMaxAge)
	cfg.Lease = cmp.Or(cfg.Lease, max(3*timeout, time.Minute))
	cfg.Poll = cmp.Or(cfg.Poll, time.Second)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 8)
	cfg.Owner = cmp.Or(cfg.Owner, fmt.Sprintf("%s/%d/%04x", host, os.Getpid(), rand.Uint32()&0xffff))
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	if cfg.Lease <= timeout {
		return nil, fmt.Errorf("webhook: Lease (%s) must be longer than the attempt timeout (%s)", cfg.Lease, timeout)
	}
	return &Dispatcher{cfg: cfg, log: cmp.Or(cfg.Logger, slog.Default())}, nil
}

// Run delivers until ctx ends, then stops claiming, lets the attempts under
// way finish (each is bounded by the sender's timeout), records them and
// returns.
func (d *Dispatcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	// busy holds a token per attempt under way; freed says one ended, which
	// may have made the next delivery of its request due.
	busy := make(chan struct{}, d.cfg.Concurrency)
	freed := make(chan struct{}, 1)
	for ctx.Err() == nil {
		if free := cap(busy) - len(busy); free > 0 {
			ds, err := d.cfg.Outbox.ClaimDue(ctx, d.cfg.Owner, d.cfg.NowFunc(), d.cfg.Lease, free)
			if err != nil && ctx.Err() == nil {
				d.log.ErrorContext(ctx, "claim deliveries", "error", err, "owner", d.cfg.Owner)
			}
			for _, dl := range ds {
				busy <- struct{}{}
				wg.Go(func() {
					defer func() {
						<-busy
						select {
						case freed <- struct{}{}:
						default:
						}
					}()
					d.deliver(ctx, dl)
				})
			}
			if err == nil && len(ds) == free {
				continue // more may be due
			}
		}
		d.observeOldest(ctx)
		select {
		case <-ctx.Done():
		case <-d.cfg.Wake:
		case <-freed:
		case <-time.After(d.cfg.Poll):
		}
	}
}

// deliver makes one attempt and records it.
func (d *Dispatcher) deliver(ctx context.Context, dl Delivery) {
	log := d.log.With("delivery_id", dl.ID, "replication_id", dl.ReplicationID, "type", dl.Type, "attempt", dl.Tries+1)
	// An attempt under way at shutdown finishes and is recorded, rather
	// than being sent again by another replica after the lease expires.
	ctx = context.WithoutCancel(ctx)
	at := d.cfg.NowFunc()
	res := d.cfg.Sender.Send(ctx, dl, at)
	d.cfg.Metrics.attempt(res)

	rec := AttemptRecord{
		DeliveryID: dl.ID,
		Attempt:    Attempt{At: at, StatusCode: res.StatusCode, Error: res.Describe(), Duration: res.Duration},
	}
	deadline := dl.QueuedAt.Add(d.cfg.MaxAge)
	outcome := ""
	switch {
	case res.Delivered():
		rec.Status, outcome = StatusDelivered, outcomeDelivered
	case res.Gone():
		rec.Status, outcome = StatusFailed, outcomeGone
	case !at.Before(deadline):
		rec.Status, outcome = StatusFailed, outcomeExpired
	default:
		// The last retry happens at the deadline, not up to an hour after.
		rec.Status, rec.NextAttemptAt = StatusPending, at.Add(backoff(d.cfg.Backoff, dl.Tries+1))
		if rec.NextAttemptAt.After(deadline) {
			rec.NextAttemptAt = deadline
		}
	}

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := d.cfg.Outbox.RecordAttempt(wctx, d.cfg.Owner, rec)
	switch {
	case errors.Is(err, ErrLeaseLost):
		log.WarnContext(ctx, "delivery attempt not recorded: another dispatcher took the delivery over after this one's lease expired")
		return
	case err != nil:
		// The lease expires and another attempt follows: at least once.
		log.ErrorContext(ctx, "record delivery attempt", "error", err)
		return
	}
	if outcome != "" {
		d.cfg.Metrics.finished(dl.Type, outcome)
	}
	switch outcome {
	case outcomeDelivered:
		log.DebugContext(ctx, "delivered", "status", res.StatusCode, "duration", res.Duration)
	case "":
		log.WarnContext(ctx, "delivery attempt failed; will retry", "error", rec.Attempt.Error, "next_attempt_at", rec.NextAttemptAt)
	default:
		log.ErrorContext(ctx, "delivery failed; not retrying", "error", rec.Attempt.Error, "outcome", outcome)
	}
}

// observeOldest updates the age of the oldest pending delivery.
func (d *Dispatcher) observeOldest(ctx context.Context) {
	if d.cfg.Metrics == nil {
		return
	}
	oldest, ok, err := d.cfg.Outbox.OldestPending(ctx)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "read oldest pending delivery", "error", err)
		}
	case ok:
		d.cfg.Metrics.oldestPending(d.cfg.NowFunc().Sub(oldest))
	default:
		d.cfg.Metrics.oldestPending(0)
	}
}

// backoff returns the delay after the n-th failed attempt in a row (n ≥ 1):
// base·2^(n-1) plus up to half of it again at random, capped at MaxBackoff.
// The jitter spreads retries of deliveries that failed together (a
// receiver's outage); being less than the doubling, it keeps every delay
// longer than the one before until the cap.
func backoff(base time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < MaxBackoff; i++ {
		d *= 2
	}
	if d >= MaxBackoff {
		return MaxBackoff
	}
	if d >= 2 {
		d += rand.N(d / 2)
	}
	return min(d, MaxBackoff)
}
