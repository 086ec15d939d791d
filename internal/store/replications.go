package store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// replicationColumns is the explicit column list every replication query returns.
const replicationColumns = `id, state, source_account_id, source_region, source_bucket, source_kms_key_arn,
	destination_account_id, destination_region, destination_bucket, destination_kms_key_arn,
	rule_prefix, delete_marker_replication, replica_modifications, storage_class, replication_time_control,
	enable_versioning, verify, ticket, callback_url, requested_by, phase, cancel_requested, current_step,
	attempt, last_error, created_at, updated_at, finished_at`

// replicationColumnsOf qualifies the column list with a table alias, for
// UPDATE … FROM, where bare names would be ambiguous.
func replicationColumnsOf(alias string) string {
	cols := strings.Split(replicationColumns, ",")
	for i, c := range cols {
		cols[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// replicationRow is one row of replications as the queries return it.
type replicationRow struct {
	ID                      uuid.UUID
	State                   string
	SourceAccountID         string
	SourceRegion            string
	SourceBucket            string
	SourceKMSKeyARN         string `db:"source_kms_key_arn"`
	DestinationAccountID    string
	DestinationRegion       string
	DestinationBucket       string
	DestinationKMSKeyARN    string `db:"destination_kms_key_arn"`
	RulePrefix              string
	DeleteMarkerReplication bool
	ReplicaModifications    bool
	StorageClass            string
	ReplicationTimeControl  bool
	EnableVersioning        bool
	Verify                  bool
	Ticket                  string
	CallbackURL             string `db:"callback_url"`
	RequestedBy             string
	Phase                   string
	CancelRequested         bool
	CurrentStep             string
	Attempt                 int
	LastError               []byte
	CreatedAt               time.Time
	UpdatedAt               time.Time
	FinishedAt              *time.Time
}

func (r replicationRow) domain() provision.Replication {
	return provision.Replication{
		ID: r.ID.String(),
		Spec: provision.Spec{
			Source: provision.Side{
				AccountID: r.SourceAccountID, Region: r.SourceRegion,
				Bucket: r.SourceBucket, KMSKeyARN: r.SourceKMSKeyARN,
			},
			Destination: provision.Side{
				AccountID: r.DestinationAccountID, Region: r.DestinationRegion,
				Bucket: r.DestinationBucket, KMSKeyARN: r.DestinationKMSKeyARN,
			},
			Rule: provision.Rule{
				Prefix:                  r.RulePrefix,
				DeleteMarkerReplication: r.DeleteMarkerReplication,
				ReplicaModifications:    r.ReplicaModifications,
				StorageClass:            r.StorageClass,
				ReplicationTimeControl:  r.ReplicationTimeControl,
			},
			EnableVersioning: r.EnableVersioning,
			Verify:           r.Verify,
			Ticket:           r.Ticket,
			CallbackURL:      r.CallbackURL,
		},
		State:           provision.State(r.State),
		Phase:           provision.Phase(r.Phase),
		CancelRequested: r.CancelRequested,
		CurrentStep:     r.CurrentStep,
		Attempt:         r.Attempt,
		LastError:       json.RawMessage(r.LastError),
		RequestedBy:     r.RequestedBy,
		CreatedAt:       r.CreatedAt,
		UpdatedAt:       r.UpdatedAt,
		FinishedAt:      r.FinishedAt,
	}
}

func collectReplications(rows pgx.Rows) ([]provision.Replication, error) {
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[replicationRow])
	if err != nil {
		return nil, err
	}
	out := make([]provision.Replication, len(rs))
	for i, r := range rs {
		out[i] = r.domain()
	}
	return out, nil
}

const insertIdempotencyKey = `INSERT INTO idempotency_keys (caller, key, request_hash)
VALUES ($1, $2, $3) ON CONFLICT (caller, key) DO NOTHING`

const selectIdempotencyKey = `SELECT request_hash, response FROM idempotency_keys WHERE caller = $1 AND key = $2`

const insertReplication = `INSERT INTO replications (id, source_account_id, source_region, source_bucket, source_kms_key_arn,
	destination_account_id, destination_region, destination_bucket, destination_kms_key_arn,
	rule_prefix, delete_marker_replication, replica_modifications, storage_class, replication_time_control,
	enable_versioning, verify, ticket, callback_url, requested_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
RETURNING ` + replicationColumns

const updateIdempotencyKey = `UPDATE idempotency_keys SET replication_id = $3, response = $4 WHERE caller = $1 AND key = $2`

const selectLiveRoute = `SELECT id FROM replications
WHERE source_bucket = $1 AND destination_bucket = $2 AND rule_prefix = $3
  AND state NOT IN ('cancelled', 'deprovisioned')`

// notifyChannel is the LISTEN/NOTIFY channel that wakes idle workers.
const notifyChannel = "bucketbridge_work"

// Create stores a new request in state pending. With an idempotency key it
// returns the first answer for that key instead (replayed = true), or
// provision.ErrIdempotencyKeyReused when the body differs. Two identical
// requests arriving at once create one row: the second waits on the key's
// unique index until the first commits, then replays it.
func (s *Store) Create(ctx context.Context, in provision.NewReplication) (r provision.Replication, replayed bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return r, false, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

	if in.IdempotencyKey != "" {
		tag, err := tx.Exec(ctx, insertIdempotencyKey, in.RequestedBy, in.IdempotencyKey, in.RequestHash)
		if err != nil {
			return r, false, fmt.Errorf("claim idempotency key: %w", err)
		}
		if tag.RowsAffected() == 0 {
			r, err := replay(ctx, tx, in)
			return r, err == nil, err
		}
	}

	sp := in.Spec
	rows, err := tx.Query(ctx, insertReplication, uuid.Must(uuid.NewV7()),
		sp.Source.AccountID, sp.Source.Region, sp.Source.Bucket, sp.Source.KMSKeyARN,
		sp.Destination.AccountID, sp.Destination.Region, sp.Destination.Bucket, sp.Destination.KMSKeyARN,
		sp.Rule.Prefix, sp.Rule.DeleteMarkerReplication, sp.Rule.ReplicaModifications, sp.Rule.StorageClass,
		sp.Rule.ReplicationTimeControl, sp.EnableVersioning, sp.Verify, sp.Ticket, sp.CallbackURL, in.RequestedBy)
	if err != nil {
		return r, false, fmt.Errorf("insert replication: %w", err)
	}
	created, err := collectReplications(rows)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "replications_one_live_per_route" {
			tx.Rollback(ctx) //nolint:errcheck // the transaction is aborted anyway
			return r, false, s.duplicate(ctx, sp)
		}
		return r, false, fmt.Errorf("insert replication: %w", err)
	}
	r = created[0]

	if err := appendEvent(ctx, tx, r.ID, "state", r.State, "", "request accepted", nil); err != nil {
		return r, false, err
	}
	if in.IdempotencyKey != "" {
		snapshot, err := json.Marshal(r)
		if err != nil {
			return r, false, fmt.Errorf("encode idempotent response: %w", err)
		}
		if _, err := tx.Exec(ctx, updateIdempotencyKey, in.RequestedBy, in.IdempotencyKey, r.ID, snapshot); err != nil {
			return r, false, fmt.Errorf("remember idempotency key: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", notifyChannel, r.ID); err != nil {
		return r, false, fmt.Errorf("notify workers: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return r, false, fmt.Errorf("commit: %w", err)
	}
	return r, false, nil
}

// replay answers a request whose idempotency key is already taken.
func replay(ctx context.Context, tx pgx.Tx, in provision.NewReplication) (provision.Replication, error) {
	var (
		r        provision.Replication
		hash     []byte
		response []byte
	)
	if err := tx.QueryRow(ctx, selectIdempotencyKey, in.RequestedBy, in.IdempotencyKey).Scan(&hash, &response); err != nil {
		return r, fmt.Errorf("read idempotency key: %w", err)
	}
	if !bytes.Equal(hash, in.RequestHash) {
		return r, provision.ErrIdempotencyKeyReused
	}
	if err := json.Unmarshal(response, &r); err != nil {
		return r, fmt.Errorf("decode idempotent response: %w", err)
	}
	return r, nil
}

// duplicate builds the error for a request whose route is already live.
func (s *Store) duplicate(ctx context.Context, sp provision.Spec) error {
	var id uuid.UUID
	err := s.pool.QueryRow(ctx, selectLiveRoute, sp.Source.Bucket, sp.Destination.Bucket, sp.Rule.Prefix).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		// The live request ended between our insert and this read.
		return &provision.DuplicateError{}
	}
	if err != nil {
		return fmt.Errorf("find live replication: %w", err)
	}
	return &provision.DuplicateError{ExistingID: id.String()}
}

const selectReplication = `SELECT ` + replicationColumns + ` FROM replications WHERE id = $1`

// Get returns one replication, or provision.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (provision.Replication, error) {
	return getReplication(ctx, s.pool, id)
}

func getReplication(ctx context.Context, q querier, id string) (provision.Replication, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return provision.Replication{}, provision.ErrNotFound
	}
	rows, err := q.Query(ctx, selectReplication, uid)
	if err != nil {
		return provision.Replication{}, fmt.Errorf("get replication %s: %w", id, err)
	}
	rs, err := collectReplications(rows)
	if err != nil {
		return provision.Replication{}, fmt.Errorf("get replication %s: %w", id, err)
	}
	if len(rs) == 0 {
		return provision.Replication{}, provision.ErrNotFound
	}
	return rs[0], nil
}

// querier is what pgxpool.Pool and pgx.Tx have in common.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

const listReplications = `SELECT ` + replicationColumns + ` FROM replications
WHERE ($1 = '' OR state = $1::replication_state)
  AND ($2 = '' OR source_account_id = $2 OR destination_account_id = $2)
  AND ($3 = '' OR ticket = $3)
  AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $6`

// List returns replications newest first. A page's Next cursor continues
// after its last item, so rows inserted meanwhile neither repeat nor shift
// later pages.
func (s *Store) List(ctx context.Context, f provision.Filter) (provision.Page, error) {
	var (
		afterTime *time.Time
		afterID   uuid.UUID
	)
	if f.After != "" {
		t, id, err := decodeCursor(f.After)
		if err != nil {
			return provision.Page{}, err
		}
		afterTime, afterID = &t, id
	}
	rows, err := s.pool.Query(ctx, listReplications, string(f.State), f.AccountID, f.Ticket, afterTime, afterID, f.Limit+1)
	if err != nil {
		return provision.Page{}, fmt.Errorf("list replications: %w", err)
	}
	items, err := collectReplications(rows)
	if err != nil {
		return provision.Page{}, fmt.Errorf("list replications: %w", err)
	}
	page := provision.Page{Items: items}
	if len(items) > f.Limit {
		page.Items = items[:f.Limit]
		last := page.Items[f.Limit-1]
		page.Next = encodeCursor(last.CreatedAt, last.ID)
	}
	return page, nil
}

func encodeCursor(t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(t.UnixMicro(), 10) + "_" + id))
}

