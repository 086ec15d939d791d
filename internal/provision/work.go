package provision

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// ErrLeaseLost means another worker owns the request now (this worker's
// lease expired); the worker stops without writing anything more.
var ErrLeaseLost = errors.New("lease lost")

// Claim is a request a worker holds the lease on.
type Claim struct {
	Replication Replication
	Phase       Phase
	// PhaseStartedAt is when this phase's run began; retries stop at the
	// request deadline after it.
	PhaseStartedAt time.Time
	Facts          Facts
	// Done holds the steps of this phase that already succeeded or were
	// skipped; a resumed request starts at its first step not in Done.
	Done map[string]bool
	// Attempted holds the provisioning steps that ever started an attempt:
	// only those may have written anything to remove.
	Attempted map[string]bool
	// CancelRequested: stop before the next step.
	CancelRequested bool
	// Owner is the lease owner every write is fenced with.
	Owner string
}

// StepRecord is what the engine stores when a step ends.
type StepRecord struct {
	Phase   Phase
	Name    string
	Status  StepStatus
	Changed bool
	Before  json.RawMessage
	After   json.RawMessage
	Error   json.RawMessage
	// Warnings replace what earlier attempts of the step warned; each names
	// the phase and the step.
	Warnings []Warning
	// Next, on the last record of a group whose steps all ended well, are
	// the steps of the group after it: the same write records that they
	// began (StartSteps) unless StartsNext says otherwise, which saves the
	// request a round trip and a commit between its groups.
	Next []string
}

// StartsNext reports whether writing r also recorded the start of r.Next,
// given whether a caller had asked to cancel: a provisioning request
// whose caller asked goes no further, while a removal always does.
func (r StepRecord) StartsNext(cancelRequested bool) bool {
	return len(r.Next) > 0 && (r.Phase == PhaseDeprovision || !cancelRequested)
}

// Failure is how a failed attempt leaves the request.
type Failure struct {
	// Step is the step that failed.
	Step string
	// Problem is the RFC 9457 object stored as last_error.
	Problem json.RawMessage
	// Permanent moves the request to failed; otherwise it runs again at RetryAt.
	Permanent bool
	RetryAt   time.Time
}

// WorkStore is the persistence the worker pool needs. Every method taking
// a claim is fenced by its lease and answers ErrLeaseLost when the lease
// has passed to another worker.
type WorkStore interface {
	// Claim leases the next runnable request, or returns ok=false.
	Claim(ctx context.Context, owner string, lease time.Duration) (c Claim, ok bool, err error)
	// Extend renews the lease and reports whether a cancel was requested.
	Extend(ctx context.Context, c *Claim, lease time.Duration) (cancelRequested bool, err error)
	// StartSteps records that steps (one group's, the first of them the
	// request's current step) began an attempt each.
	StartSteps(ctx context.Context, c *Claim, names ...string) error
	// FinishStep records a step's end and the facts learned so far (and,
	// with rec.Next, the start of the next group: StepRecord.StartsNext),
	// and reports whether a caller asked to cancel the request meanwhile.
	FinishStep(ctx context.Context, c *Claim, rec StepRecord, facts Facts) (cancelRequested bool, err error)
	// Fail records a failed attempt: the request fails (through the
	// lifecycle) or is rescheduled.
	Fail(ctx context.Context, c *Claim, f Failure) error
	// Finish applies action (complete or cancel) to the request through the
	// lifecycle, which releases it.
	Finish(ctx context.Context, c *Claim, action Action, message string) error
	// Release gives the lease up without changing the request (shutdown).
	Release(ctx context.Context, c *Claim) error
	// Lock takes the advisory locks named by keys until unlock is called.
	Lock(ctx context.Context, keys ...string) (unlock func(), err error)
	// Wake delivers a value whenever new work may be runnable.
	Wake(ctx context.Context) <-chan struct{}
	Holders
}

// Holders is what steps read and write, under a shared document's lock,
// about who holds grants in it.
type Holders interface {
	// Peers lists the requests in HoldingStates (and LeavingStates, when
	// f.Leaving) that f selects. Read under
	// a document's lock, it is the source of truth for who needs a grant in
	// that document: two concurrent removals cannot both misread it, as
	// they would by asking AWS.
	Peers(ctx context.Context, f PeerFilter) ([]Peer, error)
	// Granted returns what bucketbridge last wrote into its statements of
	// a document (by ARN, or ARN and bucket for a key's statement); the
	// zero Grant when nothing is recorded.
	Granted(ctx context.Context, document string) (Grant, error)
	// RecordGranted records, for each document, the roles request by just
	// wrote into it; an empty list clears what was recorded.
	RecordGranted(ctx context.Context, by string, documents map[string][]string) error
}

// HoldingStates are the states of requests whose documents exist, or may:
// they are being provisioned, or were and have not been deprovisioned. A
// pending request has written nothing yet, and one being deprovisioned is
// giving its grants up.
var HoldingStates = []State{StateRunning, StateSucceeded, StateFailed, StateCancelled}

// LeavingStates are the states of requests that are giving their
// documents up: their removal may not have reached a document yet.
var LeavingStates = []State{StateDeprovisioning, StateDeprovisionFailed}

// PeerFilter selects requests by source or destination bucket, or by
// source or destination key ("" matches any).
type PeerFilter struct {
	SourceBucket      string
	DestinationBucket string
	SourceKey         string
	DestinationKey    string
	// Leaving also selects the requests in LeavingStates, for what only
	// they may remember (what a shared setting was before bucketbridge
	// changed it).
	Leaving bool
}

// matches reports whether f selects a request of spec s.
func (f PeerFilter) matches(s Spec) bool {
	return (f.SourceBucket == "" || f.SourceBucket == s.Source.Bucket) &&
		(f.DestinationBucket == "" || f.DestinationBucket == s.Destination.Bucket) &&
		(f.SourceKey == "" || f.SourceKey == s.Source.KMSKeyARN) &&
		(f.DestinationKey == "" || f.DestinationKey == s.Destination.KMSKeyARN)
}

// Grant is the last write of bucketbridge's statements into a shared
// document: the roles they name, who wrote them and when.
type Grant struct {
	Roles     []string
	WrittenBy string
	WrittenAt time.Time
}

// Peer is a request in one of HoldingStates that may share a document (a
// role, a bucket or key policy) with the request running, and what its
// steps learned (the role it uses, once that role exists).
type Peer struct {
	Replication
	Facts Facts
}
