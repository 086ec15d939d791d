package provision

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// sdkErr wraps an API error the way aws-sdk-go-v2 hands it to callers:
// *smithy.OperationError{*awshttp.ResponseError{*smithyhttp.ResponseError{api error}}}.
func sdkErr(service, op string, status int, apiErr error) error {
	return &smithy.OperationError{ServiceID: service, OperationName: op, Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status, Header: http.Header{}}},
			Err:      apiErr,
		},
		RequestID: "req-1",
	}}
}

func generic(code, msg string) error { return &smithy.GenericAPIError{Code: code, Message: msg} }

func TestClassify(t *testing.T) {
	t.Parallel()
	const (
		notFound = iota
		permanent
		plain
		propagation
	)
	c := call{Account: "111111111111", Action: "s3:PutBucketPolicy", Resource: "demo-destination"}
	tests := []struct {
		name   string
		err    error
		kinds  []int
		detail string
	}{
		{"s3 NoSuchBucket", sdkErr("S3", "GetBucketPolicy", 404, generic("NoSuchBucket", "The specified bucket does not exist")), []int{notFound, permanent}, ""},
		{"s3 HeadBucket 404", sdkErr("S3", "HeadBucket", 404, &s3types.NotFound{}), []int{notFound, permanent}, ""},
		{"s3 HeadBucket bare 404", sdkErr("S3", "HeadBucket", 404, errors.New("not found, status code: 404")), []int{notFound, permanent}, ""},
		{"s3 NoSuchBucketPolicy", sdkErr("S3", "GetBucketPolicy", 404, generic("NoSuchBucketPolicy", "The bucket policy does not exist")), []int{notFound, permanent}, ""},
		{"s3 ReplicationConfigurationNotFoundError", sdkErr("S3", "GetBucketReplication", 404, generic("ReplicationConfigurationNotFoundError", "The replication configuration was not found")), []int{notFound, permanent}, ""},
		{"s3 OwnershipControlsNotFoundError", sdkErr("S3", "GetBucketOwnershipControls", 404, generic("OwnershipControlsNotFoundError", "")), []int{notFound, permanent}, ""},
		{"s3 ServerSideEncryptionConfigurationNotFoundError", sdkErr("S3", "GetBucketEncryption", 404, generic("ServerSideEncryptionConfigurationNotFoundError", "")), []int{notFound, permanent}, ""},
		{"s3 NoSuchKey", sdkErr("S3", "GetObject", 404, &s3types.NoSuchKey{}), []int{notFound, permanent}, ""},
		{"iam NoSuchEntity", sdkErr("IAM", "GetRole", 404, &iamtypes.NoSuchEntityException{Message: aws.String("The role with name x cannot be found.")}), []int{notFound, permanent}, ""},
		{"kms NotFoundException", sdkErr("KMS", "DescribeKey", 400, &kmstypes.NotFoundException{Message: aws.String("Key does not exist")}), []int{notFound, permanent}, ""},

		{"s3 SlowDown", sdkErr("S3", "PutBucketPolicy", 503, generic("SlowDown", "Please reduce your request rate.")), []int{plain}, ""},
		{"kms ThrottlingException", sdkErr("KMS", "PutKeyPolicy", 400, generic("ThrottlingException", "Rate exceeded")), []int{plain}, ""},
		{"iam Throttling", sdkErr("IAM", "GetRole", 400, generic("Throttling", "Rate exceeded")), []int{plain}, ""},
		{"s3 InternalError", sdkErr("S3", "PutBucketPolicy", 500, generic("InternalError", "We encountered an internal error.")), []int{plain}, ""},
		{"kms KMSInternalException", sdkErr("KMS", "GetKeyPolicy", 500, &kmstypes.KMSInternalException{}), []int{plain}, ""},
		{"iam ServiceFailure", sdkErr("IAM", "CreateRole", 500, &iamtypes.ServiceFailureException{}), []int{plain}, ""},
		{"iam ConcurrentModification", sdkErr("IAM", "PutRolePolicy", 409, &iamtypes.ConcurrentModificationException{}), []int{plain}, ""},
		{"s3 OperationAborted", sdkErr("S3", "PutBucketReplication", 409, generic("OperationAborted", "A conflicting conditional operation is currently in progress")), []int{plain}, ""},
		{"expired token", sdkErr("STS", "GetCallerIdentity", 403, generic("ExpiredToken", "The security token included in the request is expired")), []int{plain}, ""},
		{"timeout", &smithy.OperationError{ServiceID: "S3", OperationName: "PutObject", Err: context.DeadlineExceeded}, []int{plain}, ""},
		{"connection reset", &smithy.OperationError{ServiceID: "S3", OperationName: "PutBucketPolicy", Err: &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}}, []int{plain}, ""},

		{"s3 AccessDenied", sdkErr("S3", "PutBucketPolicy", 403, generic("AccessDenied", "Access Denied")), []int{permanent}, "account 111111111111 denied s3:PutBucketPolicy on demo-destination"},
		{"kms AccessDeniedException", sdkErr("KMS", "PutKeyPolicy", 400, generic("AccessDeniedException", "User is not authorized")), []int{permanent}, "provisioner role's policy in account 111111111111"},
		{"bare 403", sdkErr("S3", "HeadBucket", 403, errors.New("forbidden")), []int{permanent}, "denied"},
		{"s3 MethodNotAllowed", sdkErr("S3", "GetBucketPolicy", 405, generic("MethodNotAllowed", "The specified method is not allowed against this resource.")), []int{permanent}, "denied"},
		{"sts InvalidClientTokenId", sdkErr("STS", "GetCallerIdentity", 403, generic("InvalidClientTokenId", "The security token included in the request is invalid.")), []int{permanent}, "ExternalId"},
		{"kms disabled key", sdkErr("KMS", "PutKeyPolicy", 400, &kmstypes.KMSInvalidStateException{Message: aws.String("key is disabled")}), []int{permanent}, "aws kms enable-key"},
		{"kms DisabledException", sdkErr("KMS", "Encrypt", 400, &kmstypes.DisabledException{}), []int{permanent}, "enable it"},
		{"s3 KMS.DisabledException", sdkErr("S3", "PutObject", 400, generic("KMS.DisabledException", "key is disabled")), []int{permanent}, "enable it"},
		{"iam LimitExceeded", sdkErr("IAM", "PutRolePolicy", 409, &iamtypes.LimitExceededException{Message: aws.String("Maximum policy size of 10240 bytes exceeded")}), []int{permanent}, "LimitExceeded"},
		{"policy limit", fmt.Errorf("merge: %w", &policy.LimitError{Limit: "bucket policy size", Unit: "bytes", Size: 20481, Max: 20480}), []int{permanent}, "bucket policy size limit (20481 bytes, at most 20480)"},
		{"legacy schema", fmt.Errorf("merge: %w", policy.ErrLegacyReplicationSchema), []int{permanent}, "legacy rule schema"},

		{"iam invalid principal", sdkErr("IAM", "UpdateAssumeRolePolicy", 400, &iamtypes.MalformedPolicyDocumentException{Message: aws.String("Invalid principal in policy: \"AWS\":\"arn:aws:iam::1:role/x\"")}), []int{permanent, propagation}, ""},
		{"kms invalid principal", sdkErr("KMS", "PutKeyPolicy", 400, &kmstypes.MalformedPolicyDocumentException{Message: aws.String("Policy contains a statement with one or more invalid principals.")}), []int{permanent, propagation}, ""},
		{"s3 invalid principal", sdkErr("S3", "PutBucketPolicy", 400, generic("MalformedPolicy", "Invalid principal in policy")), []int{permanent, propagation}, ""},
		{"s3 replication InvalidRequest is not propagation", sdkErr("S3", "PutBucketReplication", 400, generic("InvalidRequest", "Invalid principal in policy")), []int{permanent}, ""},
		{"an InvalidRequest naming a role is not propagation", sdkErr("S3", "PutBucketReplication", 400, generic("InvalidRequest", "The role arn:aws:iam::1:role/x is not valid")), []int{permanent}, ""},
		{"s3 destination versioning", sdkErr("S3", "PutBucketReplication", 400, generic("InvalidRequest", "Destination bucket must have versioning enabled.")), []int{permanent, propagation}, "enable_versioning"},
		{"missing credentials", &smithy.OperationError{ServiceID: "STS", OperationName: "AssumeRole", Err: errors.New("get identity: get credentials: failed to refresh cached credentials, no EC2 IMDS role found")}, []int{permanent}, "no usable AWS credentials"},
		{"s3 malformed policy", sdkErr("S3", "PutBucketPolicy", 400, generic("MalformedPolicy", "Policy has invalid resource")), []int{permanent}, "Policy has invalid resource"},
		{"s3 versioning", sdkErr("S3", "PutBucketReplication", 400, generic("InvalidRequest", "Versioning must be 'Enabled' on the bucket to apply a replication configuration")), []int{permanent, propagation}, "enable_versioning"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			has := func(k int) bool {
				for _, x := range tt.kinds {
					if x == k {
						return true
					}
				}
				return false
			}
			got := classify(tt.err, c)
			// Whichever a caller asks first, the answer is the same.
			if IsNotFound(tt.err) != has(notFound) || IsNotFound(got) != has(notFound) {
				t.Errorf("IsNotFound = %v before classify, %v after", IsNotFound(tt.err), IsNotFound(got))
			}
			var nv *notVisible
			if errors.As(got, &nv) != has(propagation) {
				t.Errorf("classify(%v) not visible = %v", tt.err, !has(propagation))
			}
			switch {
			case got == nil:
				t.Fatal("classify returned nil")
			case !errors.Is(got, tt.err) && !errors.Is(got, errors.Unwrap(tt.err)):
				t.Errorf("classify lost the cause: %v", got)
			}
			if has(permanent) != IsPermanent(got) {
				t.Errorf("IsPermanent(classify) = %v: %v", IsPermanent(got), got)
			}
			if has(plain) && IsPermanent(got) {
				t.Errorf("transient error classified permanent: %v", got)
			}
			if tt.detail != "" && !strings.Contains(got.Error(), tt.detail) {
				t.Errorf("classify = %q, want it to mention %q", got, tt.detail)
			}
		})
	}
	if classify(nil, c) != nil {
		t.Error("classify(nil) != nil")
	}
}

