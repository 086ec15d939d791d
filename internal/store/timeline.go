package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// selectSteps lists a request's steps in the order of the step tables ($2
// provisioning's names, $3 removal's), so that the steps of one group,
// which run at once, always come in the same order.
const selectSteps = `SELECT phase, name, status, attempts, started_at, finished_at, changed, before, after, error
FROM replication_steps WHERE replication_id = $1
ORDER BY CASE phase WHEN 'provision' THEN 0 ELSE 1 END,
    CASE phase WHEN 'provision' THEN array_position($2::text[], name) ELSE array_position($3::text[], name) END,
    COALESCE(started_at, updated_at), name`

type stepRow struct {
	Phase      string
	Name       string
	Status     string
	Attempts   int
	StartedAt  *time.Time
	FinishedAt *time.Time
	Changed    bool
	Before     []byte
	After      []byte
	Error      []byte
}

// Steps returns every recorded step of a request, provisioning first, each
// phase in the order of its step table.
func (s *Store) Steps(ctx context.Context, id string) ([]provision.Step, error) {
	rs, err := timeline(ctx, s, id, "steps", selectSteps, pgx.RowToStructByName[stepRow],
		stepNames(provision.ProvisionSteps()), stepNames(provision.DeprovisionSteps()))
	out := make([]provision.Step, len(rs))
	for i, r := range rs {
		out[i] = provision.Step{
			Phase: provision.Phase(r.Phase), Name: r.Name, Status: provision.StepStatus(r.Status), Attempts: r.Attempts,
			StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, Changed: r.Changed,
			Before: r.Before, After: r.After, Error: r.Error,
		}
	}
	return out, err
}

func stepNames(table []provision.StepDef) []string {
	names := make([]string, len(table))
	for i, d := range table {
		names[i] = d.Name
	}
	return names
}

const selectEvents = `SELECT seq, at, type, COALESCE(state::text, '') AS state, step, actor, message, detail
FROM replication_events WHERE replication_id = $1 AND seq > $2
ORDER BY seq`

type eventRow struct {
	Seq     int64
	At      time.Time
	Type    string
	State   string
	Step    string
	Actor   string
	Message string
	Detail  []byte
}

// Events returns a request's timeline entries after the one numbered after
// (0 for all), oldest first.
func (s *Store) Events(ctx context.Context, id string, after int64) ([]provision.Event, error) {
	rs, err := timeline(ctx, s, id, "events", selectEvents, pgx.RowToStructByName[eventRow], after)
	out := make([]provision.Event, len(rs))
	for i, r := range rs {
		out[i] = provision.Event{
			Seq: r.Seq, At: r.At, Type: provision.EventType(r.Type), State: provision.State(r.State),
			Step: r.Step, Actor: r.Actor, Message: r.Message, Detail: r.Detail,
		}
	}
	return out, err
}

// timeline lists the rows of one of a request's timelines (its steps or
// its events). An empty list reads the request itself, to tell an unknown
// id (provision.ErrNotFound) from a request with nothing listed yet.
func timeline[T any](ctx context.Context, s *Store, id, what, sql string, scan pgx.RowToFunc[T], args ...any) ([]T, error) {
	rs, err := readTimeline(ctx, s, id, what, sql, scan, args...)
	return rs, unavailable(err)
}

func readTimeline[T any](ctx context.Context, s *Store, id, what, sql string, scan pgx.RowToFunc[T], args ...any) ([]T, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return nil, provision.ErrNotFound
	}
	rows, err := s.pool.Query(ctx, sql, append([]any{uid}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("list %s of %s: %w", what, id, err)
	}
	rs, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, fmt.Errorf("list %s of %s: %w", what, id, err)
	}
	if len(rs) == 0 {
		if _, err := s.Get(ctx, id); err != nil {
			return nil, err
		}
	}
	return rs, nil
}