// Cursor times are bounded to the years 1 through 9999 (in microseconds
// since the Unix epoch): every row's created_at lies well inside, and
// Postgres refuses timestamps outside its own range (4713 BC to 294276 AD)
// with an error that is not the caller's to see.
const (
	minCursorMicros = -62135596800000000 // 0001-01-01T00:00:00Z
	maxCursorMicros = 253402300799999999 // 9999-12-31T23:59:59.999999Z
)

// decodeCursor reads a position written by encodeCursor. Anything else,
// including a forged position that would decode to a time Postgres cannot
// hold or an alternative spelling of a valid one, is ErrBadCursor.
func decodeCursor(c string) (time.Time, uuid.UUID, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, uuid.UUID{}, provision.ErrBadCursor
	}
	micros, id, ok := strings.Cut(string(raw), "_")
	if !ok {
		return time.Time{}, uuid.UUID{}, provision.ErrBadCursor
	}
	n, err := strconv.ParseInt(micros, 10, 64)
	if err != nil || n < minCursorMicros || n > maxCursorMicros {
		return time.Time{}, uuid.UUID{}, provision.ErrBadCursor
	}
	uid, err := uuid.Parse(id)
	if err != nil {
		return time.Time{}, uuid.UUID{}, provision.ErrBadCursor
	}
	t := time.UnixMicro(n)
	// Only the spelling encodeCursor writes is accepted, so a cursor names
	// one position and nothing else ("+1", "01", braces around the id …).
	if encodeCursor(t, uid.String()) != c {
		return time.Time{}, uuid.UUID{}, provision.ErrBadCursor
	}
	return t, uid, nil
}

