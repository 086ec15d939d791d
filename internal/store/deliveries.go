package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

// DeliveriesChannel is the LISTEN/NOTIFY channel that wakes the webhook
// dispatchers when deliveries are queued.
const DeliveriesChannel = "bucketbridge_deliveries"

// lockForDelivery reads the callback URL and locks the request, so that
// two transactions queueing deliveries for one request take turns and
// number them without a gap or a clash. (FOR NO KEY UPDATE, the lock a
// state change's UPDATE takes anyway, lets the delivery's foreign key be
// checked meanwhile.)
const lockForDelivery = `SELECT callback_url FROM replications WHERE id = $1 FOR NO KEY UPDATE`

// insertDelivery builds the Standard Webhooks payload around data. Its
// timestamp is the transaction's, the time of the state change it
// announces; the aggregate yields one row, numbering the first delivery 1.
const insertDelivery = `INSERT INTO webhook_deliveries (id, replication_id, seq, type, url, payload)
SELECT $1, $2, COALESCE(max(seq), 0) + 1, $3::text, $4,
    jsonb_build_object(
        'type', $3::text,
        'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'data', $5::jsonb)
FROM webhook_deliveries WHERE replication_id = $2`

// enqueueDelivery queues a callback announcing typ for the request
// replicationID, with data (the request as GET returns it) as the payload's
// data, when the request has a callback URL. It returns the delivery's id,
// or "" when the request has no callback URL. Run it on the transaction of
// the state change it announces, so that the delivery exists if and only if
// the change does, and wake the dispatchers (s.deliveries.Notify) once that
// transaction has committed, never inside it: Postgres serializes the
// commits of all transactions that issued a NOTIFY, which would make every
// state change wait for every other.
func enqueueDelivery(ctx context.Context, q querier, replicationID string, typ webhook.EventType, data json.RawMessage) (string, error) {
	if !typ.Valid() {
		return "", fmt.Errorf("queue delivery for %s: unknown event type %q", replicationID, typ)
	}
	if !json.Valid(data) {
		return "", fmt.Errorf("queue delivery for %s: data is not JSON", replicationID)
	}
	uid, err := uuid.Parse(replicationID)
	if err != nil {
		return "", provision.ErrNotFound
	}
	var url string
	err = q.QueryRow(ctx, lockForDelivery, uid).Scan(&url)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", provision.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("queue delivery for %s: %w", replicationID, err)
	}
	if url == "" {
		return "", nil
	}
	id := uuid.Must(uuid.NewV7())
	if _, err := q.Exec(ctx, insertDelivery, id, uid, string(typ), url, []byte(data)); err != nil {
		return "", fmt.Errorf("queue delivery for %s: %w", replicationID, err)
	}
	return id.String(), nil
}

// EnqueueDelivery queues a callback in a transaction of its own and wakes
// the dispatchers; see enqueueDelivery. It returns the delivery's id, or ""
// when the request has no callback URL.
func (s *Store) EnqueueDelivery(ctx context.Context, replicationID string, typ webhook.EventType, data json.RawMessage) (string, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	id, err := enqueueDelivery(ctx, tx, replicationID, typ, data)
	if err != nil {
		return "", err
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("commit: %w", err)
	}
	if id != "" {
		s.deliveries.Notify()
	}
	return id, nil
}

// deliveryColumns is the explicit column list every delivery query returns.
const deliveryColumns = `id, replication_id, seq, type, url, payload, status, attempts, next_attempt_at,
	created_at, queued_at, delivered_at, last_status, last_error`

type deliveryRow struct {
	ID            uuid.UUID  `db:"id"`
	ReplicationID uuid.UUID  `db:"replication_id"`
	Seq           int        `db:"seq"`
	Type          string     `db:"type"`
	URL           string     `db:"url"`
	Payload       []byte     `db:"payload"`
	Status        string     `db:"status"`
	Attempts      int        `db:"attempts"`
	NextAttemptAt *time.Time `db:"next_attempt_at"`
	CreatedAt     time.Time  `db:"created_at"`
	QueuedAt      time.Time  `db:"queued_at"`
	DeliveredAt   *time.Time `db:"delivered_at"`
	LastStatus    *int       `db:"last_status"`
	LastError     *string    `db:"last_error"`
	// AttemptLog is filled by listings only.
	AttemptLog []byte `db:"attempt_log"`
}

// attemptJSON is one element of attempt_log.
type attemptJSON struct {
	At         time.Time `json:"at"`
	StatusCode *int      `json:"status_code"`
	Error      string    `json:"error"`
	DurationMS float64   `json:"duration_ms"`
}

