package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// claimNext leases the runnable request that has waited longest. SKIP
// LOCKED lets many workers claim at once without blocking each other; an
// expired lease (its worker died) makes a running request claimable again.
const claimNext = `WITH next AS (
    SELECT id, state AS old_state, lease_owner AS old_owner FROM replications
    WHERE state IN ('pending', 'running', 'deprovisioning')
      AND next_run_at <= now()
      AND (lease_until IS NULL OR lease_until < now())
    ORDER BY next_run_at
    FOR UPDATE SKIP LOCKED
    LIMIT 1
)
UPDATE replications r SET
    lease_owner = $1,
    lease_until = now() + $2 * interval '1 millisecond',
    state = CASE WHEN r.state = 'pending' THEN 'running'::replication_state ELSE r.state END,
    -- Time spent queued does not count against the request deadline.
    phase_started_at = CASE WHEN r.state = 'pending' THEN now() ELSE r.phase_started_at END,
    updated_at = now()
FROM next WHERE r.id = next.id
RETURNING r.id, next.old_state::text, next.old_owner, r.phase, r.phase_started_at, r.facts, r.cancel_requested`

const selectDoneSteps = `SELECT name FROM replication_steps
WHERE replication_id = $1 AND phase = $2 AND status IN ('succeeded', 'skipped')`

const selectAttemptedSteps = `SELECT name FROM replication_steps
WHERE replication_id = $1 AND phase = 'provision' AND attempts > 0 AND status <> 'skipped'`

// Claim leases the next runnable request for owner.
func (s *Store) Claim(ctx context.Context, owner string, lease time.Duration) (provision.Claim, bool, error) {
	var c provision.Claim
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return c, false, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

	var (
		id       uuid.UUID
		oldState string
		oldOwner *string
		phase    string
		facts    []byte
	)
	err = tx.QueryRow(ctx, claimNext, owner, lease.Milliseconds()).
		Scan(&id, &oldState, &oldOwner, &phase, &c.PhaseStartedAt, &facts, &c.CancelRequested)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("claim replication: %w", err)
	}
	c.Owner, c.Phase = owner, provision.Phase(phase)
	if err := json.Unmarshal(facts, &c.Facts); err != nil {
		return c, false, fmt.Errorf("decode facts of %s: %w", id, err)
	}
	if c.Replication, err = getReplication(ctx, tx, id.String()); err != nil {
		return c, false, err
	}
	rows, err := tx.Query(ctx, selectDoneSteps, id, phase)
	if err != nil {
		return c, false, fmt.Errorf("read steps of %s: %w", id, err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return c, false, fmt.Errorf("read steps of %s: %w", id, err)
	}
	c.Done = make(map[string]bool, len(done))
	for _, name := range done {
		c.Done[name] = true
	}
	rows, err = tx.Query(ctx, selectAttemptedSteps, id)
	if err != nil {
		return c, false, fmt.Errorf("read steps of %s: %w", id, err)
	}
	attempted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return c, false, fmt.Errorf("read steps of %s: %w", id, err)
	}
	c.Attempted = make(map[string]bool, len(attempted))
	for _, name := range attempted {
		c.Attempted[name] = true
	}
	switch {
	case oldState == string(provision.StatePending):
		err = appendEvent(ctx, tx, c.Replication.ID, "state", provision.StateRunning, "", "claimed by worker "+owner, nil)
	case oldOwner != nil:
		err = appendEvent(ctx, tx, c.Replication.ID, "lease", "", "",
			fmt.Sprintf("worker %s resumed it after worker %s's lease expired", owner, *oldOwner), nil)
	}
	if err != nil {
		return c, false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return c, false, fmt.Errorf("commit: %w", err)
	}
	return c, true, nil
}

const extendLease = `UPDATE replications SET lease_until = now() + $3 * interval '1 millisecond'
WHERE id = $1 AND lease_owner = $2
RETURNING cancel_requested`

