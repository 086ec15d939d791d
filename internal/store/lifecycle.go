package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// Hook runs inside the transaction of every applied transition, after the
// state and its event are written; an error rolls the transition back, so
// what a hook writes (a callback's outbox row) exists exactly when the
// transition does.
type Hook func(ctx context.Context, tx pgx.Tx, c provision.Change) error

// OnTransition adds h to the hooks of every transition, in order. Call it
// before the store is used.
func (s *Store) OnTransition(h Hook) { s.hooks = append(s.hooks, h) }

// AfterTransition adds fn to what runs once a transition has committed
// (metrics). Call it before the store is used.
func (s *Store) AfterTransition(fn func(provision.Change)) { s.after = append(s.after, fn) }

// enter holds, for each action, what the UPDATE that moves a request into
// the state the lifecycle gives it ($2) sets besides the state; $3 on are
// the action's own arguments. apply checks the transition first and the
// database trigger checks it again.
var enter = map[provision.Action]string{
	// $3 is the approver. The request is runnable from now on; time spent
	// waiting for consent does not count against its deadline, which the
	// claim starts.
	provision.ActionApprove: `approved_by = $3, approved_at = now(), next_run_at = now()`,
	// $3 is the approver who refused, $4 why.
	provision.ActionReject: `finished_at = now(), rejected_by = $3, rejected_at = now(), rejection_reason = $4`,
	// The claim query has set the lease and started the phase's clock.
	provision.ActionClaim: ``,
	provision.ActionComplete: `finished_at = now(), current_step = '', last_error = NULL, lease_owner = NULL,
    lease_until = NULL, cancel_requested = false`,
	// $3 is the problem, $4 the step that failed.
	provision.ActionFail: `finished_at = now(), last_error = $3, current_step = $4, attempt = attempt + 1,
    lease_owner = NULL, lease_until = NULL, cancel_requested = false`,
	provision.ActionCancel: `finished_at = now(), lease_owner = NULL, lease_until = NULL, cancel_requested = false`,
	// A retried request resumes its phase from the first unfinished step,
	// with a fresh deadline.
	provision.ActionRetry: `finished_at = NULL, next_run_at = now(), phase_started_at = now(), attempt = 0`,
	provision.ActionDeprovision: `finished_at = NULL, next_run_at = now(), phase_started_at = now(), attempt = 0,
    last_error = NULL, current_step = ''`,
}

// enterStatement is the statement that applies action: it moves the
// request into state $2, takes the next number of its timeline and appends
// the state event. nargs counts the action's own arguments; the event's
// actor, message and detail follow them.
func enterStatement(action provision.Action, nargs int) string {
	set := "state = $2, event_seq = event_seq + 1, updated_at = now()"
	if more := enter[action]; more != "" {
		set += ",\n    " + more
	}
	return withStateEvent("UPDATE replications SET "+set+"\nWHERE id = $1", 3+nargs)
}

// withStateEvent wraps stmt, an INSERT or UPDATE of one request that also
// takes the next number of its timeline (event_seq), so that the same
// statement, one round trip and one row version, appends the request's
// state event and returns the request. The event's actor, message and
// detail are $n, $n+1 and $n+2.
func withStateEvent(stmt string, n int) string {
	return fmt.Sprintf(`WITH r AS (
%s
RETURNING %s, event_seq
), e AS (
    INSERT INTO replication_events (replication_id, seq, type, state, actor, message, detail)
    SELECT id, event_seq, 'state', state, $%d, $%d, $%d FROM r
)
SELECT %s FROM r`, stmt, replicationColumns, n, n+1, n+2, replicationColumns)
}

// change is one transition to apply.
type change struct {
	id     string
	action provision.Action
	actor  string
	// owner, when set, fences the change: it applies only while owner
	// holds the request's lease (provision.ErrLeaseLost otherwise).
	owner   string
	message string
	detail  []byte
	// args are the action's own arguments of its enter statement.
	args []any
}

const lockForTransition = `SELECT state, lease_owner FROM replications WHERE id = $1 FOR UPDATE`

