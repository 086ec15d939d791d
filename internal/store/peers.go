package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/provision"
)

const selectPeers = `SELECT ` + replicationColumns + `, facts FROM replications
WHERE state = ANY($1::replication_state[])
  AND ($2 = '' OR source_bucket = $2)
  AND ($3 = '' OR destination_bucket = $3)
ORDER BY created_at, id`

type peerRow struct {
	replicationRow
	Facts []byte
}

// Peers lists the requests in provision.HoldingStates (and
// provision.LeavingStates with f.Leaving) from f's source bucket or into its
// destination bucket.
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
	rows, err := s.pool.Query(ctx, selectPeers, states, f.SourceBucket, f.DestinationBucket)
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
