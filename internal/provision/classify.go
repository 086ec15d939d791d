package provision

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// DefaultPropagationTimeout bounds how long, after bucketbridge created the
// replication role or enabled versioning on a bucket, the errors that mean "not
// visible yet" are retried: IAM is eventually consistent, and S3 and KMS reject
// a fresh role as an invalid principal for a few seconds. terraform-provider-aws
// waits the same 2 minutes for IAM (propagationTimeout in
// internal/service/iam/wait.go), citing the IAM User Guide, "Troubleshooting
// IAM", "Changes that I make are not always immediately visible":
// https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency
const DefaultPropagationTimeout = 2 * time.Minute

// propagationRetryDelay is how long a step waits before trying again while a
// fresh role or versioning change propagates.
const propagationRetryDelay = 5 * time.Second

// notFoundCodes are the AWS error codes that mean "there is no such thing":
// S3 answers HEAD requests with a bare 404 "NotFound".
var notFoundCodes = map[string]bool{
	"NoSuchBucket":                                   true,
	"NotFound":                                       true,
	"NoSuchBucketPolicy":                             true,
	"ReplicationConfigurationNotFoundError":          true,
	"NoSuchEntity":                                   true,
	"NoSuchEntityException":                          true,
	"NotFoundException":                              true,
	"OwnershipControlsNotFoundError":                 true,
	"ServerSideEncryptionConfigurationNotFoundError": true,
	"ObjectLockConfigurationNotFoundError":           true,
	"NoSuchKey":                                      true,
	"NoSuchVersion":                                  true,
}

// notFound is an AWS answer that what a call asked for does not exist.
type notFound struct {
	call call
	err  error
}

func (e *notFound) Error() string {
	return fmt.Sprintf("account %s has no %s (%s answered %s)", e.call.Account, e.call.Resource, e.call.Action, errorCode(e.err))
}
func (e *notFound) Unwrap() error { return e.err }

// IsNotFound reports whether err is AWS saying that the bucket, policy,
// configuration, role, key or object asked for does not exist, as AWS
// answered it or as classify passed it on.
func IsNotFound(err error) bool {
	var nf *notFound
	return errors.As(err, &nf) || isNotFoundAnswer(err)
}

func isNotFoundAnswer(err error) bool {
	if err == nil {
		return false
	}
	if notFoundCodes[errorCode(err)] {
		return true
	}
	// HeadBucket and HeadObject answer a bodiless 404 that some SDK versions
	// surface without a code.
	return httpStatus(err) == http.StatusNotFound && errorCode(err) == ""
}

// notVisible is an AWS answer that may only mean a change has not
// propagated yet: a principal S3, KMS or IAM does not know (a role created
// seconds ago), or a bucket whose versioning S3 does not see enabled yet.
type notVisible struct {
	what string // "principal" or "versioning"
	err  error
}

func (e *notVisible) Error() string { return e.what + " not visible: " + e.err.Error() }
func (e *notVisible) Unwrap() error { return e.err }

// notVisibleAnswers are the exact answers AWS gives for a change that may
// still be propagating: code → message prefix (compared case-insensitively).
//   - S3 PutBucketPolicy naming a role IAM has not propagated: MalformedPolicy
//     "Invalid principal in policy"; IAM answers the same for trust policies
//     (MalformedPolicyDocument). terraform-provider-aws retries exactly these
//     within its IAM propagation timeout (internal/service/iam/role.go).
//   - KMS PutKeyPolicy: MalformedPolicyDocumentException "Policy contains a
//     statement with one or more invalid principals." (AWS CDK's
//     bootstrapping guide describes it for roles that do not exist yet).
//   - S3 PutBucketReplication right after versioning was enabled:
//     InvalidRequest "Versioning must be 'Enabled' on the bucket …", which
//     terraform-provider-aws retries within the same timeout
//     (internal/service/s3/bucket_replication_configuration.go), and
//     "Destination bucket must have versioning enabled."
var notVisibleAnswers = []struct{ code, prefix, what string }{
	{"MalformedPolicy", "invalid principal in policy", "principal"},
	{"MalformedPolicyDocument", "invalid principal in policy", "principal"},
	{"MalformedPolicyDocumentException", "invalid principal in policy", "principal"},
	{"MalformedPolicyDocumentException", "policy contains a statement with one or more invalid principals", "principal"},
	{"InvalidRequest", "versioning must be 'enabled' on the bucket", "versioning"},
	{"InvalidRequest", "destination bucket must have versioning enabled", "versioning"},
}

