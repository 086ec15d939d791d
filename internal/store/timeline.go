package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/provision"
)

const insertEvent = `INSERT INTO replication_events (replication_id, type, state, step, message, detail)
VALUES ($1, $2, $3, $4, $5, $6)`

// appendEvent adds one entry to a request's timeline.
func appendEvent(ctx context.Context, q querier, id, typ string, state provision.State, step, message string, detail []byte) error {
	var st *string
	if state != "" {
		s := string(state)
		st = &s
	}
	if _, err := q.Exec(ctx, insertEvent, id, typ, st, step, message, detail); err != nil {
		return fmt.Errorf("append event to %s: %w", id, err)
	}
	return nil
}

const selectSteps = `SELECT phase, name, status, attempts, started_at, finished_at, changed, before, after, error
FROM replication_steps WHERE replication_id = $1
ORDER BY CASE phase WHEN 'provision' THEN 0 ELSE 1 END, COALESCE(started_at, updated_at), name`

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

// Steps returns every recorded step of a request, provisioning first, in the
// order they started.
func (s *Store) Steps(ctx context.Context, id string) ([]provision.Step, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return nil, provision.ErrNotFound
	}
	rows, err := s.pool.Query(ctx, selectSteps, uid)
	if err != nil {
		return nil, fmt.Errorf("list steps of %s: %w", id, err)
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[stepRow])
	if err != nil {
		return nil, fmt.Errorf("list steps of %s: %w", id, err)
	}
	if len(rs) == 0 {
		// Nothing listed: tell an unknown request from one with none yet.
		if _, err := s.Get(ctx, id); err != nil {
			return nil, err
		}
	}
	out := make([]provision.Step, len(rs))
	for i, r := range rs {
		out[i] = provision.Step{
			Phase: r.Phase, Name: r.Name, Status: r.Status, Attempts: r.Attempts,
			StartedAt: r.StartedAt, FinishedAt: r.FinishedAt, Changed: r.Changed,
			Before: r.Before, After: r.After, Error: r.Error,
		}
	}
	return out, nil
}

const selectEvents = `SELECT id, at, type, COALESCE(state::text, '') AS state, step, message, detail
FROM replication_events WHERE replication_id = $1 AND id > $2
ORDER BY id`

type eventRow struct {
	ID      int64
	At      time.Time
	Type    string
	State   string
	Step    string
	Message string
	Detail  []byte
}

// Events returns a request's timeline entries after the event with id after
// (0 for all), oldest first.
func (s *Store) Events(ctx context.Context, id string, after int64) ([]provision.Event, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return nil, provision.ErrNotFound
	}
	rows, err := s.pool.Query(ctx, selectEvents, uid, after)
	if err != nil {
		return nil, fmt.Errorf("list events of %s: %w", id, err)
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[eventRow])
	if err != nil {
		return nil, fmt.Errorf("list events of %s: %w", id, err)
	}
	if len(rs) == 0 {
		// Nothing listed: tell an unknown request from one with none yet.
		if _, err := s.Get(ctx, id); err != nil {
			return nil, err
		}
	}
	out := make([]provision.Event, len(rs))
	for i, r := range rs {
		out[i] = provision.Event{
			ID: r.ID, At: r.At, Type: r.Type, State: provision.State(r.State),
			Step: r.Step, Message: r.Message, Detail: r.Detail,
		}
	}
	return out, nil
}
