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
    SELECT id, lease_owner AS old_owner FROM replications
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
    -- Time spent queued does not count against the request deadline.
    phase_started_at = CASE WHEN r.state = 'pending' THEN now() ELSE r.phase_started_at END,
    updated_at = now()
FROM next WHERE r.id = next.id
RETURNING r.id, r.state, next.old_owner, r.phase_started_at, r.facts, r.cancel_requested`

const selectDoneSteps = `SELECT name FROM replication_steps
WHERE replication_id = $1 AND phase = $2 AND status IN ('succeeded', 'skipped')`

const selectAttemptedSteps = `SELECT name FROM replication_steps
WHERE replication_id = $1 AND phase = 'provision' AND attempts > 0 AND status <> 'skipped'`

// Claim leases the next runnable request for owner; a pending one is
// claimed through the lifecycle (pending → running).
func (s *Store) Claim(ctx context.Context, owner string, lease time.Duration) (provision.Claim, bool, error) {
	var (
		c       provision.Claim
		claimed *provision.Change
	)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var (
			id       uuid.UUID
			state    provision.State
			oldOwner *string
			facts    []byte
		)
		err := tx.QueryRow(ctx, claimNext, owner, lease.Milliseconds()).
			Scan(&id, &state, &oldOwner, &c.PhaseStartedAt, &facts, &c.CancelRequested)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("claim replication: %w", err)
		}
		c.Owner = owner
		if err := json.Unmarshal(facts, &c.Facts); err != nil {
			return fmt.Errorf("decode facts of %s: %w", id, err)
		}
		actor := provision.WorkerActor(owner)
		switch {
		case state == provision.StatePending:
			ch, err := s.apply(ctx, tx, change{id: id.String(), action: provision.ActionClaim, actor: actor, owner: owner,
				message: "claimed by worker " + owner})
			if err != nil {
				return err
			}
			claimed, c.Replication = &ch, ch.Replication
		case oldOwner != nil:
			err = appendEvent(ctx, tx, id.String(), event{typ: provision.EventLease, actor: actor,
				message: fmt.Sprintf("worker %s resumed it after worker %s's lease expired", owner, *oldOwner)})
		}
		if err != nil {
			return err
		}
		if c.Replication.ID == "" {
			if c.Replication, err = getReplication(ctx, tx, id.String()); err != nil {
				return err
			}
		}
		c.Phase = c.Replication.Phase
		if c.Done, err = stepNames(ctx, tx, selectDoneSteps, id, c.Phase); err != nil {
			return err
		}
		c.Attempted, err = stepNames(ctx, tx, selectAttemptedSteps, id)
		return err
	})
	if err != nil || c.Owner == "" {
		return provision.Claim{}, false, err
	}
	if claimed != nil {
		s.committed(*claimed)
	}
	return c, true, nil
}

// stepNames runs a query listing step names and returns them as a set.
func stepNames(ctx context.Context, tx pgx.Tx, sql string, args ...any) (map[string]bool, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("read steps of %v: %w", args[0], err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read steps of %v: %w", args[0], err)
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set, nil
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
	return s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, fence, c.Replication.ID, c.Owner)
		if err != nil {
			return fmt.Errorf("check lease on %s: %w", c.Replication.ID, err)
		}
		if tag.RowsAffected() == 0 {
			return provision.ErrLeaseLost
		}
		return fn(tx)
	})
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

// replaceStepWarnings replaces the warnings of one step ($2 phase, $3 name)
// with $4, keeping everyone else's in their order.
const replaceStepWarnings = `UPDATE replications SET warnings = (
    SELECT coalesce(jsonb_agg(w ORDER BY n), '[]'::jsonb)
    FROM jsonb_array_elements(warnings) WITH ORDINALITY AS e(w, n)
    WHERE NOT (w->>'phase' = $2 AND w->>'step' = $3)
) || $4::jsonb
WHERE id = $1`

const finishStep = `UPDATE replication_steps SET
    status = $4, finished_at = now(), changed = $5, before = $6, after = $7, error = $8, updated_at = now()