func notVisibleKind(err error) string {
	code, msg := errorCode(err), strings.ToLower(errorMessage(err))
	for _, a := range notVisibleAnswers {
		if code == a.code && strings.HasPrefix(msg, a.prefix) {
			return a.what
		}
	}
	return ""
}

// whilePropagating turns a classified "not visible yet" answer into a
// Retry while the change it may be waiting for (made at since) propagates,
// and leaves every other error as it is.
func (r *Run) whilePropagating(err error, since *time.Time) error {
	var nv *notVisible
	if errors.As(err, &nv) && r.propagating(since) {
		// The retry wraps AWS's answer, not the permanent error around it.
		return Retry(propagationRetryDelay, fmt.Errorf("the %s change is not visible yet: %w", nv.what, nv.err))
	}
	return err
}

// errorCode returns the AWS error code of err, or "".
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// errorMessage returns the AWS error message of err, or err's text.
func errorMessage(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorMessage()
	}
	return err.Error()
}

// httpStatus returns the HTTP status AWS answered with, or 0.
func httpStatus(err error) int {
	var are *awshttp.ResponseError
	if errors.As(err, &are) {
		return are.HTTPStatusCode()
	}
	var sre *smithyhttp.ResponseError
	if errors.As(err, &sre) {
		return sre.HTTPStatusCode()
	}
	return 0
}

// propagating reports whether a change made at since may still be
// propagating: it is less than the propagation timeout old.
func (r *Run) propagating(since *time.Time) bool {
	return since != nil && r.now().Sub(*since) < r.Config.withDefaults().PropagationTimeout
}

// call names one AWS call for the details of permanent errors.
type call struct {
	// Account is the account the call acts in.
	Account string
	// Action is the IAM action, e.g. "s3:PutBucketPolicy".
	Action string
	// Resource is what the call acts on (an ARN or name).
	Resource string
}

// deniedCodes mean the caller may not do what it asked: the provisioner
// role's permissions (or an SCP, boundary, bucket or key policy) must change.
var deniedCodes = map[string]bool{
	"AccessDenied":          true,
	"AccessDeniedException": true,
	"AllAccessDisabled":     true,
	"MethodNotAllowed":      true,
	"UnauthorizedOperation": true,
}

// credentialCodes mean the credentials themselves were refused.
var credentialCodes = map[string]bool{
	"InvalidClientTokenId":        true,
	"UnrecognizedClientException": true,
	"SignatureDoesNotMatch":       true,
	"InvalidAccessKeyId":          true,
	"InvalidToken":                true,
	"IncompleteSignature":         true,
	"OptInRequired":               true,
	"AuthFailure":                 true,
	"MissingAuthenticationToken":  true,
	"InvalidSignatureException":   true,
	"RegionDisabledException":     true,
	"InvalidIdentityToken":        true,
	"IDPRejectedClaim":            true,
}

// keyStateCodes mean the KMS key cannot be used as it is.
var keyStateCodes = map[string]bool{
	"KMSInvalidStateException":     true,
	"DisabledException":            true,
	"KMS.DisabledException":        true,
	"KMS.NotFoundException":        true,
	"KMS.KMSInvalidStateException": true,
}

// invalidCodes mean AWS rejected what was asked as it stands: asking again
// cannot help.
var invalidCodes = map[string]bool{
	"InvalidRequest":                     true,
	"InvalidArgument":                    true,
	"MalformedPolicy":                    true,
	"MalformedPolicyDocument":            true,
	"MalformedPolicyDocumentException":   true,
	"MalformedXML":                       true,
	"ValidationError":                    true,
	"ValidationException":                true,
	"InvalidInput":                       true,
	"InvalidInputException":              true,
	"LimitExceeded":                      true,
	"LimitExceededException":             true,
	"EntityTooLarge":                     true,
	"InvalidBucketState":                 true,
	"InvalidArnException":                true,
	"UnsupportedOperationException":      true,
	"IllegalLocationConstraintException": true,
	"PermanentRedirect":                  true,
	"AuthorizationHeaderMalformed":       true,
	"DeleteConflict":                     true,
	"DeleteConflictException":            true,
	"UnmodifiableEntity":                 true,
	"UnmodifiableEntityException":        true,
}

// credentialFailures are how the SDK says it found no usable credentials of
// the service's own (aws/credential_cache.go and aws/signer/v4/middleware.go
// of aws-sdk-go-v2); such an error carries no AWS error code.
var credentialFailures = []string{"failed to refresh cached credentials", "failed to retrieve credentials"}

