package provision

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// CallerIdentity is the STS call a step makes to prove which account a
// session acts in.
type CallerIdentity interface {
	GetCallerIdentity(ctx context.Context, in *sts.GetCallerIdentityInput, optFns ...func(*sts.Options)) (*sts.GetCallerIdentityOutput, error)
}

// IAMAPI is the IAM calls steps make; *iam.Client satisfies it.
type IAMAPI interface {
	GetRole(ctx context.Context, in *iam.GetRoleInput, optFns ...func(*iam.Options)) (*iam.GetRoleOutput, error)
	CreateRole(ctx context.Context, in *iam.CreateRoleInput, optFns ...func(*iam.Options)) (*iam.CreateRoleOutput, error)
	UpdateAssumeRolePolicy(ctx context.Context, in *iam.UpdateAssumeRolePolicyInput, optFns ...func(*iam.Options)) (*iam.UpdateAssumeRolePolicyOutput, error)
	TagRole(ctx context.Context, in *iam.TagRoleInput, optFns ...func(*iam.Options)) (*iam.TagRoleOutput, error)
	GetRolePolicy(ctx context.Context, in *iam.GetRolePolicyInput, optFns ...func(*iam.Options)) (*iam.GetRolePolicyOutput, error)
	PutRolePolicy(ctx context.Context, in *iam.PutRolePolicyInput, optFns ...func(*iam.Options)) (*iam.PutRolePolicyOutput, error)
	ListRolePolicies(ctx context.Context, in *iam.ListRolePoliciesInput, optFns ...func(*iam.Options)) (*iam.ListRolePoliciesOutput, error)
	DeleteRolePolicy(ctx context.Context, in *iam.DeleteRolePolicyInput, optFns ...func(*iam.Options)) (*iam.DeleteRolePolicyOutput, error)
	DeleteRole(ctx context.Context, in *iam.DeleteRoleInput, optFns ...func(*iam.Options)) (*iam.DeleteRoleOutput, error)
	ListAttachedRolePolicies(ctx context.Context, in *iam.ListAttachedRolePoliciesInput, optFns ...func(*iam.Options)) (*iam.ListAttachedRolePoliciesOutput, error)
	AttachRolePolicy(ctx context.Context, in *iam.AttachRolePolicyInput, optFns ...func(*iam.Options)) (*iam.AttachRolePolicyOutput, error)
	DetachRolePolicy(ctx context.Context, in *iam.DetachRolePolicyInput, optFns ...func(*iam.Options)) (*iam.DetachRolePolicyOutput, error)
	CreatePolicy(ctx context.Context, in *iam.CreatePolicyInput, optFns ...func(*iam.Options)) (*iam.CreatePolicyOutput, error)
	GetPolicy(ctx context.Context, in *iam.GetPolicyInput, optFns ...func(*iam.Options)) (*iam.GetPolicyOutput, error)
	GetPolicyVersion(ctx context.Context, in *iam.GetPolicyVersionInput, optFns ...func(*iam.Options)) (*iam.GetPolicyVersionOutput, error)
	CreatePolicyVersion(ctx context.Context, in *iam.CreatePolicyVersionInput, optFns ...func(*iam.Options)) (*iam.CreatePolicyVersionOutput, error)
	ListPolicyVersions(ctx context.Context, in *iam.ListPolicyVersionsInput, optFns ...func(*iam.Options)) (*iam.ListPolicyVersionsOutput, error)
	DeletePolicyVersion(ctx context.Context, in *iam.DeletePolicyVersionInput, optFns ...func(*iam.Options)) (*iam.DeletePolicyVersionOutput, error)
	DeletePolicy(ctx context.Context, in *iam.DeletePolicyInput, optFns ...func(*iam.Options)) (*iam.DeletePolicyOutput, error)
}

// KMSAPI is the KMS calls steps make; *kms.Client satisfies it.
type KMSAPI interface {
	DescribeKey(ctx context.Context, in *kms.DescribeKeyInput, optFns ...func(*kms.Options)) (*kms.DescribeKeyOutput, error)
	GetKeyPolicy(ctx context.Context, in *kms.GetKeyPolicyInput, optFns ...func(*kms.Options)) (*kms.GetKeyPolicyOutput, error)
	PutKeyPolicy(ctx context.Context, in *kms.PutKeyPolicyInput, optFns ...func(*kms.Options)) (*kms.PutKeyPolicyOutput, error)
}