// cancel stops at once a request no worker holds (pending, or running but
// waiting for its next attempt), and asks the worker holding a running
// request to stop after its current step.
var cancel = `WITH target AS (
    SELECT id, (state = 'pending' OR lease_until IS NULL OR lease_until < now()) AS idle
    FROM replications WHERE id = $1 AND state IN ('pending', 'running')
    FOR UPDATE
)
UPDATE replications r SET
    state = CASE WHEN target.idle THEN 'cancelled'::replication_state ELSE r.state END,
    finished_at = CASE WHEN target.idle THEN now() END,
    cancel_requested = NOT target.idle,
    lease_owner = CASE WHEN target.idle THEN NULL ELSE r.lease_owner END,
    updated_at = now()
FROM target WHERE r.id = target.id
RETURNING ` + replicationColumnsOf("r")

// Cancel cancels a pending request, or asks for a running one to stop
// after its current step (CancelRequested). Any other state answers
// *provision.StateError.
func (s *Store) Cancel(ctx context.Context, id string) (provision.Replication, error) {
	return s.transition(ctx, id, "cancel", cancel, func(r provision.Replication) string {
		if r.State == provision.StateCancelled {
			return "cancelled by caller"
		}
		return "cancel requested; stopping after the current step"
	})
}

// retry resumes a failed request in the phase it failed in, from its first
// unfinished step, with a fresh deadline.
const retry = `UPDATE replications SET
    state = CASE WHEN phase = 'deprovision' THEN 'deprovisioning'::replication_state ELSE 'running'::replication_state END,
    finished_at = NULL, next_run_at = now(), phase_started_at = now(), attempt = 0, updated_at = now()
WHERE id = $1 AND state = 'failed'
RETURNING ` + replicationColumns