// classify turns the error of an AWS call (or of building a document for
// it) into what the steps and the engine act on. Whatever a caller checks
// first, the outcome is one of:
//   - nil, for nil;
//   - a not-found answer (IsNotFound), which fails the request unless the
//     caller expected the absence and handles it;
//   - a "not visible yet" answer, which fails the request unless the caller
//     just made the change it waits for (Run.whilePropagating);
//   - any other *PermanentError, whose detail names the account, the call
//     and what to fix: a document over an AWS limit, a denied call, refused
//     or missing credentials, an unusable key, a request AWS rejects as
//     invalid;
//   - anything else, wrapped: throttling, 5xx, timeouts and lost
//     connections, which the engine retries with backoff.
func classify(err error, c call) error {
	if err == nil {
		return nil
	}
	var re *RetryError
	if IsPermanent(err) || errors.As(err, &re) {
		return err
	}
	var le *policy.LimitError
	if errors.As(err, &le) {
		return Permanent(fmt.Sprintf("%s on %s would exceed the AWS %s limit (%d %s, at most %d): remove statements or rules that are no longer needed, or split the requests across more buckets or keys",
			c.Action, c.Resource, le.Limit, le.Size, le.Unit, le.Max), err)
	}
	if errors.Is(err, policy.ErrLegacyReplicationSchema) {
		return Permanent(fmt.Sprintf("the replication configuration of %s uses S3's legacy rule schema (a rule with Prefix and no Filter), which cannot be combined with bucketbridge's rule: rewrite those rules with a Filter", c.Resource), err)
	}
	code := errorCode(err)
	status := httpStatus(err)
	switch what := notVisibleKind(err); {
	case isNotFoundAnswer(err):
		nf := &notFound{call: c, err: err}
		return Permanent(fmt.Sprintf("account %s answered that %s does not exist (%s, to %s): check that it exists and that its name and account are right",
			c.Account, c.Resource, cmp.Or(code, "404"), c.Action), nf)
	case what == "principal":
		return Permanent(fmt.Sprintf("account %s rejected %s on %s because a principal is invalid (%s: %s): check that every role named in the document exists; a deleted role shows as an id starting with AROA",
			c.Account, c.Action, c.Resource, code, errorMessage(err)), &notVisible{what: what, err: err})
	case what == "versioning":
		return Permanent(fmt.Sprintf("account %s refused %s on %s because versioning is not enabled (%s): enable versioning on the source and destination buckets (aws s3api put-bucket-versioning --bucket <bucket> --versioning-configuration Status=Enabled), or deprovision this request (DELETE it) and resubmit it with enable_versioning: true",
			c.Account, c.Action, c.Resource, errorMessage(err)), &notVisible{what: what, err: err})
	case credentialCodes[code]:
		return Permanent(fmt.Sprintf("account %s rejected the credentials of %s on %s (%s): check the service's own credentials, that the provisioner role exists in account %s and that its trust policy lets the service assume it with the configured ExternalId",
			c.Account, c.Action, c.Resource, code, c.Account), err)
	case code == "" && containsAny(err.Error(), credentialFailures):
		return Permanent(fmt.Sprintf("the service found no usable AWS credentials of its own for %s on %s in account %s: give it credentials through the SDK's default chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, web identity, or an instance or task role)",
			c.Action, c.Resource, c.Account), err)
	case deniedCodes[code] || (status == http.StatusForbidden && code != "ExpiredToken" && code != "RequestTimeTooSkewed"):
		return Permanent(fmt.Sprintf("account %s denied %s on %s (%s): allow %s on %s in the provisioner role's policy in account %s, and check that no SCP, permissions boundary, bucket policy or key policy denies it (and, for a bucket, that account %s owns it)",
			c.Account, c.Action, c.Resource, cmp.Or(code, "403"), c.Action, c.Resource, c.Account, c.Account), err)
	case keyStateCodes[code]:
		return Permanent(fmt.Sprintf("KMS key %s in account %s is not usable for %s (%s: %s): enable it (aws kms enable-key --key-id %s), cancel its deletion, or use another customer-managed key",
			c.Resource, c.Account, c.Action, code, errorMessage(err), c.Resource), err)
	case invalidCodes[code]:
		return Permanent(fmt.Sprintf("account %s rejected %s on %s (%s: %s)", c.Account, c.Action, c.Resource, code, errorMessage(err)), err)
	}
	return fmt.Errorf("%s on %s in account %s: %w", c.Action, c.Resource, c.Account, err)
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
