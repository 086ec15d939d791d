package api

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/policy"
	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

// The JSON shapes of the API, written by hand so that the domain types can
// change without changing the contract (openapi.yaml). One rule for empty
// values in answers: a field that can be empty is always present, as null
// for a value and [] for a list.

// sideJSON is one end of a replication.
type sideJSON struct {
	AccountID string `json:"account_id"`
	Region    string `json:"region"`
	Bucket    string `json:"bucket"`
	KMSKeyARN string `json:"kms_key_arn"`
}

func sideOf(s provision.Side) sideJSON {
	return sideJSON{AccountID: s.AccountID, Region: s.Region, Bucket: s.Bucket, KMSKeyARN: s.KMSKeyARN}
}

func (s sideJSON) domain() provision.Side {
	return provision.Side{AccountID: s.AccountID, Region: s.Region, Bucket: s.Bucket, KMSKeyARN: s.KMSKeyARN}
}

// ruleJSON holds the options of the replication rule. An empty prefix is a
// value (the whole bucket), not an absence.
type ruleJSON struct {
	Prefix                  string `json:"prefix"`
	DeleteMarkerReplication bool   `json:"delete_marker_replication"`
	ReplicaModifications    bool   `json:"replica_modifications"`
	StorageClass            string `json:"storage_class"`
	ReplicationTimeControl  bool   `json:"replication_time_control"`
}

func ruleOf(r provision.Rule) ruleJSON {
	return ruleJSON{Prefix: r.Prefix, DeleteMarkerReplication: r.DeleteMarkerReplication,
		ReplicaModifications: r.ReplicaModifications, StorageClass: r.StorageClass, ReplicationTimeControl: r.ReplicationTimeControl}
}

func (r ruleJSON) domain() provision.Rule {
	return provision.Rule{Prefix: r.Prefix, DeleteMarkerReplication: r.DeleteMarkerReplication,
		ReplicaModifications: r.ReplicaModifications, StorageClass: r.StorageClass, ReplicationTimeControl: r.ReplicationTimeControl}
}

// specJSON is what a caller asks for.
type specJSON struct {
	Source           sideJSON `json:"source"`
	Destination      sideJSON `json:"destination"`
	Rule             ruleJSON `json:"rule"`
	EnableVersioning bool     `json:"enable_versioning"`
	// SetSourceDefaultEncryption is omitted from the request's hash when
	// false, so that a retry of a request sent before the option existed
	// still matches its Idempotency-Key.
	SetSourceDefaultEncryption bool   `json:"set_source_default_encryption,omitempty"`
	Verify                     bool   `json:"verify"`
	Ticket                     string `json:"ticket"`
	CallbackURL                string `json:"callback_url"`
}

func (s specJSON) domain() provision.Spec {
	return provision.Spec{Source: s.Source.domain(), Destination: s.Destination.domain(), Rule: s.Rule.domain(),
		EnableVersioning: s.EnableVersioning, SetSourceDefaultEncryption: s.SetSourceDefaultEncryption,
		Verify: s.Verify, Ticket: s.Ticket, CallbackURL: s.CallbackURL}
}

// createBody is the body of POST /v1/replications; absent options take
// their defaults.
type createBody struct {
	specJSON
	DryRun bool `json:"dry_run"`
}

func newCreateBody() createBody {
	return createBody{specJSON: specJSON{Verify: true, Rule: ruleJSON{StorageClass: provision.DefaultStorageClass}}}
}

// rejectBody is the body of POST /v1/replications/{id}/reject.
type rejectBody struct {
	// Reason tells the requester why; it is required.
	Reason string `json:"reason"`
}

// replicationJSON is a replication request as the API shows it.
type replicationJSON struct {
	ID               string   `json:"id"`
	Source           sideJSON `json:"source"`
	Destination      sideJSON `json:"destination"`
	Rule             ruleJSON `json:"rule"`
	EnableVersioning bool     `json:"enable_versioning"`
	// SetSourceDefaultEncryption is the option of the request body.
	SetSourceDefaultEncryption bool            `json:"set_source_default_encryption"`
	Verify                     bool            `json:"verify"`
	Ticket                     *string         `json:"ticket"`
	CallbackURL                *string         `json:"callback_url"`
	State                      provision.State `json:"state"`
	Phase                      provision.Phase `json:"phase"`
	CancelRequested            bool            `json:"cancel_requested"`
	CurrentStep                *string         `json:"current_step"`
	Attempt                    int             `json:"attempt"`
	LastError                  json.RawMessage `json:"last_error"`
	// Warnings is always a list, [] when there is none.
	Warnings        []warningJSON `json:"warnings"`
	RequestedBy     string        `json:"requested_by"`
	ApprovedBy      *string       `json:"approved_by"`
	ApprovedAt      *time.Time    `json:"approved_at"`
	RejectedBy      *string       `json:"rejected_by"`
	RejectedAt      *time.Time    `json:"rejected_at"`
	RejectionReason *string       `json:"rejection_reason"`
	CreatedAt       time.Time     `json:"created_at"`
	UpdatedAt       time.Time     `json:"updated_at"`
	FinishedAt      *time.Time    `json:"finished_at"`
	Cloud           string        `json:"cloud"`
	Links           links         `json:"links"`
}