func TestPropagating(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	run := &Run{Now: func() time.Time { return now }, Config: StepConfig{PropagationTimeout: 90 * time.Second}}
	recent, old := now.Add(-time.Minute), now.Add(-90*time.Second)
	if run.propagating(nil) || !run.propagating(&recent) || run.propagating(&old) {
		t.Error("propagating disagrees with the propagation timeout")
	}
	c := call{Account: "222222222222", Action: "kms:PutKeyPolicy", Resource: "key"}
	invalid := classify(sdkErr("KMS", "PutKeyPolicy", 400, &kmstypes.MalformedPolicyDocumentException{Message: aws.String("Policy contains a statement with one or more invalid principals.")}), c)
	var re *RetryError
	if err := run.whilePropagating(invalid, &recent); !errors.As(err, &re) {
		t.Errorf("an invalid principal right after creating the role = %v, want Retry", err)
	}
	if err := run.whilePropagating(invalid, &old); !IsPermanent(err) || errors.As(err, &re) {
		t.Errorf("an invalid principal long after creating the role = %v, want permanent", err)
	}
	denied := classify(sdkErr("KMS", "PutKeyPolicy", 400, generic("AccessDeniedException", "no")), c)
	if err := run.whilePropagating(denied, &recent); errors.As(err, &re) {
		t.Errorf("a denial right after creating the role = %v, want it left permanent", err)
	}
}
