// Package webhook delivers signed callbacks to a request's callback_url:
// Standard Webhooks payloads, signed with every configured secret, sent at
// least once from a transactional outbox by a dispatcher in every replica,
// in the order of each request's events, to addresses a Guard allows.
//
// https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
package webhook

import (
	"encoding/json"
	"errors"
	"slices"
	"time"
)

// EventType names what happened to a request; it is the payload's "type".
type EventType string

// The event types a receiver may get. Each is sent once per state change,
// when the request enters the state of the same name.
const (
	// EventAwaitingApproval: the request waits for a destination approver.
	EventAwaitingApproval EventType = "replication.awaiting_approval"
	// EventSucceeded: provisioning finished (and the canary arrived, when verified).
	EventSucceeded EventType = "replication.succeeded"
	// EventFailed: provisioning failed permanently.
	EventFailed EventType = "replication.failed"
	// EventCancelled: the request was cancelled.
	EventCancelled EventType = "replication.cancelled"
	// EventRejected: a destination approver rejected the request.
	EventRejected EventType = "replication.rejected"
	// EventDeprovisioned: everything bucketbridge added was removed.
	EventDeprovisioned EventType = "replication.deprovisioned"
	// EventDeprovisionFailed: removing what bucketbridge added failed
	// permanently; a retry or another DELETE resumes it.
	EventDeprovisionFailed EventType = "replication.deprovision_failed"
)

// EventTypes lists every event type.
var EventTypes = []EventType{
	EventAwaitingApproval, EventSucceeded, EventFailed, EventCancelled, EventRejected, EventDeprovisioned,
	EventDeprovisionFailed,
}

// Valid reports whether t is one of EventTypes.
func (t EventType) Valid() bool { return slices.Contains(EventTypes, t) }

// Payload is the body of every delivery, a Standard Webhooks payload.
type Payload struct {
	Type EventType `json:"type"`
	// Timestamp is when the event happened (not when it was sent).
	Timestamp time.Time `json:"timestamp"`
	// Data is the replication resource as GET /v1/replications/{id}
	// returned it at that moment.
	Data json.RawMessage `json:"data"`
}

// Status is where a delivery stands.
type Status string

const (
	// StatusPending: not delivered yet; the dispatcher will (re)try it at
	// NextAttemptAt.
	StatusPending Status = "pending"
	// StatusDelivered: the receiver answered 2xx.
	StatusDelivered Status = "delivered"
	// StatusFailed: the receiver answered 410 Gone, or the delivery kept
	// failing for longer than the maximum age. Only a redelivery sends it again.
	StatusFailed Status = "failed"
)

// Delivery is one callback: one event for one request, sent until it is
// delivered or fails.
type Delivery struct {
	// ID is also the webhook-id header, the same on every attempt, so a
	// receiver can drop duplicates.
	ID            string `json:"id"`
	ReplicationID string `json:"replication_id"`
	// Seq orders one request's deliveries: the order of its events.
	Seq  int       `json:"seq"`
	Type EventType `json:"type"`
	// URL is the request's callback_url.
	URL string `json:"url"`
	// Payload is the body sent, a Payload.
	Payload json.RawMessage `json:"payload"`
	Status  Status          `json:"status"`
	// Tries counts attempts since the delivery was last queued; the delay
	// before the next one grows with it.
	Tries int `json:"-"`
	// NextAttemptAt is set while the delivery is pending.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	CreatedAt     time.Time  `json:"created_at"`
	// QueuedAt is when the delivery was created or last redelivered; the
	// maximum age counts from it.
	QueuedAt    time.Time  `json:"queued_at"`
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	// LastStatus is the HTTP status of the last attempt, 0 when it got none.
	LastStatus int `json:"last_status,omitempty"`
	// LastError says why the last attempt failed, "" when it did not.
	LastError string `json:"last_error,omitempty"`
	// Attempts lists every attempt, oldest first, redeliveries included
	// (filled by listings, not by claims).
	Attempts []Attempt `json:"attempts"`
}

// Attempt is one try at sending a delivery.
type Attempt struct {
	At time.Time `json:"at"`
	// StatusCode is the receiver's HTTP status, 0 when none came.
	StatusCode int `json:"status_code,omitempty"`
	// Error says why the attempt failed, "" when it succeeded.
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"-"`
}

// MarshalJSON shows the duration in milliseconds.
func (a Attempt) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		At         time.Time `json:"at"`
		StatusCode int       `json:"status_code,omitempty"`
		Error      string    `json:"error,omitempty"`
		DurationMS float64   `json:"duration_ms"`
	}{a.At, a.StatusCode, a.Error, float64(a.Duration) / float64(time.Millisecond)})
}

// AttemptRecord is what the dispatcher stores after an attempt.
type AttemptRecord struct {
	DeliveryID string
	Attempt    Attempt
	// Status is the delivery's new status.
	Status Status
	// NextAttemptAt is when to try again, when Status is StatusPending.
	NextAttemptAt time.Time
}

var (
	// ErrLeaseLost means another dispatcher claimed the delivery after this
	// one's lease expired; the late result is not recorded.
	ErrLeaseLost = errors.New("delivery lease lost")
	// ErrDeliveryNotFound means the request has no delivery with that id.
	ErrDeliveryNotFound = errors.New("delivery not found")
	// ErrDeliveryPending means a delivery cannot be queued again because it
	// has not finished.
	ErrDeliveryPending = errors.New("delivery is still pending")
)