// apply is the one way a request changes state. In tx it locks the row,
// checks the transition against provision.Transitions, writes the new
// state and its event (with its actor) in one statement and runs the
// hooks. A transition the lifecycle lacks answers *provision.StateError.
func (s *Store) apply(ctx context.Context, tx pgx.Tx, ch change) (provision.Change, error) {
	uid, err := uuid.Parse(ch.id)
	if err != nil {
		return provision.Change{}, provision.ErrNotFound
	}
	var (
		from  provision.State
		owner *string
	)
	err = tx.QueryRow(ctx, lockForTransition, uid).Scan(&from, &owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return provision.Change{}, provision.ErrNotFound
	}
	if err != nil {
		return provision.Change{}, fmt.Errorf("lock replication %s: %w", ch.id, err)
	}
	if ch.owner != "" && (owner == nil || *owner != ch.owner) {
		return provision.Change{}, provision.ErrLeaseLost
	}
	to, ok := provision.Next(from, ch.action)
	if !ok {
		return provision.Change{}, &provision.StateError{ID: ch.id, State: from, Action: string(ch.action)}
	}
	args := append(append([]any{uid, to}, ch.args...), ch.actor, ch.message, nullJSON(ch.detail))
	rows, err := tx.Query(ctx, enterStatement(ch.action, len(ch.args)), args...)
	if err != nil {
		return provision.Change{}, fmt.Errorf("%s replication %s: %w", ch.action, ch.id, err)
	}
	rs, err := collectReplications(rows)
	if err != nil {
		return provision.Change{}, fmt.Errorf("%s replication %s: %w", ch.action, ch.id, err)
	}
	c := provision.Change{Transition: provision.Transition{From: from, Action: ch.action, To: to}, Actor: ch.actor, Replication: rs[0]}
	return c, s.recorded(ctx, tx, c)
}

// recorded follows a transition whose statement appended its state event:
// the request's timeline grew, and the hooks run.
func (s *Store) recorded(ctx context.Context, tx pgx.Tx, c provision.Change) error {
	if err := grew(tx, c.Replication.ID); err != nil {
		return err
	}
	for _, h := range s.hooks {
		if err := h(ctx, tx, c); err != nil {
			return fmt.Errorf("%s replication %s: %w", c.Action, c.Replication.ID, err)
		}
	}
	return nil
}

// committed runs what follows a committed transition: observers, and
// waking workers when the request became runnable.
func (s *Store) committed(c provision.Change) {
	for _, fn := range s.after {
		fn(c)
	}
	switch c.To {
	case provision.StatePending, provision.StateRunning, provision.StateDeprovisioning:
		if c.Action != provision.ActionClaim {
			s.wake.Notify()
		}
	}
}

// applyNow applies one transition in a transaction of its own.
func (s *Store) applyNow(ctx context.Context, ch change) (provision.Replication, error) {
	var c provision.Change
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		c, err = s.apply(ctx, tx, ch)
		return err
	})
	if err != nil {
		return provision.Replication{}, err
	}
	s.committed(c)
	return c.Replication, nil
}

// txn is a transaction of inTx. It remembers whose timelines grew, so
// that the event streams following them are woken once it has committed,
// never before: a stream woken early would read nothing new and wait.
type txn struct {
	pgx.Tx
	grew map[string]struct{}
}

// inTx runs fn in a transaction, committing when it returns nil, then
// announces the events it appended. An error of an unreachable database
// is provision.ErrUnavailable.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return unavailable(s.runTx(ctx, fn))
}

func (s *Store) runTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	t := &txn{Tx: tx, grew: map[string]struct{}{}}
	if err := fn(t); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if len(t.grew) > 0 {
		s.events.Notify(slices.Collect(maps.Keys(t.grew))...)
	}
	return nil
}

// event is one timeline entry to append besides a state event, which the
// transition's own statement appends.
type event struct {
	typ     provision.EventType
	step    string
	actor   string
	message string
	detail  []byte
}

// insertEvent numbers the event from the request's own counter, which also
// serializes appends to one request's timeline.
const insertEvent = `WITH n AS (
    UPDATE replications SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq
)
INSERT INTO replication_events (replication_id, seq, type, step, actor, message, detail)
SELECT $1, n.event_seq, $2, $3, $4, $5, $6 FROM n`

// appendEvent adds one entry to a request's timeline, in a transaction of
// inTx, which announces it on eventsChannel once it has committed.
func appendEvent(ctx context.Context, tx pgx.Tx, id string, e event) error {
	if err := grew(tx, id); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, insertEvent, id, e.typ, e.step, e.actor, e.message, nullJSON(e.detail)); err != nil {
		return fmt.Errorf("append event to %s: %w", id, err)
	}
	return nil
}

// grew notes, in a transaction of inTx, that request id's timeline grew, so
// that the streams following it are woken once the transaction commits.
func grew(tx pgx.Tx, id string) error {
	t, ok := tx.(*txn)
	if !ok {
		// Every transaction of the store is begun by inTx; an event written
		// elsewhere would never wake the streams following the request.
		return fmt.Errorf("append event to %s: not in a transaction of the store", id)
	}
	t.grew[canonicalID(id)] = struct{}{}
	return nil
}

// canonicalID spells a request id the way the database returns it, so
// that an id given in capitals names the same subscribers; what is not a
// UUID is kept as it is.
func canonicalID(id string) string {
	if u, err := uuid.Parse(id); err == nil {
		return u.String()
	}
	return id
}
