package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Dev mode keeps its in-memory AWS in the database of its requests, as one
// JSON snapshot that each save replaces.
const (
	selectDevCloud = `SELECT snapshot FROM dev_cloud`
	upsertDevCloud = `INSERT INTO dev_cloud (id, snapshot, saved_at) VALUES (true, $1, now())
ON CONFLICT (id) DO UPDATE SET snapshot = EXCLUDED.snapshot, saved_at = EXCLUDED.saved_at`
	// asyncCommit spares a save the wait for its WAL to reach the disk.
	// That cannot leave the snapshot older than the request records: a
	// record that depends on a save is written after the save committed,
	// and its own synchronous commit flushes the WAL up to itself, the
	// save's commit included (PostgreSQL documentation, "Asynchronous
	// Commit"). A crash of Postgres may lose only saves that no record
	// written since depends on.
	asyncCommit = `SET LOCAL synchronous_commit = off`
)

// LoadDevCloud returns the dev cloud's snapshot as SaveDevCloud last stored
// it, or nil when none was stored.
func (s *Store) LoadDevCloud(ctx context.Context) ([]byte, error) {
	var snapshot []byte
	err := s.pool.QueryRow(ctx, selectDevCloud).Scan(&snapshot)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load the dev cloud: %w", err)
	}
	return snapshot, nil
}

// SaveDevCloud stores snapshot, a JSON document, in place of the dev
// cloud's previous one.
func (s *Store) SaveDevCloud(ctx context.Context, snapshot []byte) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, asyncCommit); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, upsertDevCloud, snapshot)
		return err
	})
	if err != nil {
		return fmt.Errorf("save the dev cloud (%d bytes): %w", len(snapshot), err)
	}
	return nil
}