// S3API is the S3 calls steps make; *s3.Client satisfies it.
type S3API interface {
	HeadBucket(ctx context.Context, in *s3.HeadBucketInput, optFns ...func(*s3.Options)) (*s3.HeadBucketOutput, error)
	GetBucketLocation(ctx context.Context, in *s3.GetBucketLocationInput, optFns ...func(*s3.Options)) (*s3.GetBucketLocationOutput, error)
	GetBucketVersioning(ctx context.Context, in *s3.GetBucketVersioningInput, optFns ...func(*s3.Options)) (*s3.GetBucketVersioningOutput, error)
	PutBucketVersioning(ctx context.Context, in *s3.PutBucketVersioningInput, optFns ...func(*s3.Options)) (*s3.PutBucketVersioningOutput, error)
	GetBucketEncryption(ctx context.Context, in *s3.GetBucketEncryptionInput, optFns ...func(*s3.Options)) (*s3.GetBucketEncryptionOutput, error)
	PutBucketEncryption(ctx context.Context, in *s3.PutBucketEncryptionInput, optFns ...func(*s3.Options)) (*s3.PutBucketEncryptionOutput, error)
	DeleteBucketEncryption(ctx context.Context, in *s3.DeleteBucketEncryptionInput, optFns ...func(*s3.Options)) (*s3.DeleteBucketEncryptionOutput, error)
	GetBucketOwnershipControls(ctx context.Context, in *s3.GetBucketOwnershipControlsInput, optFns ...func(*s3.Options)) (*s3.GetBucketOwnershipControlsOutput, error)
	GetBucketPolicy(ctx context.Context, in *s3.GetBucketPolicyInput, optFns ...func(*s3.Options)) (*s3.GetBucketPolicyOutput, error)
	PutBucketPolicy(ctx context.Context, in *s3.PutBucketPolicyInput, optFns ...func(*s3.Options)) (*s3.PutBucketPolicyOutput, error)
	DeleteBucketPolicy(ctx context.Context, in *s3.DeleteBucketPolicyInput, optFns ...func(*s3.Options)) (*s3.DeleteBucketPolicyOutput, error)
	GetBucketReplication(ctx context.Context, in *s3.GetBucketReplicationInput, optFns ...func(*s3.Options)) (*s3.GetBucketReplicationOutput, error)
	PutBucketReplication(ctx context.Context, in *s3.PutBucketReplicationInput, optFns ...func(*s3.Options)) (*s3.PutBucketReplicationOutput, error)
	DeleteBucketReplication(ctx context.Context, in *s3.DeleteBucketReplicationInput, optFns ...func(*s3.Options)) (*s3.DeleteBucketReplicationOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, optFns ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	ListObjectVersions(ctx context.Context, in *s3.ListObjectVersionsInput, optFns ...func(*s3.Options)) (*s3.ListObjectVersionsOutput, error)
	GetObjectLockConfiguration(ctx context.Context, in *s3.GetObjectLockConfigurationInput, optFns ...func(*s3.Options)) (*s3.GetObjectLockConfigurationOutput, error)
}

// Account is one AWS account as steps see it: a provisioner session with
// S3 and KMS bound to the region of the request's bucket there.
type Account struct {
	ID  string
	STS CallerIdentity
	IAM IAMAPI
	KMS KMSAPI
	S3  S3API
}

// Sessions opens provisioner sessions in accounts (AssumeRole into the
// provisioner role with the ExternalId), caching credentials until they
// near expiry.
type Sessions interface {
	Account(ctx context.Context, accountID, region string) (*Account, error)
}

// Facts are what steps learned that later steps need, possibly on another
// worker after a crash: the engine stores them with every step result.
type Facts struct {
	// DestinationOwnerEnforced: Y's Object Ownership is BucketOwnerEnforced.
	DestinationOwnerEnforced bool `json:"destination_owner_enforced"`
	// SourceKeyNotDelegated: KA's key policy does not delegate to A's IAM, so
	// the role must be named in it.
	SourceKeyNotDelegated bool `json:"source_key_not_delegated"`
	// RoleName is the replication role: bucketbridge's, or the one named by
	// the source bucket's existing replication configuration.
	RoleName string `json:"role_name,omitempty"`
	// RoleARN is the role's full ARN, path included, once
	// ensure_replication_role has found or created the role: from then on
	// the role exists, and other requests' documents may name it.
	RoleARN string `json:"role_arn,omitempty"`
	// AdoptedRoleARN is the ARN, path included, of the role the source
	// bucket's replication configuration names, when bucketbridge adopts it.
	AdoptedRoleARN string `json:"adopted_role_arn,omitempty"`
	// SourceObjectLock: X has Object Lock enabled, so the role also reads
	// the objects' retention and legal hold, and Y must have Object Lock too.
	SourceObjectLock bool `json:"source_object_lock,omitempty"`
	// DestinationObjectLock: Y has Object Lock enabled.
	DestinationObjectLock bool `json:"destination_object_lock,omitempty"`
	// DestinationLockDefault is the mode of Y's default retention
	// (GOVERNANCE or COMPLIANCE), "" for none: a replica of an object
	// without retention takes it.
	DestinationLockDefault string `json:"destination_lock_default,omitempty"`
	// RoleAdopted: the role was not created by bucketbridge and is never deleted by it.
	RoleAdopted bool `json:"role_adopted"`
	// RoleCreatedAt is when bucketbridge created the role; IAM propagation
	// errors are retried for a bounded time after it.
	RoleCreatedAt *time.Time `json:"role_created_at,omitempty"`
	// PermissionsWrittenAt is when a step of this request last wrote a
	// document replication depends on (the role, its trust or permission
	// policies, B's bucket and key policies, KA's key policy): a canary that
	// goes FAILED within the propagation timeout of it is written again.
	PermissionsWrittenAt *time.Time `json:"permissions_written_at,omitempty"`
	// SourceVersioned and DestinationVersioned: inspection found
	// versioning Enabled on X and on Y. Enabled never reverts to
	// unversioned, so the versioning steps need not read it again.
	SourceVersioned      bool `json:"source_versioned,omitempty"`
	DestinationVersioned bool `json:"destination_versioned,omitempty"`
	// VersioningEnabledAt is when bucketbridge enabled versioning on a
	// bucket; "versioning must be enabled" is retried for a bounded time after it.
	VersioningEnabledAt *time.Time `json:"versioning_enabled_at,omitempty"`
	// SourceEncryptionSet: X's default encryption is SSE-KMS with KA because
	// bucketbridge set it for a request that asked for it
	// (set_source_default_encryption), and SourceEncryptionBefore is what it
	// was before (nil: none). Every request from X that asks for the setting
	// carries both, so whichever of them is deprovisioned last restores it.
	SourceEncryptionSet    bool                     `json:"source_encryption_set,omitempty"`
	SourceEncryptionBefore *policy.BucketEncryption `json:"source_encryption_before,omitempty"`
	// SourceEncryptionDecided: set_source_default_encryption has decided
	// for this request (set the setting, or found it and remembered what
	// it was if a request had set it); only then does the request count as
	// asking for it when another request's removal decides whether to
	// restore it.
	SourceEncryptionDecided bool `json:"source_encryption_decided,omitempty"`
	// CanaryLatency is how long the canary took to replicate.
	CanaryLatency time.Duration `json:"canary_latency_ns,omitempty"`
}

// StepConfig tunes steps. Zero durations take the defaults.
type StepConfig struct {
	// TrustConditions adds the confused-deputy conditions to the role's
	// trust policy (BB_TRUST_CONDITIONS).
	TrustConditions bool
	// StepTimeout bounds one attempt of one step (BB_STEP_TIMEOUT).
	StepTimeout time.Duration
	// VerifyTimeout bounds how long the canary may take to replicate
	// (BB_VERIFY_TIMEOUT); verify gets it on top of StepTimeout.
	VerifyTimeout time.Duration
	// PropagationTimeout bounds how long, after bucketbridge created the
	// replication role or enabled versioning, AWS's "not visible yet"
	// errors are retried (BB_PROPAGATION_TIMEOUT).
	PropagationTimeout time.Duration
	// PollInterval is how often the canary's replication status is read.
	PollInterval time.Duration
	// RoleBoundary names the managed policy, in each source account, that
	// replication roles bucketbridge creates get as their permissions
	// boundary (BB_ROLE_PERMISSIONS_BOUNDARY); "" for none.
	RoleBoundary string
	// World names the AWS the documents live in, for the records of shared
	// writes (Holders.Granted): processes share them only within one world.
	// All of AWS is one; each dev-mode process has an in-memory AWS of its
	// own unless they share one.
	World string
}

func (c StepConfig) withDefaults() StepConfig {
	c.StepTimeout = cmp.Or(c.StepTimeout, DefaultStepTimeout)
	c.VerifyTimeout = cmp.Or(c.VerifyTimeout, DefaultVerifyTimeout)
	c.PropagationTimeout = cmp.Or(c.PropagationTimeout, DefaultPropagationTimeout)
	c.PollInterval = cmp.Or(c.PollInterval, defaultPollInterval)
	return c
}

// Run is what one step works with.
type Run struct {
	Replication Replication
	Source      *Account
	Destination *Account
	Config      StepConfig
	// Lock takes the Postgres advisory locks named by keys (documents' ARNs)
	// and returns their release; the group runner holds a step's (StepDef.
	// Locks) across its read-modify-write of a shared document, so that
	// concurrent requests never lose each other's statements. Several keys
	// are taken together, in a fixed order, so lockers never deadlock.
	Lock func(ctx context.Context, keys ...string) (unlock func(), err error)
	// Holders says who holds grants in shared documents (the store).
	Holders Holders
	// Now is the clock.
	Now func() time.Time
	// Log receives what steps log.
	Log *slog.Logger

	// interrupt is closed when interruptible steps must stop waiting.
	interrupt <-chan struct{}
	// attempted holds the steps that had started an attempt before this run
	// (Claim.Attempted), crashed ones included.
	attempted map[string]bool

	mu    sync.Mutex
	facts Facts
	ran   map[string]bool
}

// firstTry reports whether this is the first attempt ever of step: no
// earlier run started it, nor did this one. Each call counts as one.
func (r *Run) firstTry(step string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ran == nil {
		r.ran = map[string]bool{}
	}
	first := !r.attempted[step] && !r.ran[step]
	r.ran[step] = true
	return first
}

// now reads the run's clock.
func (r *Run) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}

