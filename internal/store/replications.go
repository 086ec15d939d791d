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
	enable_versioning, set_source_default_encryption, verify, ticket, callback_url, requested_by, cancel_requested, current_step,
	attempt, last_error, warnings, approved_by, approved_at, rejected_by, rejected_at, rejection_reason,
	created_at, updated_at, finished_at`

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
	// SetSourceDefaultEncryption is the request's option of that name.
	SetSourceDefaultEncryption bool
	Verify                     bool
	Ticket                     string
	CallbackURL                string `db:"callback_url"`
	RequestedBy                string
	CancelRequested            bool
	CurrentStep                string
	Attempt                    int
	LastError                  []byte
	// Warnings is a JSON array of provision.Warning.
	Warnings        []byte
	ApprovedBy      string
	ApprovedAt      *time.Time
	RejectedBy      string
	RejectedAt      *time.Time
	RejectionReason string
	CreatedAt       time.Time
	UpdatedAt       time.Time
	FinishedAt      *time.Time
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
			EnableVersioning:           r.EnableVersioning,
			SetSourceDefaultEncryption: r.SetSourceDefaultEncryption,
			Verify:                     r.Verify,
			Ticket:                     r.Ticket,
			CallbackURL:                r.CallbackURL,
		},
		State:           provision.State(r.State),
		Phase:           provision.State(r.State).Phase(),
		CancelRequested: r.CancelRequested,
		CurrentStep:     r.CurrentStep,
		Attempt:         r.Attempt,
		LastError:       json.RawMessage(r.LastError),
		Warnings:        decodeWarnings(r.Warnings),
		RequestedBy:     r.RequestedBy,
		ApprovedBy:      r.ApprovedBy,
		ApprovedAt:      r.ApprovedAt,
		RejectedBy:      r.RejectedBy,
		RejectedAt:      r.RejectedAt,
		RejectionReason: r.RejectionReason,
		CreatedAt:       r.CreatedAt,
		UpdatedAt:       r.UpdatedAt,
		FinishedAt:      r.FinishedAt,
	}
}

// decodeWarnings reads the warnings column. The column holds only what
// FinishStep wrote, a JSON array of warnings (a CHECK keeps it an array), so
// an entry that does not decode can only be one written by a later version
// of bucketbridge with fields this one does not know, which are dropped.
func decodeWarnings(b []byte) []provision.Warning {
	var out []provision.Warning
	if err := json.Unmarshal(b, &out); err != nil {
		return nil
	}
	return out
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

// DefaultIdempotencyTTL is how long an Idempotency-Key is remembered after
// its first use unless KeepIdempotencyKeys says otherwise: 24 hours, the
// window the IETF draft's examples and the large payment APIs (Stripe's
// "keys are eligible to be removed after at least 24 hours") give a client
// to retry.
// https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/
// https://docs.stripe.com/api/idempotent_requests
const DefaultIdempotencyTTL = 24 * time.Hour

// KeepIdempotencyKeys sets how long an Idempotency-Key is remembered after
// its first use. An older key is forgotten: the next request with it is a
// new request, whatever its body. Call it before the store is used.
func (s *Store) KeepIdempotencyKeys(ttl time.Duration) { s.idempotencyTTL = ttl }

// keyCutoff is the first use at or before which a key is expired now.
func (s *Store) keyCutoff(now time.Time) time.Time { return now.Add(-s.idempotencyTTL) }

// claimIdempotencyKey takes caller $1's key $2 for the request hashing to
// $3, first used at $5: a new key, or an expired one (first used at or
// before $4), whose row is taken over afresh. A live key is left as it is
// and affects no row: the request is a retry, answered by replay. A retry
// racing the one taking an expired key over waits for its row, then finds
// it live and replays it, so one request is created, not two.
const claimIdempotencyKey = `INSERT INTO idempotency_keys (caller, key, request_hash, created_at)
VALUES ($1, $2, $3, $5)
ON CONFLICT (caller, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, replication_id = NULL,
    response_status = NULL, response_body = NULL, created_at = EXCLUDED.created_at
WHERE idempotency_keys.created_at <= $4`

// selectIdempotencyKey reads a live key ($3 is the cut-off).
const selectIdempotencyKey = `SELECT request_hash, replication_id, response_status, response_body FROM idempotency_keys
WHERE caller = $1 AND key = $2 AND created_at > $3`

// deleteExpiredKeys forgets at most $2 keys first used at or before $1.
// SKIP LOCKED leaves a key that a request is taking over to that request,
// and lets the replicas' janitors share the work.
const deleteExpiredKeys = `DELETE FROM idempotency_keys WHERE (caller, key) IN (
    SELECT caller, key FROM idempotency_keys WHERE created_at <= $1
    LIMIT $2 FOR UPDATE SKIP LOCKED)`

// ForgetExpiredIdempotencyKeys deletes at most limit expired keys, in one
// short statement, and returns how many it deleted. An expired key already
// acts as new; this only keeps the table from growing for ever.
func (s *Store) ForgetExpiredIdempotencyKeys(ctx context.Context, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, deleteExpiredKeys, s.keyCutoff(s.now()), limit)
	if err != nil {
		return 0, unavailable(fmt.Errorf("forget expired idempotency keys: %w", err))
	}
	return tag.RowsAffected(), nil
}

// insertReplication stores a new request and appends its first event,
// number 1, whose actor, message and detail follow the row's 22 values.
var insertReplication = withStateEvent(`INSERT INTO replications (id, state, source_account_id, source_region, source_bucket, source_kms_key_arn,
	destination_account_id, destination_region, destination_bucket, destination_kms_key_arn,
	rule_prefix, delete_marker_replication, replica_modifications, storage_class, replication_time_control,
	enable_versioning, verify, ticket, callback_url, requested_by, approved_by, approved_at, set_source_default_encryption,
	event_seq)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20,
	$21, CASE WHEN $21 = '' THEN NULL ELSE now() END, $22, 1)`, 23)

const updateIdempotencyKey = `UPDATE idempotency_keys SET replication_id = $3, response_status = $4, response_body = $5
WHERE caller = $1 AND key = $2`

// selectLiveRoute finds the request holding a route; its state condition is
// the predicate of the unique index replications_one_live_per_route.
const selectLiveRoute = `SELECT id, source_account_id, destination_account_id FROM replications
WHERE source_bucket = $1 AND destination_bucket = $2 AND rule_prefix = $3
  AND state NOT IN ('cancelled', 'rejected', 'deprovisioned')`

// Create stores a new request: awaiting approval when in.NeedsApproval,
// else pending with its requester as approver. With an idempotency key it returns instead the first answer for that
// key (replay), or provision.ErrIdempotencyKeyReused when the body differs.
// Two identical requests arriving at once create one row: the second waits
// on the key's unique index until the first commits, then replays it.
func (s *Store) Create(ctx context.Context, in provision.NewReplication) (r provision.Replication, replay *provision.Response, err error) {
	var c provision.Change
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if in.IdempotencyKey != "" {
			now := s.now()
			tag, err := tx.Exec(ctx, claimIdempotencyKey, in.RequestedBy, in.IdempotencyKey, in.RequestHash,
				s.keyCutoff(now), now)
			if err != nil {
				return fmt.Errorf("claim idempotency key: %w", err)
			}
			if tag.RowsAffected() == 0 {
				// The key is live, and this transaction holds its row.
				replay, err = replayAnswer(ctx, tx, in, s.keyCutoff(now))
				return err
			}
		}
		c, err = s.insert(ctx, tx, in)
		if err != nil {
			return err
		}
		if in.IdempotencyKey == "" {
			return nil
		}
		answer, err := in.Answer(c.Replication)
		if err != nil {
			return fmt.Errorf("render the answer to remember: %w", err)
		}
		if _, err := tx.Exec(ctx, updateIdempotencyKey, in.RequestedBy, in.IdempotencyKey, c.Replication.ID, answer.Status, answer.Body); err != nil {
			return fmt.Errorf("remember idempotency key: %w", err)
		}
		return nil
	})
	if isLiveRouteTaken(err) {
		return r, nil, s.duplicate(ctx, in.Spec)
	}
	if err != nil || replay != nil {
		return r, replay, err
	}
	s.committed(c)
	return c.Replication, nil, nil
}

// insert writes a new request and applies its creation in tx.
func (s *Store) insert(ctx context.Context, tx pgx.Tx, in provision.NewReplication) (provision.Change, error) {
	action, approvedBy, message := provision.ActionCreate, in.RequestedBy, "request accepted"
	if in.NeedsApproval {
		action, approvedBy = provision.ActionSubmit, ""
		message = "request accepted; waiting for an approver of destination account " + in.Spec.Destination.AccountID
	}
	state, ok := provision.Next("", action)
	if !ok {
		return provision.Change{}, fmt.Errorf("the lifecycle has no state to %s requests in", action)
	}
	sp := in.Spec
	rows, err := tx.Query(ctx, insertReplication, uuid.Must(uuid.NewV7()), state,
		sp.Source.AccountID, sp.Source.Region, sp.Source.Bucket, sp.Source.KMSKeyARN,
		sp.Destination.AccountID, sp.Destination.Region, sp.Destination.Bucket, sp.Destination.KMSKeyARN,
		sp.Rule.Prefix, sp.Rule.DeleteMarkerReplication, sp.Rule.ReplicaModifications, sp.Rule.StorageClass,
		sp.Rule.ReplicationTimeControl, sp.EnableVersioning, sp.Verify, sp.Ticket, sp.CallbackURL, in.RequestedBy, approvedBy,
		sp.SetSourceDefaultEncryption, in.RequestedBy, message, nil)
	if err != nil {
		return provision.Change{}, fmt.Errorf("insert replication: %w", err)
	}
	created, err := collectReplications(rows)
	if err != nil {
		return provision.Change{}, fmt.Errorf("insert replication: %w", err)
	}
	c := provision.Change{
		Transition:  provision.Transition{Action: action, To: state},
		Actor:       in.RequestedBy,
		Replication: created[0],
	}
	return c, s.recorded(ctx, tx, c)
}

// Replay returns the answer remembered for caller's idempotency key, nil
// when the key was never used, or provision.ErrIdempotencyKeyReused when it
// was used with another body (hash). It stores nothing: it answers a retry
// from a caller who may no longer create what they first asked for.
func (s *Store) Replay(ctx context.Context, caller, key string, hash []byte) (*provision.Response, error) {
	in := provision.NewReplication{RequestedBy: caller, IdempotencyKey: key, RequestHash: hash}
	replay, err := replayAnswer(ctx, s.pool, in, s.keyCutoff(s.now()))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return replay, unavailable(err)
}

// replayAnswer returns the answer remembered for a request whose
// idempotency key is live (first used after cutoff).
func replayAnswer(ctx context.Context, q querier, in provision.NewReplication, cutoff time.Time) (*provision.Response, error) {
	var (
		hash   []byte
		id     *uuid.UUID
		status *int
		body   []byte
	)
	if err := q.QueryRow(ctx, selectIdempotencyKey, in.RequestedBy, in.IdempotencyKey, cutoff).Scan(&hash, &id, &status, &body); err != nil {
		return nil, fmt.Errorf("read idempotency key: %w", err)
	}
	if !bytes.Equal(hash, in.RequestHash) {
		return nil, provision.ErrIdempotencyKeyReused
	}
	if status == nil || id == nil {
		// The key is stored in the transaction that stores its answer.
		return nil, fmt.Errorf("idempotency key %q has no remembered answer", in.IdempotencyKey)
	}
	return &provision.Response{ReplicationID: id.String(), Status: *status, Body: body}, nil
}

// duplicate builds the error for a request whose route is already live.
func (s *Store) duplicate(ctx context.Context, sp provision.Spec) error {
	var (
		id  uuid.UUID
		dup provision.DuplicateError
	)
	err := s.pool.QueryRow(ctx, selectLiveRoute, sp.Source.Bucket, sp.Destination.Bucket, sp.Rule.Prefix).
		Scan(&id, &dup.SourceAccountID, &dup.DestinationAccountID)
	if errors.Is(err, pgx.ErrNoRows) {
		// The live request ended between our insert and this read.
		return &provision.DuplicateError{}
	}
	if err != nil {
		return unavailable(fmt.Errorf("find live replication: %w", err))
	}
	dup.ExistingID = id.String()
	return &dup
}

const selectReplication = `SELECT ` + replicationColumns + ` FROM replications WHERE id = $1`

// Get returns one replication, or provision.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (provision.Replication, error) {
	r, err := getReplication(ctx, s.pool, id)
	return r, unavailable(err)
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

// listReplications walks replications_created newest first, from the
// cursor on, keeping the rows every condition allows; $6 and $7 are the
// caller's scope (all accounts, or those whose requests they may see).
const listReplications = `SELECT ` + replicationColumns + ` FROM replications
WHERE ($6::boolean OR source_account_id = ANY($7::text[]) OR destination_account_id = ANY($7::text[]))
  AND (cardinality($1::replication_state[]) = 0 OR state = ANY($1))
  AND ($2 = '' OR source_account_id = $2 OR destination_account_id = $2)
  AND ($3 = '' OR ticket = $3)
  AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $8`

// listArgs are listReplications' arguments for f.
func listArgs(f provision.Filter) ([]any, error) {
	var (
		afterTime *time.Time
		afterID   uuid.UUID
	)
	if f.After != "" {
		t, id, err := decodeCursor(f.After)
		if err != nil {
			return nil, err
		}
		afterTime, afterID = &t, id
	}
	states := make([]string, len(f.States))
	for i, st := range f.States {
		states[i] = string(st)
	}
	accounts := f.Scope.Accounts
	if accounts == nil {
		accounts = []string{}
	}
	return []any{states, f.AccountID, f.Ticket, afterTime, afterID, f.Scope.All, accounts, f.Limit + 1}, nil
}

// ListPlan returns how Postgres runs List's query for f on this database
// (EXPLAIN ANALYZE), for operators and benchmarks checking that a listing
// walks the keyset index rather than sorting.
func (s *Store) ListPlan(ctx context.Context, f provision.Filter) (string, error) {
	args, err := listArgs(f)
	if err != nil {
		return "", err
	}
	rows, err := s.pool.Query(ctx, "EXPLAIN ANALYZE "+listReplications, args...)
	if err != nil {
		return "", fmt.Errorf("explain the listing: %w", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("explain the listing: %w", err)
	}
	return strings.Join(lines, "\n"), nil
}

// List returns the replications in f's scope, newest first. A page's Next
// cursor continues after its last item, so rows inserted meanwhile neither
// repeat nor shift later pages.
func (s *Store) List(ctx context.Context, f provision.Filter) (provision.Page, error) {
	args, err := listArgs(f)
	if err != nil {
		return provision.Page{}, err
	}
	rows, err := s.pool.Query(ctx, listReplications, args...)
	if err != nil {
		return provision.Page{}, unavailable(fmt.Errorf("list replications: %w", err))
	}
	items, err := collectReplications(rows)
	if err != nil {
		return provision.Page{}, unavailable(fmt.Errorf("list replications: %w", err))
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

const (
	selectForCancel = `SELECT state, lease_owner IS NOT NULL AND lease_until >= now() AS held
