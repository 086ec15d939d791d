// Package provision owns the lifecycle of a replication request: its states,
// the checks a request must pass at the door, and the errors every layer
// speaks of.
package provision

import (
	"encoding/json"
	"time"
)

// State is where a replication request is in its lifecycle. The same values
// form the Postgres enum replication_state.
type State string

const (
	// StatePending: stored by the API, waiting for a worker to claim it.
	// Leaves for running (a worker claims it) or cancelled (a caller cancels).
	StatePending State = "pending"
	// StateRunning: a worker holds its lease and is provisioning it. Leaves
	// for succeeded, failed or cancelled (after the current step).
	StateRunning State = "running"
	// StateSucceeded: every provisioning step is done and verified. Leaves
	// only for deprovisioning.
	StateSucceeded State = "succeeded"
	// StateFailed: a step failed permanently; last_error says why. Leaves
	// for running (retry) or deprovisioning.
	StateFailed State = "failed"
	// StateCancelled: a caller cancelled it before it finished. Leaves only
	// for deprovisioning, which removes what it did before it stopped.
	StateCancelled State = "cancelled"
	// StateDeprovisioning: a worker is removing what bucketbridge added.
	// Leaves for deprovisioned, or failed when removal fails permanently.
	StateDeprovisioning State = "deprovisioning"
	// StateDeprovisioned: everything bucketbridge added is removed. Final.
	StateDeprovisioned State = "deprovisioned"
)

// States lists every state, in lifecycle order.
var States = []State{
	StatePending, StateRunning, StateSucceeded, StateFailed,
	StateCancelled, StateDeprovisioning, StateDeprovisioned,
}

// Transitions lists, for each state, the states a request may move to
// next, and who moves it: workers (claim, finish, fail) or callers (cancel,
// retry, deprovision).
var Transitions = map[State][]State{
	StatePending:        {StateRunning, StateCancelled},
	StateRunning:        {StateSucceeded, StateFailed, StateCancelled},
	StateSucceeded:      {StateDeprovisioning},
	StateFailed:         {StateRunning, StateDeprovisioning},
	StateCancelled:      {StateDeprovisioning},
	StateDeprovisioning: {StateDeprovisioned, StateFailed},
	StateDeprovisioned:  nil,
}

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// Terminal reports whether no worker will move a request in state s without
// a caller asking (retry, deprovision). Terminal requests have finished_at set.
func (s State) Terminal() bool {
	switch s {
	case StateSucceeded, StateFailed, StateCancelled, StateDeprovisioned:
		return true
	}
	return false
}

// Side is one end of a replication: a bucket in an account, encrypted with a
// customer-managed KMS key in the same account and region.
type Side struct {
	AccountID string `json:"account_id"`
	Region    string `json:"region"`
	Bucket    string `json:"bucket"`
	KMSKeyARN string `json:"kms_key_arn"`
}

// Rule holds the options of the replication rule written on the source bucket.
type Rule struct {
	// Prefix limits replication to keys starting with it; "" is the whole bucket.
	Prefix                  string `json:"prefix"`
	DeleteMarkerReplication bool   `json:"delete_marker_replication"`
	ReplicaModifications    bool   `json:"replica_modifications"`
	StorageClass            string `json:"storage_class"`
	ReplicationTimeControl  bool   `json:"replication_time_control"`
}

// Spec is what a caller asks for: everything needed to provision, nothing
// bucketbridge decides itself.
type Spec struct {
	Source           Side   `json:"source"`
	Destination      Side   `json:"destination"`
	Rule             Rule   `json:"rule"`
	EnableVersioning bool   `json:"enable_versioning"`
	Verify           bool   `json:"verify"`
	Ticket           string `json:"ticket,omitempty"`
	CallbackURL      string `json:"callback_url,omitempty"`
}

// Replication is a stored replication request and its progress.
type Replication struct {
	ID string `json:"id"`
	Spec
	State State `json:"state"`
	// Phase is the step table the request is in: provision, or deprovision
	// once a caller asked to remove it.
	Phase Phase `json:"phase"`
	// CancelRequested: a caller cancelled it while a worker was running it;
	// it stops after the current step.
	CancelRequested bool            `json:"cancel_requested"`
	CurrentStep     string          `json:"current_step,omitempty"`
	Attempt         int             `json:"attempt"`
	LastError       json.RawMessage `json:"last_error"`
	RequestedBy     string          `json:"requested_by"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
	FinishedAt      *time.Time      `json:"finished_at"`
}

// NewReplication is a request to store: the spec, who asks, and the
// Idempotency-Key that makes a retried request return the first answer.
type NewReplication struct {
	Spec        Spec
	RequestedBy string
	// IdempotencyKey is optional; with it, RequestHash identifies the body.
	IdempotencyKey string
	RequestHash    []byte
}

// Step is the record of one provisioning or deprovisioning step.
type Step struct {
	Phase      string          `json:"phase"`
	Name       string          `json:"name"`
	Status     string          `json:"status"`
	Attempts   int             `json:"attempts"`
	StartedAt  *time.Time      `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at"`
	Changed    bool            `json:"changed"`
	Before     json.RawMessage `json:"before"`
	After      json.RawMessage `json:"after"`
	Error      json.RawMessage `json:"error"`
}

// Event is one entry of a request's append-only timeline.
type Event struct {
	ID      int64           `json:"id"`
	At      time.Time       `json:"at"`
	Type    string          `json:"type"`
	State   State           `json:"state,omitempty"`
	Step    string          `json:"step,omitempty"`
	Message string          `json:"message"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

// Filter selects replications for a listing.
type Filter struct {
	State     State
	AccountID string // either side
	Ticket    string
	Limit     int
	// After is the opaque position of the last item of the previous page.
	After string
}

// Page is one page of a listing; Next is empty on the last page.
type Page struct {
	Items []Replication
	Next  string
}
