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
	"github.com/jackc/pgx/v5/pgconn"

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

const selectStepStates = `SELECT phase, name, status, attempts FROM replication_steps WHERE replication_id = $1`

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
		c.Done, c.Attempted, err = stepStates(ctx, tx, id, c.Phase)
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

// stepStates reads a request's step records: the steps of phase that
// succeeded or were skipped (a resumed run starts after them), and the
// provisioning steps that ever started an attempt (only those may have
// written anything to remove).
func stepStates(ctx context.Context, tx pgx.Tx, id uuid.UUID, phase provision.Phase) (done, attempted map[string]bool, err error) {
	rows, err := tx.Query(ctx, selectStepStates, id)
	if err != nil {
		return nil, nil, fmt.Errorf("read steps of %s: %w", id, err)
	}
	done, attempted = map[string]bool{}, map[string]bool{}
	var (
		p, name, status string
		attempts        int
	)
	_, err = pgx.ForEachRow(rows, []any{&p, &name, &status, &attempts}, func() error {
		st := provision.StepStatus(status)
		if provision.Phase(p) == phase && (st == provision.StepSucceeded || st == provision.StepSkipped) {
			done[name] = true
		}
		if provision.Phase(p) == provision.PhaseProvision && attempts > 0 && st != provision.StepSkipped {
			attempted[name] = true
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read steps of %s: %w", id, err)
	}
	return done, attempted, nil
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

// insertStarts records the start of an attempt of each step named in the
// array names, of phase, for the request r of the statement it is part of,
// where the condition where holds.
func insertStarts(phase, names, where string) string {
	return `INSERT INTO replication_steps (replication_id, phase, name, status, attempts, started_at)
SELECT r.id, ` + phase + `, name, 'running', 1, now() FROM r, unnest(` + names + `::text[]) AS name
WHERE ` + where + `
ON CONFLICT (replication_id, phase, name) DO UPDATE SET
    status = 'running', attempts = replication_steps.attempts + 1, started_at = now(),
    finished_at = NULL, error = NULL, updated_at = now()`
}

// startSteps records the start of an attempt of each step of a group in
// one statement: it inserts nothing unless owner still holds the lease. The
// request's current step is the group's first.
var startSteps = `WITH r AS (
    UPDATE replications SET current_step = ($4::text[])[1], updated_at = now() WHERE id = $1 AND lease_owner = $2 RETURNING id
)
` + insertStarts("$3", "$4", "true")

// StartSteps records that steps (one group's) began an attempt each.
func (s *Store) StartSteps(ctx context.Context, c *provision.Claim, names ...string) error {
	var tag pgconn.CommandTag
	err := s.records.do(ctx, c.Replication.ID, startSteps, []any{c.Replication.ID, c.Owner, c.Phase, names},
		func(br pgx.BatchResults) (err error) {
			tag, err = br.Exec()
			return err
		})
	if err != nil {
		return fmt.Errorf("start steps %v of %s: %w", names, c.Replication.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return provision.ErrLeaseLost
	}
	return nil
}

// finishStep records the end of a step's attempt, its warnings (replacing
// those of its earlier attempts, keeping everyone else's in their order),
// the facts learned so far and the step's event in one statement, fenced by
// the lease, and reads whether a caller asked to cancel. attempt counts the
// failed attempts of the current step: a step that ends well starts the
// next one (and its backoff) from zero. With next steps ($14), it also
// records their start as startSteps does, unless a caller asked to cancel
// and $15 (StepRecord.StartsNext with a cancel asked) says a cancel stops
// them; the cancel it reads is the one it returns.
var finishStep = `WITH r AS (
    UPDATE replications SET facts = $3, attempt = CASE WHEN $6 = 'failed' THEN attempt ELSE 0 END,
        warnings = (
            SELECT coalesce(jsonb_agg(w ORDER BY n), '[]'::jsonb)
            FROM jsonb_array_elements(warnings) WITH ORDINALITY AS e(w, n)
            WHERE NOT (w->>'phase' = $4 AND w->>'step' = $5)
        ) || $13::jsonb,
        current_step = CASE WHEN cardinality($14::text[]) > 0 AND ($15 OR NOT cancel_requested)
            THEN ($14::text[])[1] ELSE current_step END,
        event_seq = event_seq + 1, updated_at = now()
    WHERE id = $1 AND lease_owner = $2
    RETURNING id, event_seq, cancel_requested
), s AS (
    UPDATE replication_steps SET status = $6, finished_at = now(), changed = $7, before = $8, after = $9,
        error = $10, updated_at = now()
    FROM r WHERE replication_id = r.id AND phase = $4 AND name = $5
), e AS (
    INSERT INTO replication_events (replication_id, seq, type, step, actor, message, detail)
    SELECT r.id, r.event_seq, 'step', $5, $11, $12, $10 FROM r
), n AS (
` + insertStarts("$4", "$14", "$15 OR NOT r.cancel_requested") + `
)
SELECT cancel_requested FROM r`

// FinishStep records a step's end, its warnings and the facts learned so
// far, and reports whether a caller has asked to cancel the request.
func (s *Store) FinishStep(ctx context.Context, c *provision.Claim, rec provision.StepRecord, facts provision.Facts) (bool, error) {
	f, err := json.Marshal(facts)
	if err != nil {
		return false, fmt.Errorf("encode facts: %w", err)
	}
	warnings := rec.Warnings
	if warnings == nil {
		warnings = []provision.Warning{}
	}
	w, err := json.Marshal(warnings)
	if err != nil {
		return false, fmt.Errorf("encode warnings: %w", err)
	}
	msg := rec.Name + " " + string(rec.Status)
	if rec.Changed {
		msg += " (changed)"
	}
	var cancel bool
	next := rec.Next
	if next == nil {
		next = []string{}
	}
	args := []any{c.Replication.ID, c.Owner, f, rec.Phase, rec.Name, rec.Status, rec.Changed,
		nullJSON(rec.Before), nullJSON(rec.After), nullJSON(rec.Error), provision.WorkerActor(c.Owner), msg, w, next,
		rec.StartsNext(true)}
	err = s.records.do(ctx, c.Replication.ID, finishStep, args, func(br pgx.BatchResults) error {
		return br.QueryRow().Scan(&cancel)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, provision.ErrLeaseLost
	}
	if err != nil {
		return false, fmt.Errorf("finish step %s of %s: %w", rec.Name, c.Replication.ID, err)
	}
	// The statement appended the step's event, and has committed.
	s.events.Notify(canonicalID(c.Replication.ID))
	return cancel, nil
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

// Lock takes session-level advisory locks keyed by hashes of keys, held
// until unlock. AWS offers no compare-and-swap on policies, so concurrent
// read-modify-writes of one document (even from several server replicas)
// are serialized here. Within the process, holders queue for each key
// before they ask Postgres, so waiting holds no connection. Keys free in
// Postgres are taken at once on the process's shared session; when another
// process holds one, the holder waits for it on a connection of its own
// (one of a bounded number), taking the keys in sorted order. A holder
// never asks for more, so lockers cannot deadlock.
func (s *Store) Lock(ctx context.Context, keys ...string) (func(), error) {
	ids := make([]int64, 0, len(keys))
	for _, k := range keys {
		h := fnv.New64a()
		h.Write([]byte(k))
		ids = append(ids, int64(h.Sum64()))
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	local, err := s.locks.lock(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("lock %v: %w", keys, err)
	}
	gen, ok, err := s.session.tryLock(ctx, ids)
	unlock := func() { s.session.unlock(gen, ids) }
	if err == nil && !ok {
		unlock, err = s.waitLock(ctx, ids)
	}
	if err != nil {
		local()
		return nil, fmt.Errorf("lock %v: %w", keys, err)
	}
	return func() {
		unlock()
		local()
	}, nil
}

// waitLock takes ids, some held by another process, on a connection of
// its own, waiting for them in order.
func (s *Store) waitLock(ctx context.Context, ids []int64) (func(), error) {
	slot, err := s.locks.conn(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		slot()
		return nil, err
	}
	for _, id := range ids {
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", id); err != nil {
			// A cancelled wait may leave the connection mid-protocol; closing
			// the session releases whatever it holds.
			conn.Hijack().Close(context.Background())
			slot()
			return nil, err
		}
	}
	return func() {
		defer slot()
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