// warningJSON is something a step found that the caller should know
// although the request went on.
type warningJSON struct {
	Phase   provision.Phase `json:"phase"`
	Step    string          `json:"step"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
}

func warningsOf(ws []provision.Warning) []warningJSON {
	out := make([]warningJSON, len(ws))
	for i, w := range ws {
		out[i] = warningJSON{Phase: w.Phase, Step: w.Step, Code: w.Code, Message: w.Message}
	}
	return out
}

type links struct {
	Self   string `json:"self"`
	Steps  string `json:"steps"`
	Events string `json:"events"`
}

func replicationPath(id string) string { return "/v1/replications/" + id }

// replicationOf renders r; cloud says which AWS the workers talk to.
func replicationOf(r provision.Replication, cloud string) replicationJSON {
	self := replicationPath(r.ID)
	return replicationJSON{
		ID: r.ID, Source: sideOf(r.Source), Destination: sideOf(r.Destination), Rule: ruleOf(r.Rule),
		EnableVersioning: r.EnableVersioning, SetSourceDefaultEncryption: r.SetSourceDefaultEncryption, Verify: r.Verify,
		Ticket: orNull(r.Ticket), CallbackURL: orNull(r.CallbackURL),
		State: r.State, Phase: r.Phase, CancelRequested: r.CancelRequested, CurrentStep: orNull(r.CurrentStep),
		Attempt: r.Attempt, LastError: r.LastError, Warnings: warningsOf(r.Warnings), RequestedBy: r.RequestedBy,
		ApprovedBy: orNull(r.ApprovedBy), ApprovedAt: r.ApprovedAt,
		RejectedBy: orNull(r.RejectedBy), RejectedAt: r.RejectedAt, RejectionReason: orNull(r.RejectionReason),
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, FinishedAt: r.FinishedAt,
		Cloud: cloud, Links: links{Self: self, Steps: self + "/steps", Events: self + "/events"},
	}
}

// stepJSON is the record of one step.
type stepJSON struct {
	Phase      provision.Phase      `json:"phase"`
	Name       string               `json:"name"`
	Status     provision.StepStatus `json:"status"`
	Attempts   int                  `json:"attempts"`
	StartedAt  *time.Time           `json:"started_at"`
	FinishedAt *time.Time           `json:"finished_at"`
	Changed    bool                 `json:"changed"`
	Before     json.RawMessage      `json:"before"`
	After      json.RawMessage      `json:"after"`
	Error      json.RawMessage      `json:"error"`
}

func stepOf(s provision.Step) stepJSON {
	return stepJSON{Phase: s.Phase, Name: s.Name, Status: s.Status, Attempts: s.Attempts,
		StartedAt: s.StartedAt, FinishedAt: s.FinishedAt, Changed: s.Changed, Before: s.Before, After: s.After, Error: s.Error}
}

// eventJSON is one entry of a request's timeline; its id counts the
// request's events from 1.
type eventJSON struct {
	ID      int64               `json:"id"`
	At      time.Time           `json:"at"`
	Type    provision.EventType `json:"type"`
	State   *string             `json:"state"`
	Step    *string             `json:"step"`
	Actor   string              `json:"actor"`
	Message string              `json:"message"`
	Detail  json.RawMessage     `json:"detail"`
}

func eventOf(e provision.Event) eventJSON {
	return eventJSON{ID: e.Seq, At: e.At, Type: e.Type, State: orNull(string(e.State)), Step: orNull(e.Step),
		Actor: e.Actor, Message: e.Message, Detail: e.Detail}
}

// deliveryJSON is one callback of a request: the event it announces, where
// it stands, and every attempt to send it. Its id is the webhook-id header
// of every attempt.
type deliveryJSON struct {
	ID            string                `json:"id"`
	Seq           int                   `json:"seq"`
	Type          webhook.EventType     `json:"type"`
	URL           string                `json:"url"`
	Status        webhook.Status        `json:"status"`
	CreatedAt     time.Time             `json:"created_at"`
	QueuedAt      time.Time             `json:"queued_at"`
	NextAttemptAt *time.Time            `json:"next_attempt_at"`
	DeliveredAt   *time.Time            `json:"delivered_at"`
	Attempts      []deliveryAttemptJSON `json:"attempts"`
	Payload       json.RawMessage       `json:"payload"`
	Links         deliveryLinks         `json:"links"`
}

type deliveryLinks struct {
	Redeliver string `json:"redeliver"`
}

// deliveryAttemptJSON is one try at sending a delivery.
type deliveryAttemptJSON struct {
	At time.Time `json:"at"`
	// StatusCode is null when no answer came; Error is null when the
	// attempt succeeded.
	StatusCode *int    `json:"status_code"`
	Error      *string `json:"error"`
	DurationMS float64 `json:"duration_ms"`
}

func deliveryOf(d webhook.Delivery) deliveryJSON {
	out := deliveryJSON{ID: d.ID, Seq: d.Seq, Type: d.Type, URL: d.URL, Status: d.Status,
		CreatedAt: d.CreatedAt, QueuedAt: d.QueuedAt, NextAttemptAt: d.NextAttemptAt, DeliveredAt: d.DeliveredAt,
		Attempts: make([]deliveryAttemptJSON, len(d.Attempts)), Payload: d.Payload,
		Links: deliveryLinks{Redeliver: replicationPath(d.ReplicationID) + "/deliveries/" + d.ID + "/redeliver"}}
	for i, a := range d.Attempts {
		out.Attempts[i] = deliveryAttemptJSON{At: a.At, Error: orNull(a.Error),
			DurationMS: float64(a.Duration) / float64(time.Millisecond)}
		if a.StatusCode != 0 {
			out.Attempts[i].StatusCode = &a.StatusCode
		}
	}
	return out
}

// planJSON is the answer to a dry run: the documents a request would
// apply, and whether it would wait for the destination owner's consent.
// The documents themselves are AWS's JSON.
type planJSON struct {
	NeedsApproval      bool          `json:"needs_approval"`
	ReplicationRoleARN string        `json:"replication_role_arn"`
	Documents          documentsJSON `json:"documents"`
	Notes              []string      `json:"notes"`
}

type documentsJSON struct {
	TrustPolicy                       policy.Document    `json:"trust_policy"`
	RolePolicies                      rolePoliciesJSON   `json:"role_policies"`
	DestinationKeyPolicyStatement     policy.Statement   `json:"destination_key_policy_statement"`
	DestinationBucketPolicyStatements []policy.Statement `json:"destination_bucket_policy_statements"`
	// SourceKeyPolicyStatement is null when the source key delegates to
	// its account's IAM.
	SourceKeyPolicyStatement *policy.Statement `json:"source_key_policy_statement"`
	// SourceDefaultEncryption is null unless the request sets the source
	// bucket's default encryption.
	SourceDefaultEncryption *policy.BucketEncryption `json:"source_default_encryption"`
	ReplicationRule         policy.ReplicationRule   `json:"replication_rule"`
}

// rolePoliciesJSON are the replication role's permission documents: its
// inline policy, and the customer-managed policies attached to it when the
// inline budget runs out ([] when none).
type rolePoliciesJSON struct {
	Inline  []namedPolicyJSON   `json:"inline"`
	Managed []managedPolicyJSON `json:"managed"`
}

type namedPolicyJSON struct {
	Name     string          `json:"name"`
	Document policy.Document `json:"document"`
}

type managedPolicyJSON struct {
	Name     string          `json:"name"`
	ARN      string          `json:"arn"`
	Document policy.Document `json:"document"`
}

func rolePoliciesOf(p policy.RolePolicies) rolePoliciesJSON {
	out := rolePoliciesJSON{Inline: make([]namedPolicyJSON, len(p.Inline)), Managed: make([]managedPolicyJSON, len(p.Managed))}
	for i, n := range p.Inline {
		out.Inline[i] = namedPolicyJSON{Name: n.Name, Document: n.Document}
	}
	for i, m := range p.Managed {
		out.Managed[i] = managedPolicyJSON{Name: m.Name, ARN: m.ARN, Document: m.Document}
	}
	return out
}

// planOf renders p; needsApproval says whether the caller's request would
// wait for an approver of account destination.
func planOf(p policy.Documents, needsApproval bool, destination string) planJSON {
	d := p.Documents
	notes := nonNil(slices.Clone(p.Notes))
	if needsApproval {
		notes = append(notes, "the request would wait in awaiting_approval until an approver of destination account "+
			destination+" approves it; nothing is written to either account before")
	}
	return planJSON{
		NeedsApproval:      needsApproval,
		ReplicationRoleARN: p.ReplicationRoleARN,
		Documents: documentsJSON{
			TrustPolicy:                       d.TrustPolicy,
			RolePolicies:                      rolePoliciesOf(d.RolePolicies),
			DestinationKeyPolicyStatement:     d.DestinationKeyPolicyStatement,
			DestinationBucketPolicyStatements: d.DestinationBucketPolicyStatements,
			SourceKeyPolicyStatement:          d.SourceKeyPolicyStatement,
			SourceDefaultEncryption:           d.SourceDefaultEncryption,
			ReplicationRule:                   d.ReplicationRule,
		},
		Notes: notes,
	}
}

// orNull is s, or null when s is empty.
func orNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](items []T) []T {
	if items == nil {
		return []T{}
	}
	return items
}
