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

// notFoundCodes are the AWS error codes that mean "there is no such thing"
// (DESIGN §10): S3 answers HEAD requests with a bare 404 "NotFound".
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
	"NoSuchKey":                                      true,
	"NoSuchVersion":                                  true,
}

// IsNotFound reports whether err is AWS saying the bucket, policy,
// configuration, role, key or object asked for does not exist.
func IsNotFound(err error) bool {
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

// IsPropagationError reports whether err is how S3, KMS or IAM reject a role
// that IAM has not propagated yet: an "invalid principal" in a bucket or key
// policy, or PutBucketReplication's InvalidRequest naming the role.
func IsPropagationError(err error) bool {
	if err == nil {
		return false
	}
	msg := strings.ToLower(errorMessage(err))
	switch errorCode(err) {
	case "MalformedPolicyDocument", "MalformedPolicyDocumentException", "MalformedPolicy":
		return strings.Contains(msg, "invalid principal")
	case "InvalidRequest", "InvalidArgument":
		return strings.Contains(msg, "principal") || strings.Contains(msg, "role")
	}
	return false
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
	"NoSuchBucket":                       true,
	"NoSuchEntity":                       true,
	"NoSuchEntityException":              true,
	"NotFoundException":                  true,
	"IllegalLocationConstraintException": true,
	"PermanentRedirect":                  true,
	"AuthorizationHeaderMalformed":       true,
	"DeleteConflict":                     true,
	"DeleteConflictException":            true,
	"UnmodifiableEntity":                 true,
	"UnmodifiableEntityException":        true,
}

// classify turns an error of an AWS call (or of building a document for it)
// into what the engine acts on: nil stays nil; a document over an AWS limit, a
// denied call, refused credentials, an unusable key and a request AWS rejects
// as invalid fail the request with a detail naming the account, the call and
// what to check; everything else (throttling, 5xx, timeouts, lost
// connections) is returned wrapped, for the engine to retry with backoff.
// Eventual-consistency errors are decided by the caller before classify,
// because only it knows whether the change may still be propagating.
func classify(err error, c call) error {
	if err == nil {
		return nil
	}
	if IsPermanent(err) {
		return err
	}
	var re *RetryError
	if errors.As(err, &re) {
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
	switch {
	case credentialCodes[code]:
		return Permanent(fmt.Sprintf("account %s rejected the credentials of %s on %s (%s): check the service's own credentials, that the provisioner role exists in account %s and that its trust policy lets the service assume it with the configured ExternalId",
			c.Account, c.Action, c.Resource, code, c.Account), err)
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