func (r *Run) logger() *slog.Logger { return cmp.Or(r.Log, slog.Default()) }

// NewRun returns a run that starts from what earlier steps learned.
func NewRun(r Replication, facts Facts) *Run {
	return &Run{Replication: r, facts: facts, Now: time.Now}
}

// Facts returns a copy of what steps learned so far.
func (r *Run) Facts() Facts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.facts
}

// wrotePermissions records that a step is about to write a document
// replication depends on. It is recorded before the call, so that a write
// whose answer is lost still counts.
func (r *Run) wrotePermissions() {
	at := r.now()
	r.Learn(func(f *Facts) { f.PermissionsWrittenAt = &at })
}

// Learn records something a step found; steps of one group call it
// concurrently.
func (r *Run) Learn(update func(*Facts)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	update(&r.facts)
}

// Result is the record of what a step did.
type Result struct {
	// Changed: the step wrote something.
	Changed bool
	// Before and After are the documents as read and as left, stored as JSON.
	Before any
	After  any
	// Skipped: the step did not apply to this request (for example verify
	// when the request asked for none, or a key that needs no statement).
	Skipped bool
	// Warnings are what the caller should know although the step went on;
	// the step sets Code and Message, the engine the rest. They replace
	// what earlier attempts of the step warned.
	Warnings []Warning
}