FROM replications WHERE id = $1 FOR UPDATE`
	requestCancel = `UPDATE replications SET cancel_requested = true, updated_at = now() WHERE id = $1
RETURNING ` + replicationColumns
)

// Cancel cancels at once a request no worker holds (pending, or running
// but waiting for its next attempt), and asks the worker holding a running
// request to stop after its current step (CancelRequested). Any other
// state answers *provision.StateError.
func (s *Store) Cancel(ctx context.Context, id, actor string) (provision.Replication, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return provision.Replication{}, provision.ErrNotFound
	}
	var (
		r provision.Replication
		c *provision.Change
	)
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var (
			state provision.State
			held  bool
		)
		err := tx.QueryRow(ctx, selectForCancel, uid).Scan(&state, &held)
		if errors.Is(err, pgx.ErrNoRows) {
			return provision.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("lock replication %s: %w", id, err)
		}
		if state != provision.StateRunning || !held {
			ch, err := s.apply(ctx, tx, change{id: id, action: provision.ActionCancel, actor: actor, message: "cancelled by " + actor})
			c, r = &ch, ch.Replication
			return err
		}
		rows, err := tx.Query(ctx, requestCancel, uid)
		if err != nil {
			return fmt.Errorf("request cancel of %s: %w", id, err)
		}
		rs, err := collectReplications(rows)
		if err != nil {
			return fmt.Errorf("request cancel of %s: %w", id, err)
		}
		r = rs[0]
		return appendEvent(ctx, tx, id, event{typ: provision.EventCancelRequested, actor: actor,
			message: "cancel requested by " + actor + "; stopping after the current step"})
	})
	if err != nil {
		return provision.Replication{}, err
	}
	if c != nil {
		s.committed(*c)
	}
	return r, nil
}

// Approve records the destination owner's consent, given by actor, to a
// request awaiting it, which becomes pending and runs. Any other state
// answers *provision.StateError.
func (s *Store) Approve(ctx context.Context, id, actor string) (provision.Replication, error) {
	return s.applyNow(ctx, change{id: id, action: provision.ActionApprove, actor: actor,
		message: "approved by " + actor, args: []any{actor}})
}

// Reject records that actor refused consent to a request awaiting it, and
// why; the request is rejected for good. Any other state answers
// *provision.StateError.
func (s *Store) Reject(ctx context.Context, id, actor, reason string) (provision.Replication, error) {
	return s.applyNow(ctx, change{id: id, action: provision.ActionReject, actor: actor,
		message: "rejected by " + actor + ": " + reason, args: []any{actor, reason}})
}

// Retry resumes a failed request from its failed step.
func (s *Store) Retry(ctx context.Context, id, actor string) (provision.Replication, error) {
	return s.applyNow(ctx, change{id: id, action: provision.ActionRetry, actor: actor, message: "retry requested by " + actor})
}

// Deprovision starts removing what a finished request added, or resumes a
// removal that failed. A request already deprovisioning or deprovisioned is
// returned unchanged, so the call is idempotent.
func (s *Store) Deprovision(ctx context.Context, id, actor string) (provision.Replication, error) {
	r, err := s.applyNow(ctx, change{id: id, action: provision.ActionDeprovision, actor: actor, message: "deprovisioning requested by " + actor})
	var se *provision.StateError
	switch {
	case errors.As(err, &se) && (se.State == provision.StateDeprovisioning || se.State == provision.StateDeprovisioned):
		return s.Get(ctx, id)
	case isLiveRouteTaken(err):
		// A cancelled request's route was taken by a newer request, whose
		// documents would share names with this one's.
		r, err := s.Get(ctx, id)
		if err != nil {
			return provision.Replication{}, err
		}
		return provision.Replication{}, s.duplicate(ctx, r.Spec)
	}
	return r, err
}

// isLiveRouteTaken reports whether err is the unique index refusing a
// second live request for one route.
func isLiveRouteTaken(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "replications_one_live_per_route"
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