func (r deliveryRow) domain() (webhook.Delivery, error) {
	d := webhook.Delivery{
		ID: r.ID.String(), ReplicationID: r.ReplicationID.String(), Seq: r.Seq,
		Type: webhook.EventType(r.Type), URL: r.URL, Payload: r.Payload,
		Status: webhook.Status(r.Status), Tries: r.Attempts, NextAttemptAt: r.NextAttemptAt,
		CreatedAt: r.CreatedAt, QueuedAt: r.QueuedAt, DeliveredAt: r.DeliveredAt,
	}
	if r.LastStatus != nil {
		d.LastStatus = *r.LastStatus
	}
	if r.LastError != nil {
		d.LastError = *r.LastError
	}
	if r.AttemptLog != nil {
		var log []attemptJSON
		if err := json.Unmarshal(r.AttemptLog, &log); err != nil {
			return d, fmt.Errorf("decode attempts of delivery %s: %w", d.ID, err)
		}
		d.Attempts = make([]webhook.Attempt, len(log))
		for i, a := range log {
			d.Attempts[i] = webhook.Attempt{
				At: a.At, Error: a.Error,
				Duration: time.Duration(a.DurationMS * float64(time.Millisecond)),
			}
			if a.StatusCode != nil {
				d.Attempts[i].StatusCode = *a.StatusCode
			}
		}
	}
	return d, nil
}