// Retry resumes a failed request from its failed step.
func (s *Store) Retry(ctx context.Context, id string) (provision.Replication, error) {
	return s.transition(ctx, id, "retry", retry, func(provision.Replication) string { return "retry requested" })
}

// deprovision starts removing what a finished request added. A cancelled
// request may have provisioned part of its documents before it stopped.
const deprovision = `UPDATE replications SET
    state = 'deprovisioning', phase = 'deprovision', finished_at = NULL, next_run_at = now(),
    phase_started_at = now(), attempt = 0, last_error = NULL, current_step = '', updated_at = now()
WHERE id = $1 AND state IN ('succeeded', 'failed', 'cancelled') AND NOT (state = 'failed' AND phase = 'deprovision')
RETURNING ` + replicationColumns

// Deprovision moves a succeeded, failed or cancelled request to
// deprovisioning. A request already deprovisioning or deprovisioned is
// returned unchanged, so the call is idempotent; a request whose removal
// failed resumes it (as Retry does).
func (s *Store) Deprovision(ctx context.Context, id string) (provision.Replication, error) {
	r, err := s.Get(ctx, id)
	if err != nil {
		return r, err
	}
	switch {
	case r.State == provision.StateDeprovisioning || r.State == provision.StateDeprovisioned:
		return r, nil
	case r.State == provision.StateFailed && r.Phase == provision.PhaseDeprovision:
		return s.Retry(ctx, id)
	}
	return s.transition(ctx, id, "deprovision", deprovision, func(provision.Replication) string { return "deprovisioning requested" })
}

// transition runs one state-changing UPDATE on a request and records it in
// the timeline; a request in a state the UPDATE does not accept answers
// *provision.StateError naming the action.
func (s *Store) transition(ctx context.Context, id, action, sql string, message func(provision.Replication) string) (provision.Replication, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return provision.Replication{}, provision.ErrNotFound
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return provision.Replication{}, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	rows, err := tx.Query(ctx, sql, uid)
	if err != nil {
		return provision.Replication{}, fmt.Errorf("%s replication %s: %w", action, id, err)
	}
	rs, err := collectReplications(rows)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "replications_one_live_per_route" {
		// A cancelled request's route was taken by a newer request, whose
		// documents would share names with this one's.
		tx.Rollback(ctx) //nolint:errcheck // the transaction is aborted anyway
		r, gerr := s.Get(ctx, id)
		if gerr != nil {
			return provision.Replication{}, gerr
		}
		return provision.Replication{}, s.duplicate(ctx, r.Spec)
	}
	if err != nil {
		return provision.Replication{}, fmt.Errorf("%s replication %s: %w", action, id, err)
	}
	if len(rs) == 0 {
		r, err := getReplication(ctx, tx, id)
		if err != nil {
			return provision.Replication{}, err
		}
		return provision.Replication{}, &provision.StateError{ID: id, State: r.State, Action: action}
	}
	r := rs[0]
	if err := appendEvent(ctx, tx, r.ID, "state", r.State, "", message(r), nil); err != nil {
		return provision.Replication{}, err
	}
	if r.State == provision.StateRunning || r.State == provision.StateDeprovisioning {
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", notifyChannel, r.ID); err != nil {
			return provision.Replication{}, fmt.Errorf("notify workers: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return provision.Replication{}, fmt.Errorf("commit: %w", err)
	}
	return r, nil
}

// CountByState returns how many requests are in each state.
func (s *Store) CountByState(ctx context.Context) (map[provision.State]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT state::text, count(*) FROM replications GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count replications: %w", err)
	}
	out := map[provision.State]int{}
	var (
		state string
		n     int
	)
	_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error {
		out[provision.State(state)] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count replications: %w", err)
	}
	return out, nil
}