WHERE replication_id = $1 AND phase = $2 AND name = $3`

// FinishStep records a step's end, its warnings (replacing those of its
// earlier attempts) and the facts learned so far.
func (s *Store) FinishStep(ctx context.Context, c *provision.Claim, rec provision.StepRecord, facts provision.Facts) error {
	f, err := json.Marshal(facts)
	if err != nil {
		return fmt.Errorf("encode facts: %w", err)
	}
	warnings := rec.Warnings
	if warnings == nil {
		warnings = []provision.Warning{}
	}
	w, err := json.Marshal(warnings)
	if err != nil {
		return fmt.Errorf("encode warnings: %w", err)
	}
	return s.fenced(ctx, c, func(tx pgx.Tx) error {
		// attempt counts the failed attempts of the current step: a step that
		// ends well starts the next one (and its backoff) from zero.
		if _, err := tx.Exec(ctx, `UPDATE replications SET facts = $2,
    attempt = CASE WHEN $3 = 'failed' THEN attempt ELSE 0 END WHERE id = $1`, c.Replication.ID, f, rec.Status); err != nil {
			return fmt.Errorf("store facts of %s: %w", c.Replication.ID, err)
		}
		if _, err := tx.Exec(ctx, replaceStepWarnings, c.Replication.ID, rec.Phase, rec.Name, w); err != nil {
			return fmt.Errorf("store warnings of step %s of %s: %w", rec.Name, c.Replication.ID, err)
		}
		if _, err := tx.Exec(ctx, finishStep, c.Replication.ID, rec.Phase, rec.Name, rec.Status, rec.Changed,
			nullJSON(rec.Before), nullJSON(rec.After), nullJSON(rec.Error)); err != nil {
			return fmt.Errorf("finish step %s of %s: %w", rec.Name, c.Replication.ID, err)
		}
		msg := rec.Name + " " + string(rec.Status)
		if rec.Changed {
			msg += " (changed)"
		}
		return appendEvent(ctx, tx, c.Replication.ID, event{typ: provision.EventStep, step: rec.Name,
			actor: provision.WorkerActor(c.Owner), message: msg, detail: rec.Error})
	})
}

const reschedule = `UPDATE replications SET
    next_run_at = $2, last_error = $3, current_step = $4, attempt = attempt + 1, lease_owner = NULL, lease_until = NULL
WHERE id = $1`

// Fail records a failed attempt: the request fails, or runs again at
// f.RetryAt with its lease released.
func (s *Store) Fail(ctx context.Context, c *provision.Claim, f provision.Failure) error {
	if f.Permanent {
		return s.finish(ctx, c, provision.ActionFail, "failed permanently", f.Problem, []byte(f.Problem), f.Step)
	}
	return s.fenced(ctx, c, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, reschedule, c.Replication.ID, f.RetryAt, []byte(f.Problem), f.Step); err != nil {
			return fmt.Errorf("record failure of %s: %w", c.Replication.ID, err)
		}
		return appendEvent(ctx, tx, c.Replication.ID, event{typ: provision.EventRetry, step: f.Step,
			actor: provision.WorkerActor(c.Owner), message: "will retry at " + f.RetryAt.UTC().Format(time.RFC3339), detail: f.Problem})
	})
}

// Finish applies action (complete or cancel) to the claimed request, which
// releases it.
func (s *Store) Finish(ctx context.Context, c *provision.Claim, action provision.Action, message string) error {
	return s.finish(ctx, c, action, message, nil)
}

// finish applies action to the claimed request; detail goes with the state
// event, and args to the action's statement.
func (s *Store) finish(ctx context.Context, c *provision.Claim, action provision.Action, message string, detail []byte, args ...any) error {
	_, err := s.applyNow(ctx, change{id: c.Replication.ID, action: action, actor: provision.WorkerActor(c.Owner),
		owner: c.Owner, message: message, detail: detail, args: args})
	return err
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

func nullJSON(b json.RawMessage) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