func collectDeliveries(rows pgx.Rows) ([]webhook.Delivery, error) {
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByNameLax[deliveryRow])
	if err != nil {
		return nil, err
	}
	out := make([]webhook.Delivery, len(rs))
	for i, r := range rs {
		if out[i], err = r.domain(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// claimDue leases due deliveries. A delivery waits while an earlier one of
// its request is pending, so each request's callbacks arrive in the order
// of its events; SKIP LOCKED lets dispatchers claim at once without
// blocking each other; an expired lease (its dispatcher died) makes a
// delivery claimable again, with the same id.
const claimDue = `WITH due AS (
    SELECT d.id FROM webhook_deliveries d
    WHERE d.status = 'pending'
      AND d.next_attempt_at <= $2
      AND (d.lease_until IS NULL OR d.lease_until < $2)
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries e
          WHERE e.replication_id = d.replication_id AND e.status = 'pending' AND e.seq < d.seq)
    ORDER BY d.next_attempt_at
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries w SET
    lease_owner = $1,
    lease_until = $2::timestamptz + $3 * interval '1 millisecond'
FROM due WHERE w.id = due.id
RETURNING w.id, w.replication_id, w.seq, w.type, w.url, w.payload, w.status, w.attempts, w.next_attempt_at,
    w.created_at, w.queued_at, w.delivered_at, w.last_status, w.last_error`

// ClaimDue leases up to limit due deliveries to owner until now+lease.
func (s *Store) ClaimDue(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]webhook.Delivery, error) {
	rows, err := s.pool.Query(ctx, claimDue, owner, now, lease.Milliseconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	ds, err := collectDeliveries(rows)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	return ds, nil
}

// recordAttempt is fenced by the lease: a dispatcher whose lease expired
// and was taken over writes nothing.
const recordAttempt = `WITH d AS (
    UPDATE webhook_deliveries SET
        status = $3::text,
        attempts = attempts + 1,
        next_attempt_at = CASE WHEN $3::text = 'pending' THEN $4::timestamptz END,
        delivered_at = CASE WHEN $3::text = 'delivered' THEN $5::timestamptz END,
        last_status = $6,
        last_error = NULLIF($7::text, ''),
        lease_owner = NULL,
        lease_until = NULL
    WHERE id = $1 AND lease_owner = $2 AND status = 'pending'
    RETURNING id
)
INSERT INTO webhook_attempts (delivery_id, at, status_code, error, duration_ms)
SELECT id, $5, $6, $7, $8 FROM d`

// RecordAttempt stores an attempt and the delivery's new status and
// releases the lease, or returns webhook.ErrLeaseLost when owner no longer
// holds it.
func (s *Store) RecordAttempt(ctx context.Context, owner string, rec webhook.AttemptRecord) error {
	uid, err := uuid.Parse(rec.DeliveryID)
	if err != nil {
		return webhook.ErrDeliveryNotFound
	}
	var next *time.Time
	if rec.Status == webhook.StatusPending {
		next = &rec.NextAttemptAt
	}
	var status *int
	if rec.Attempt.StatusCode != 0 {
		status = &rec.Attempt.StatusCode
	}
	tag, err := s.pool.Exec(ctx, recordAttempt, uid, owner, string(rec.Status), next, rec.Attempt.At, status,
		rec.Attempt.Error, float64(rec.Attempt.Duration)/float64(time.Millisecond))
	if err != nil {
		return fmt.Errorf("record attempt of delivery %s: %w", rec.DeliveryID, err)
	}
	if tag.RowsAffected() == 0 {
		return webhook.ErrLeaseLost
	}
	return nil
}

// OldestPending returns when the oldest pending delivery was queued, and
// false when none is pending.
func (s *Store) OldestPending(ctx context.Context) (time.Time, bool, error) {
	var oldest *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT min(queued_at) FROM webhook_deliveries WHERE status = 'pending'`).Scan(&oldest); err != nil {
		return time.Time{}, false, fmt.Errorf("read oldest pending delivery: %w", err)
	}
	if oldest == nil {
		return time.Time{}, false, nil
	}
	return *oldest, true, nil
}

// selectDeliveries lists a request's deliveries (or one of them, when $2 is
// not NULL) with every attempt, in one statement so that a delivery and its
// attempts are read at one moment.
const selectDeliveries = `SELECT ` + deliveryColumns + `,
    COALESCE((SELECT jsonb_agg(jsonb_build_object(
                  'at', a.at, 'status_code', a.status_code, 'error', a.error, 'duration_ms', a.duration_ms)
                  ORDER BY a.id)
              FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]') AS attempt_log
FROM webhook_deliveries d
WHERE d.replication_id = $1 AND ($2::uuid IS NULL OR d.id = $2)
ORDER BY d.seq`

// Deliveries returns a request's deliveries in the order of its events,
// each with every attempt, or provision.ErrNotFound.
func (s *Store) Deliveries(ctx context.Context, replicationID string) ([]webhook.Delivery, error) {
	uid, err := uuid.Parse(replicationID)
	if err != nil {
		return nil, provision.ErrNotFound
	}
	rows, err := s.pool.Query(ctx, selectDeliveries, uid, nil)
	if err != nil {
		return nil, unavailable(fmt.Errorf("list deliveries of %s: %w", replicationID, err))
	}
	ds, err := collectDeliveries(rows)
	if err != nil {
		return nil, unavailable(fmt.Errorf("list deliveries of %s: %w", replicationID, err))
	}
	if len(ds) == 0 {
		// Nothing listed: tell an unknown request from one with none yet.
		if _, err := s.Get(ctx, replicationID); err != nil {
			return nil, err
		}
	}
	return ds, nil
}

// redeliver queues a finished delivery again, keeping its id (the
// webhook-id a receiver deduplicates by) and its past attempts; the backoff
// and the maximum age start afresh.
const redeliver = `UPDATE webhook_deliveries SET
    status = 'pending', attempts = 0, next_attempt_at = now(), queued_at = now(),
    delivered_at = NULL, lease_owner = NULL, lease_until = NULL
WHERE replication_id = $1 AND id = $2 AND status <> 'pending'`

// Redeliver queues a delivered or failed delivery again with the same id
// and wakes the dispatchers. It returns webhook.ErrDeliveryPending for a
// delivery not finished yet, webhook.ErrDeliveryNotFound when the request
// has no such delivery, and provision.ErrNotFound for an unknown request.
func (s *Store) Redeliver(ctx context.Context, replicationID, deliveryID string) (webhook.Delivery, error) {
	rid, err := uuid.Parse(replicationID)
	if err != nil {
		return webhook.Delivery{}, provision.ErrNotFound
	}
	did, err := uuid.Parse(deliveryID)
	if err != nil {
		if _, err := s.Get(ctx, replicationID); err != nil {
			return webhook.Delivery{}, err
		}
		return webhook.Delivery{}, webhook.ErrDeliveryNotFound
	}
	tag, err := s.pool.Exec(ctx, redeliver, rid, did)
	if err != nil {
		return webhook.Delivery{}, unavailable(fmt.Errorf("redeliver %s of %s: %w", deliveryID, replicationID, err))
	}
	if tag.RowsAffected() == 1 {
		s.deliveries.Notify()
	}
	rows, err := s.pool.Query(ctx, selectDeliveries, rid, did)
	if err != nil {
		return webhook.Delivery{}, unavailable(fmt.Errorf("read delivery %s of %s: %w", deliveryID, replicationID, err))
	}
	ds, err := collectDeliveries(rows)
	if err != nil {
		return webhook.Delivery{}, unavailable(fmt.Errorf("read delivery %s of %s: %w", deliveryID, replicationID, err))
	}
	switch {
	case len(ds) == 0:
		if _, err := s.Get(ctx, replicationID); err != nil {
			return webhook.Delivery{}, err
		}
		return webhook.Delivery{}, webhook.ErrDeliveryNotFound
	case tag.RowsAffected() == 0:
		// It exists and was not updated: it is pending.
		return webhook.Delivery{}, webhook.ErrDeliveryPending
	}
	return ds[0], nil
}