// Extend renews c's lease.
func (s *Store) Extend(ctx context.Context, c *provision.Claim, lease time.Duration) (bool, error) {
	var cancel bool
	err := s.pool.QueryRow(ctx, extendLease, c.Replication.ID, c.Owner, lease.Milliseconds()).Scan(&cancel)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, provision.ErrLeaseLost
	}
	if err != nil {
		return false, fmt.Errorf("extend lease on %s: %w", c.Replication.ID, err)
	}
	return cancel, nil
}

// fence is the first statement of every write of a claimed request: it
// fails with ErrLeaseLost unless owner still holds the lease, and locks the
// row until the transaction ends.
const fence = `UPDATE replications SET updated_at = now() WHERE id = $1 AND lease_owner = $2`

// fenced runs fn in a transaction that first proves c's lease is held.
func (s *Store) fenced(ctx context.Context, c *provision.Claim, fn func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	tag, err := tx.Exec(ctx, fence, c.Replication.ID, c.Owner)
	if err != nil {
		return fmt.Errorf("check lease on %s: %w", c.Replication.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return provision.ErrLeaseLost
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

const startStep = `INSERT INTO replication_steps (replication_id, phase, name, status, attempts, started_at)
VALUES ($1, $2, $3, 'running', 1, now())
ON CONFLICT (replication_id, phase, name) DO UPDATE SET
    status = 'running', attempts = replication_steps.attempts + 1, started_at = now(),
    finished_at = NULL, error = NULL, updated_at = now()`

// StartStep records that a step began an attempt.
func (s *Store) StartStep(ctx context.Context, c *provision.Claim, name string) error {
	return s.fenced(ctx, c, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE replications SET current_step = $2 WHERE id = $1`, c.Replication.ID, name); err != nil {
			return fmt.Errorf("set current step of %s: %w", c.Replication.ID, err)
		}
		if _, err := tx.Exec(ctx, startStep, c.Replication.ID, c.Phase, name); err != nil {
			return fmt.Errorf("start step %s of %s: %w", name, c.Replication.ID, err)
		}
		return nil
	})
}

const finishStep = `UPDATE replication_steps SET
    status = $4, finished_at = now(), changed = $5, before = $6, after = $7, error = $8, updated_at = now()
WHERE replication_id = $1 AND phase = $2 AND name = $3`

// FinishStep records a step's end and the facts learned so far.
func (s *Store) FinishStep(ctx context.Context, c *provision.Claim, rec provision.StepRecord, facts provision.Facts) error {
	f, err := json.Marshal(facts)
	if err != nil {
		return fmt.Errorf("encode facts: %w", err)
	}
	return s.fenced(ctx, c, func(tx pgx.Tx) error {
		// attempt counts the failed attempts of the current step: a step that
		// ends well starts the next one (and its backoff) from zero.
		if _, err := tx.Exec(ctx, `UPDATE replications SET facts = $2,
    attempt = CASE WHEN $3 = 'failed' THEN attempt ELSE 0 END WHERE id = $1`, c.Replication.ID, f, rec.Status); err != nil {
			return fmt.Errorf("store facts of %s: %w", c.Replication.ID, err)
		}
		if _, err := tx.Exec(ctx, finishStep, c.Replication.ID, rec.Phase, rec.Name, rec.Status, rec.Changed,
			nullJSON(rec.Before), nullJSON(rec.After), nullJSON(rec.Error)); err != nil {
			return fmt.Errorf("finish step %s of %s: %w", rec.Name, c.Replication.ID, err)
		}
		msg := rec.Name + " " + rec.Status
		if rec.Changed {
			msg += " (changed)"
		}
		return appendEvent(ctx, tx, c.Replication.ID, "step", "", rec.Name, msg, nullJSON(rec.Error))
	})
}

const failPermanently = `UPDATE replications SET
    state = 'failed', finished_at = now(), last_error = $2, current_step = $3, attempt = attempt + 1,
    lease_owner = NULL, lease_until = NULL, cancel_requested = false
WHERE id = $1`

const reschedule = `UPDATE replications SET
    next_run_at = $2, last_error = $3, current_step = $4, attempt = attempt + 1, lease_owner = NULL, lease_until = NULL
WHERE id = $1`

// Fail records a failed attempt: the request fails, or runs again at
// f.RetryAt with its lease released.
func (s *Store) Fail(ctx context.Context, c *provision.Claim, f provision.Failure) error {
	return s.fenced(ctx, c, func(tx pgx.Tx) error {
		var err error
		if f.Permanent {
			_, err = tx.Exec(ctx, failPermanently, c.Replication.ID, []byte(f.Problem), f.Step)
			if err == nil {
				err = appendEvent(ctx, tx, c.Replication.ID, "state", provision.StateFailed, f.Step,
					"failed permanently", f.Problem)
			}
		} else {
			_, err = tx.Exec(ctx, reschedule, c.Replication.ID, f.RetryAt, []byte(f.Problem), f.Step)
			if err == nil {
				err = appendEvent(ctx, tx, c.Replication.ID, "retry", "", f.Step,
					"will retry at "+f.RetryAt.UTC().Format(time.RFC3339), f.Problem)
			}
		}
		if err != nil {
			return fmt.Errorf("record failure of %s: %w", c.Replication.ID, err)
		}
		return nil
	})
}

const finish = `UPDATE replications SET
    state = $2::replication_state, finished_at = now(), current_step = '',
    last_error = CASE WHEN $2::replication_state = 'cancelled' THEN last_error END,
    lease_owner = NULL, lease_until = NULL, cancel_requested = false
WHERE id = $1`

// Finish moves the request to a terminal state and releases it.
func (s *Store) Finish(ctx context.Context, c *provision.Claim, state provision.State, message string) error {
	if !state.Terminal() {
		return fmt.Errorf("finish %s in non-terminal state %s", c.Replication.ID, state)
	}
	return s.fenced(ctx, c, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, finish, c.Replication.ID, state); err != nil {
			return fmt.Errorf("finish %s: %w", c.Replication.ID, err)
		}
		return appendEvent(ctx, tx, c.Replication.ID, "state", state, "", message, nil)
	})
}

// Release gives up c's lease so another worker may claim it at once.
func (s *Store) Release(ctx context.Context, c *provision.Claim) error {
	_, err := s.pool.Exec(ctx, `UPDATE replications SET lease_owner = NULL, lease_until = NULL
WHERE id = $1 AND lease_owner = $2`, c.Replication.ID, c.Owner)
	if err != nil {
		return fmt.Errorf("release %s: %w", c.Replication.ID, err)
	}
	return nil
}

// Lock takes session-level advisory locks keyed by hashes of keys, all on
// one connection of its own, held until unlock. AWS offers no
// compare-and-swap on policies, so concurrent read-modify-writes of one
// document (even from several server replicas) are serialized here. Keys
// are taken in sorted order, and a holder never asks for more, so lockers
// cannot deadlock; one connection per holder means a holder never waits
// for the pool while holding a lock.
func (s *Store) Lock(ctx context.Context, keys ...string) (func(), error) {
	ids := make([]int64, 0, len(keys))
	for _, k := range keys {
		h := fnv.New64a()
		h.Write([]byte(k))
		ids = append(ids, int64(h.Sum64()))
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock %v: %w", keys, err)
	}
	for _, id := range ids {
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", id); err != nil {
			// A cancelled wait may leave the connection mid-protocol; closing
			// the session releases whatever it holds.
			conn.Hijack().Close(context.Background())
			return nil, fmt.Errorf("lock %v: %w", keys, err)
		}
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
			conn.Hijack().Close(ctx)
			return
		}
		conn.Release()
	}, nil
}

// Wake delivers a value whenever a request is created, retried or
// deprovisioned (Postgres NOTIFY), until ctx ends. When the listening
// connection fails it reconnects; the pool's polling covers the gap.
func (s *Store) Wake(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		for ctx.Err() == nil {
			s.listen(ctx, ch)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	return ch
}

func (s *Store) listen(ctx context.Context, ch chan<- struct{}) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return
	}
	// The connection carries a LISTEN, so it never goes back to the pool.
	pc := conn.Hijack()
	defer pc.Close(context.Background())
	if _, err := pc.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return
	}
	for {
		if _, err := pc.WaitForNotification(ctx); err != nil {
			return
		}
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func nullJSON(b json.RawMessage) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
