package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// selectPeers is the query of the requests in states that f selects.
// Each filter field makes its own statement rather than one statement
// whose empty fields match anything: Postgres could plan that one only
// for the values of each call, and planned it again on every call, a
// cost that exceeded running it; a statement per field keeps one plan.
func selectPeers(states []string, f provision.PeerFilter) (string, []any) {
	q := "SELECT " + replicationColumns + ", facts FROM replications\nWHERE state = ANY($1::replication_state[])"
	args := []any{states}
	for _, c := range []struct{ column, value string }{
		{"source_bucket", f.SourceBucket}, {"destination_bucket", f.DestinationBucket},
		{"source_kms_key_arn", f.SourceKey}, {"destination_kms_key_arn", f.DestinationKey},
	} {
		if c.value != "" {
			args = append(args, c.value)
			q += fmt.Sprintf(" AND %s = $%d", c.column, len(args))
		}
	}
	return q + "\nORDER BY created_at, id", args
}

type peerRow struct {
	replicationRow
	Facts []byte
}

// Peers lists the requests in provision.HoldingStates (and
// provision.LeavingStates with f.Leaving) that f selects.
func (s *Store) Peers(ctx context.Context, f provision.PeerFilter) ([]provision.Peer, error) {
	var states []string
	for _, st := range provision.HoldingStates {
		states = append(states, string(st))
	}
	if f.Leaving {
		for _, st := range provision.LeavingStates {
			states = append(states, string(st))
		}
	}
	q, args := selectPeers(states, f)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list peers of %+v: %w", f, err)
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[peerRow])
	if err != nil {
		return nil, fmt.Errorf("list peers of %+v: %w", f, err)
	}
	out := make([]provision.Peer, len(rs))
	for i, r := range rs {
		out[i].Replication = r.domain()
		if err := json.Unmarshal(r.Facts, &out[i].Facts); err != nil {
			return nil, fmt.Errorf("decode facts of %s: %w", r.ID, err)
		}
	}
	return out, nil
}

// Granted returns the roles bucketbridge last wrote into its statements of
// document, who wrote them and when; nil roles when it has no record.
func (s *Store) Granted(ctx context.Context, document string) (provision.Grant, error) {
	var g provision.Grant
	err := s.pool.QueryRow(ctx, `SELECT roles, written_by::text, written_at FROM document_grants WHERE document = $1`, document).
		Scan(&g.Roles, &g.WrittenBy, &g.WrittenAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return provision.Grant{}, nil
	}
	if err != nil {
		return provision.Grant{}, fmt.Errorf("read the grants of %s: %w", document, err)
	}
	return g, nil
}

const recordGranted = `INSERT INTO document_grants (document, roles, written_by)
SELECT d.key, ARRAY(SELECT jsonb_array_elements_text(d.value)), $2 FROM jsonb_each($1::jsonb) d
ON CONFLICT (document) DO UPDATE SET roles = excluded.roles, written_by = excluded.written_by, written_at = now()`

// RecordGranted records, for each document, the roles request by just
// wrote into bucketbridge's statements of it, all in one statement.
func (s *Store) RecordGranted(ctx context.Context, by string, documents map[string][]string) error {
	if len(documents) == 0 {
		return nil
	}
	rows := make(map[string][]string, len(documents))
	for d, roles := range documents {
		rows[d] = append([]string{}, roles...)
	}
	encoded, err := json.Marshal(rows)
	if err != nil {
		return fmt.Errorf("record grants: %w", err)
	}
	first := slices.Min(slices.Collect(maps.Keys(documents)))
	err = s.records.do(ctx, first, recordGranted, []any{encoded, by}, func(br pgx.BatchResults) error {
		_, err := br.Exec()
		return err
	})
	if err != nil {
		return fmt.Errorf("record the grants of %d documents: %w", len(documents), err)
	}
	return nil
}