// warn returns a warning with code and message for a step's result.
func warn(code, format string, args ...any) Warning {
	return Warning{Code: code, Message: fmt.Sprintf(format, args...)}
}

// StepFunc performs one step. It returns nil to advance, an error made by
// Retry to be run again after a delay, an error made by Permanent to fail
// the request, and any other error to be retried with backoff until the
// request's deadline.
type StepFunc func(ctx context.Context, run *Run) (Result, error)

// RetryError asks for the step to run again after a delay.
type RetryError struct {
	After time.Duration
	Err   error
}

func (e *RetryError) Error() string { return fmt.Sprintf("retry in %s: %v", e.After, e.Err) }
func (e *RetryError) Unwrap() error { return e.Err }

// Retry keeps the step and runs it again after d.
func Retry(d time.Duration, err error) error { return &RetryError{After: d, Err: err} }

// PermanentError fails the request. Detail tells a human what to fix.
type PermanentError struct {
	Detail string
	Err    error
}

func (e *PermanentError) Error() string {
	if e.Err == nil {
		return e.Detail
	}
	return e.Detail + ": " + e.Err.Error()
}
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent fails the request with a detail saying what to fix.
func Permanent(detail string, err error) error { return &PermanentError{Detail: detail, Err: err} }

// IsPermanent reports whether err fails the request.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// Phase says whether a step builds replication up or takes it down.
type Phase string

const (
	// PhaseProvision steps run from pending/running to succeeded.
	PhaseProvision Phase = "provision"
	// PhaseDeprovision steps run from deprovisioning to deprovisioned.
	PhaseDeprovision Phase = "deprovision"
)

// StepDef is one row of a phase's step table. Steps with the same Group
// touch different documents and run concurrently; groups run in order.
type StepDef struct {
	Name  string
	Group int
	Run   StepFunc
	// TimeoutFunc, when set, gives the step's time limit instead of
	// StepConfig.StepTimeout: verify waits for S3 on top of its calls.
	TimeoutFunc func(StepConfig) time.Duration
	// Locks, when set, names the documents the step writes: the group
	// runner holds their advisory locks while the step runs. Steps of one
	// group lock different documents.
	Locks func(run *Run) []string
	// Skip, when set, says before the step runs that this run of it has
	// nothing to do: it is recorded as skipped without taking its locks, so
	// that it does not queue behind every request sharing the document.
	Skip func(run *Run) bool
	// Interruptible: the step mostly waits (verify's canary) and is safe to
	// stop at any moment, so a caller's cancel or a shutdown stops it at
	// once instead of letting it run to its end. It must clean up after
	// itself without its context.
	Interruptible bool
	// Undoes names the provisioning step whose effect a deprovisioning step
	// removes; the step is skipped when that one never started, so a
	// request that failed before writing anything (a mistyped key ARN, an
	// unreachable account) deprovisions without touching AWS.
	Undoes string
}
