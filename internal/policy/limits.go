package policy

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// AWS size limits checked before anything is written. A document over a limit fails the
// step permanently: retrying cannot make it fit.
const (
	// MaxBucketPolicyBytes is S3's bucket policy size limit, 20 KB.
	// See https://docs.aws.amazon.com/AmazonS3/latest/userguide/example-bucket-policies.html
	// ("Bucket policies are limited to 20 KB in size").
	MaxBucketPolicyBytes = 20 * 1024
	// MaxKeyPolicyBytes is KMS's key policy size limit, 32 KiB (32,768 bytes).
	// See https://docs.aws.amazon.com/kms/latest/APIReference/API_PutKeyPolicy.html (Policy)
	MaxKeyPolicyBytes = 32 * 1024
	// MaxRoleInlinePolicyChars is IAM's limit on the aggregate size of all inline policies
	// embedded in one role, 10,240 characters; IAM does not count white space.
	// See https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html#reference_iam-quotas-entity-length
	MaxRoleInlinePolicyChars = 10240
	// MaxManagedPolicyChars is IAM's limit on the size of one customer-managed policy, 6,144
	// characters; IAM does not count white space.
	// See https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html#reference_iam-quotas-entity-length
	MaxManagedPolicyChars = 6144
	// MaxManagedPoliciesPerRole is IAM's default quota of managed policies attached to one
	// role ("Managed policies attached to an IAM role", adjustable up to 20 on request; the
	// default is what every account has).
	// See https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html#reference_iam-quotas-entities
	MaxManagedPoliciesPerRole = 10
	// MaxReplicationRules is the number of rules one replication configuration may hold.
	// See https://docs.aws.amazon.com/AmazonS3/latest/API/API_ReplicationConfiguration.html
	// ("can contain a maximum of 1,000 rules").
	MaxReplicationRules = 1000
	// MaxRoleNameLen is IAM's role name length limit.
	// See https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html
	MaxRoleNameLen = 64
	// MaxPolicyNameLen is IAM's inline policy name length limit.
	// See https://docs.aws.amazon.com/IAM/latest/APIReference/API_PutRolePolicy.html
	MaxPolicyNameLen = 128
)

// ErrLimitExceeded is matched (with errors.Is) by every [*LimitError].
var ErrLimitExceeded = errors.New("aws limit exceeded")

// LimitError reports a document that would exceed an AWS limit.
type LimitError struct {
	// Limit names the limit, e.g. "bucket policy size".
	Limit string
	// Unit is what Size and Max count: "bytes", "characters" or "rules".
	Unit string
	// Size is what the document would have.
	Size int
	// Max is the most AWS accepts.
	Max int
}

// Error implements error.
func (e *LimitError) Error() string {
	return fmt.Sprintf("%s would be %d %s, over the AWS limit of %d %s", e.Limit, e.Size, e.Unit, e.Max, e.Unit)
}

// Is makes errors.Is(err, ErrLimitExceeded) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimitExceeded }

// Size returns the number of bytes the document takes as bucketbridge writes it (compact JSON).
func Size(d Document) int { return len(d.appendJSON(nil)) }

// CheckBucketPolicy returns a [*LimitError] when d is over [MaxBucketPolicyBytes].
func CheckBucketPolicy(d Document) error {
	if n := Size(d); n > MaxBucketPolicyBytes {
		return &LimitError{Limit: "bucket policy size", Unit: "bytes", Size: n, Max: MaxBucketPolicyBytes}
	}
	return nil
}

// CheckKeyPolicy returns a [*LimitError] when d is over [MaxKeyPolicyBytes].
func CheckKeyPolicy(d Document) error {
	if n := Size(d); n > MaxKeyPolicyBytes {
		return &LimitError{Limit: "key policy size", Unit: "bytes", Size: n, Max: MaxKeyPolicyBytes}
	}
	return nil
}

// PolicyChars counts an IAM policy document as IAM counts it against its size quotas: the
// characters of the document as bucketbridge writes it (compact JSON, so without white space
// between elements). White space inside strings, which IAM does not count either, is counted:
// an upper bound by at most a few characters, so every check errs on the safe side.
func PolicyChars(d Document) int { return utf8.RuneCount(d.appendJSON(nil)) }

// InlinePolicyChars counts a role's inline policies together, each as [PolicyChars] does.
func InlinePolicyChars(policies map[string]Document) int {
	n := 0
	for _, d := range policies {
		n += PolicyChars(d)
	}
	return n
}

// CheckRolePolicies returns a [*LimitError] when the role's inline policies together are over
// [MaxRoleInlinePolicyChars].
func CheckRolePolicies(policies map[string]Document) error {
	if n := InlinePolicyChars(policies); n > MaxRoleInlinePolicyChars {
		return &LimitError{Limit: "role inline policies (all together)", Unit: "characters", Size: n, Max: MaxRoleInlinePolicyChars}
	}
	return nil
}

// CheckReplication returns a [*LimitError] when c has more than [MaxReplicationRules] rules.
func CheckReplication(c ReplicationConfiguration) error {
	if n := len(c.Rules); n > MaxReplicationRules {
		return &LimitError{Limit: "replication rules", Unit: "rules", Size: n, Max: MaxReplicationRules}
	}
	return nil
}
