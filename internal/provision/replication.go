// Package provision owns the lifecycle of a replication request: its states,
// the checks a request must pass at the door, and the errors every layer
// speaks of.
package provision

import (
	"encoding/json"
	"time"
)

// Side is one end of a replication: a bucket in an account, encrypted with a
// customer-managed KMS key in the same account and region.
type Side struct {
	AccountID string
	Region    string
	Bucket    string
	KMSKeyARN string
}

// Rule holds the options of the replication rule written on the source bucket.
type Rule struct {
	// Prefix limits replication to keys starting with it; "" is the whole bucket.
	Prefix                  string
	DeleteMarkerReplication bool
	ReplicaModifications    bool
	StorageClass            string
	ReplicationTimeControl  bool
}

// Spec is what a caller asks for: everything needed to provision, nothing
// bucketbridge decides itself.
type Spec struct {
	Source           Side
	Destination      Side
	Rule             Rule
	EnableVersioning bool
	// SetSourceDefaultEncryption makes the source bucket's default
	// encryption SSE-KMS with the source key and S3 Bucket Keys when it is
	// SSE-S3 (or none), so that objects written without encryption headers
	// replicate under the destination key too; deprovisioning restores the
	// previous setting.
	SetSourceDefaultEncryption bool
	Verify                     bool
	Ticket                     string
	CallbackURL                string
}

// Replication is a stored replication request and its progress.
type Replication struct {
	ID string
	Spec
	State State
	// Phase is the step table the request is in: provision, or deprovision
	// once a caller asked to remove it.
	Phase Phase
	// CancelRequested: a caller cancelled it while a worker was running it;
	// it stops after the current step.
	CancelRequested bool
	// CurrentStep is the step running, or the last one that ran; "" before
	// the first.
	CurrentStep string
	// Attempt counts the failed attempts of the current step.
	Attempt int
	// LastError is the RFC 9457 problem of the last failed attempt, or nil.
	LastError json.RawMessage
	// Warnings are what steps found that the caller should know although
	// the request went on, in the order the steps ended.
	Warnings    []Warning
	RequestedBy string
	// ApprovedBy is who gave the destination owner's consent, and
	// ApprovedAt when: an approver of the destination account, or the
	// requester themself when they are one. Empty while none was given.
	ApprovedBy string
	ApprovedAt *time.Time
	// RejectedBy is the approver who refused consent, RejectedAt when, and
	// RejectionReason why. Empty unless the request was rejected.
	RejectedBy      string
	RejectedAt      *time.Time
	RejectionReason string
	CreatedAt       time.Time
	UpdatedAt       time.Time
	FinishedAt      *time.Time
}

// NewReplication is a request to store: the spec, who asks, and the
// Idempotency-Key that makes a retried request return the first answer.
type NewReplication struct {
	Spec        Spec
	RequestedBy string
	// NeedsApproval stores the request awaiting the consent of an approver
	// of its destination account (ActionSubmit); otherwise it is pending at
	// once, with the requester as its approver (ActionCreate).
	NeedsApproval bool
	// IdempotencyKey is optional; with it, RequestHash identifies the body.
	IdempotencyKey string
	RequestHash    []byte
	// Answer renders the response to remember for IdempotencyKey; it runs
	// in the transaction that stores the request, so a key is never stored
	// without its answer.
	Answer func(Replication) (Response, error)
}

// Response is an HTTP answer remembered for an Idempotency-Key, replayed
// byte for byte to every retry.
type Response struct {
	// ReplicationID is the request the answer is about.
	ReplicationID string
	Status        int
	Body          []byte
}

// Warning is something a step found that the request's caller should know:
// the request went on, but what it provides may not be what the caller
// expects (objects that replicate as SSE-S3, a rule of someone else's that
// bucketbridge's rule outranks, a canary object Object Lock keeps).
type Warning struct {
	// Phase and Step name the step that found it; the engine fills them.
	Phase Phase  `json:"phase"`
	Step  string `json:"step"`
	// Code is a short stable identifier for programs (one of the Warning…
	// constants).
	Code string `json:"code"`
	// Message says what was found and what to do about it, for humans.
	Message string `json:"message"`
}

// Codes of warnings.
const (
	// WarningSourceDefaultSSES3: objects written to the source bucket
	// without encryption headers get SSE-S3 (or no encryption), and
	// replicate so, not under the destination key.
	WarningSourceDefaultSSES3 = "source_default_encryption_sse_s3"
	// WarningOverlappingRule: an enabled rule of someone else's on the
	// source bucket selects some of the keys bucketbridge's rule selects.
	WarningOverlappingRule = "overlapping_replication_rule"
	// WarningAdoptedRoleTrust: the adopted role's trust policy lets
	// principals other than s3.amazonaws.com assume it.
	WarningAdoptedRoleTrust = "adopted_role_trust"
	// WarningCanaryLeft: a canary object version could not be deleted
	// (Object Lock keeps it) and is left until its retention ends.
	WarningCanaryLeft = "canary_left_behind"
	// WarningCanarySkipped: verify did not write a canary, because nothing
	// could have deleted it again.
	WarningCanarySkipped = "canary_skipped"
	// WarningDefaultEncryptionChanged: deprovisioning did not restore the
	// source bucket's default encryption, because someone changed it since
	// bucketbridge set it.
	WarningDefaultEncryptionChanged = "source_default_encryption_changed"
)

// Step is the record of one provisioning or deprovisioning step.
type Step struct {
	Phase      Phase
	Name       string
	Status     StepStatus
	Attempts   int
	StartedAt  *time.Time
	FinishedAt *time.Time
	Changed    bool
	Before     json.RawMessage
	After      json.RawMessage
	Error      json.RawMessage
}

// Event is one entry of a request's append-only timeline.
type Event struct {
	// Seq numbers a request's events 1, 2, …, in the order they happened.
	Seq  int64
	At   time.Time
	Type EventType
	// State is the state entered, for state events.
	State State
	Step  string
	// Actor is who acted: the caller's name for API actions, worker:<lease
	// owner> for the engine, system for anything else.
	Actor   string
	Message string
	Detail  json.RawMessage
}

// Scope is the set of accounts whose requests a caller may see: a request
// is in scope when its source or its destination account is.
type Scope struct {
	// All puts every account in scope.
	All bool
	// Accounts are the accounts in scope unless All is set.
	Accounts []string
}

// Filter selects replications for a listing.
type Filter struct {
	// Scope keeps only the requests the caller may see; the zero Scope
	// keeps none.
	Scope Scope
	// States, when not empty, keeps requests in any of them.
	States    []State
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
