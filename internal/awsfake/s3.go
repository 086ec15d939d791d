package awsfake

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// maxBucketPolicySize is S3's bucket policy size limit, 20 KB (S3 User
// Guide, "Adding a bucket policy by using the Amazon S3 console").
const maxBucketPolicySize = 20 * 1024

// compactLen is the length of a JSON document without white space between
// its elements ("" or invalid JSON: its raw length).
func compactLen(doc string) int {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(doc)); err != nil {
		return len(doc)
	}
	return b.Len()
}

// S3 is an S3 client acting as one caller in one region, with the methods
// of *s3.Client that bucketbridge uses. Buckets are global; a bucket of
// another account is reachable only as far as its bucket policy allows,
// and ExpectedBucketOwner is honoured on every call.
type S3 struct {
	c      *Cloud
	caller principal
	region string
}

// S3 returns an S3 client acting as the service's identity in account,
// with region as its endpoint region (where CreateBucket creates buckets).
func (c *Cloud) S3(account, region string) *S3 {
	return &S3{c: c, caller: serviceIdentity(account), region: region}
}

func noSuchBucket() error {
	return newErr(http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist")
}

func s3AccessDenied() error { return newErr(http.StatusForbidden, "AccessDenied", "Access Denied") }

func invalidRequest(format string, args ...any) error {
	return newErr(http.StatusBadRequest, "InvalidRequest", format, args...)
}

// bucketLocked finds a bucket and checks the caller may do action on
// resource in it: ExpectedBucketOwner, then the bucket policy (its Deny
// statements bind the owner's principals too; other accounts need an
// Allow). ownerOnly operations (the bucket policy ones) answer 405 to
// other accounts, as S3 does.
func (s *S3) bucketLocked(name string, expectedOwner *string, action, resource string, ownerOnly bool) (*bucket, error) {
	b, ok := s.c.buckets[name]
	if !ok {
		return nil, noSuchBucket()
	}
	if expectedOwner != nil && *expectedOwner != b.owner {
		return nil, s3AccessDenied()
	}
	if ownerOnly && s.caller.account != b.owner {
		return nil, newErr(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
	}
	if resource == "" {
		resource = b.arn()
	}
	if !s.c.s3Authorize(s.caller, adminIdentity, b, action, resource).ok {
		return nil, s3AccessDenied()
	}
	return b, nil
}

// s3Authorize evaluates action on resource in b for caller.
func (c *Cloud) s3Authorize(caller principal, id identity, b *bucket, action, resource string) authorization {
	var res *policyDoc
	if b.policy != "" {
		if d, err := parsePolicy(b.policy, false); err == nil {
			res = &d
		}
	}
	ctx := map[string]string{"aws:securetransport": "true", "aws:principalaccount": caller.account, "aws:principalarn": cmp.Or(caller.roleARN, caller.arn)}
	return authorize(request{caller: caller, action: action, resource: resource, context: ctx}, id, res, b.owner, bucketPolicy, "the bucket policy of "+b.name)
}

// CreateBucket creates a bucket in the client's region, owned by the
// caller's account, with S3's defaults since 2023: Object Ownership
// "bucket owner enforced" and SSE-S3 default encryption.
func (s *S3) CreateBucket(ctx context.Context, in *s3.CreateBucketInput, _ ...func(*s3.Options)) (*s3.CreateBucketOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "CreateBucket", func() (*s3.CreateBucketOutput, error) {
		name := aws.ToString(in.Bucket)
		if !bucketNameRE.MatchString(name) || strings.Contains(name, "..") {
			return nil, newErr(http.StatusBadRequest, "InvalidBucketName", "The specified bucket is not valid.")
		}
		var lc string
		if in.CreateBucketConfiguration != nil {
			lc = string(in.CreateBucketConfiguration.LocationConstraint)
		}
		switch {
		case s.region == "us-east-1" && lc == "us-east-1":
			return nil, newErr(http.StatusBadRequest, "InvalidLocationConstraint", "The specified location-constraint is not valid")
		case s.region != "us-east-1" && lc == "":
			return nil, newErr(http.StatusBadRequest, "IllegalLocationConstraintException", "The unspecified location constraint is incompatible for the region specific endpoint this request was sent to.")
		case lc != "" && lc != s.region:
			return nil, newErr(http.StatusBadRequest, "IllegalLocationConstraintException", "The %s location constraint is incompatible for the region specific endpoint this request was sent to.", lc)
		}
		if b, ok := s.c.buckets[name]; ok {
			if b.owner == s.caller.account {
				return nil, typed(http.StatusConflict, &s3types.BucketAlreadyOwnedByYou{Message: aws.String("Your previous request to create the named bucket succeeded and you already own it.")})
			}
			return nil, typed(http.StatusConflict, &s3types.BucketAlreadyExists{Message: aws.String("The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.")})
		}
		b := s.c.addBucketLocked(s.caller.account, s.region, name)
		if in.ObjectOwnership != "" {
			b.ownership = in.ObjectOwnership
		}
		if aws.ToBool(in.ObjectLockEnabledForBucket) {
			// S3 enables versioning with Object Lock, and it cannot be
			// suspended afterwards.
			b.objectLock, b.versioning = true, s3types.BucketVersioningStatusEnabled
		}
		return &s3.CreateBucketOutput{Location: aws.String("/" + name)}, nil
	})
}

func (c *Cloud) addBucketLocked(account, region, name string) *bucket {
	c.accountLocked(account)
	b := &bucket{
		name: name, owner: account, region: region, created: c.now(),
		ownership:  s3types.ObjectOwnershipBucketOwnerEnforced,
		encryption: sseS3Default(),
		objects:    map[string][]*object{},
	}
	c.buckets[name] = b
	return b
}

// sseS3Default is the default encryption of a new bucket, SSE-S3.
func sseS3Default() *s3types.ServerSideEncryptionConfiguration {
	return &s3types.ServerSideEncryptionConfiguration{Rules: []s3types.ServerSideEncryptionRule{{
		ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAes256},
		BucketKeyEnabled:                   aws.Bool(false),
	}}}
}

// HeadBucket answers 404 NotFound (*s3types.NotFound) for a missing bucket,
// as S3 does for HEAD, and reports the bucket's region.
func (s *S3) HeadBucket(ctx context.Context, in *s3.HeadBucketInput, _ ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "HeadBucket", func() (*s3.HeadBucketOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:ListBucket", "", false)
		if err != nil {
			if isCode(err, "NoSuchBucket") {
				return nil, typed(http.StatusNotFound, &s3types.NotFound{})
			}
			return nil, err
		}
		return &s3.HeadBucketOutput{BucketRegion: aws.String(b.region)}, nil
	})
}

// GetBucketLocation returns the bucket's region ("" for us-east-1, as S3
// does).
func (s *S3) GetBucketLocation(ctx context.Context, in *s3.GetBucketLocationInput, _ ...func(*s3.Options)) (*s3.GetBucketLocationOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "GetBucketLocation", func() (*s3.GetBucketLocationOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:GetBucketLocation", "", false)
		if err != nil {
			return nil, err
		}
		lc := b.region
		if lc == "us-east-1" {
			lc = ""
		}
		return &s3.GetBucketLocationOutput{LocationConstraint: s3types.BucketLocationConstraint(lc)}, nil
	})
}

// GetBucketVersioning returns the versioning status ("" if never enabled).
func (s *S3) GetBucketVersioning(ctx context.Context, in *s3.GetBucketVersioningInput, _ ...func(*s3.Options)) (*s3.GetBucketVersioningOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "GetBucketVersioning", func() (*s3.GetBucketVersioningOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:GetBucketVersioning", "", false)
		if err != nil {
			return nil, err
		}
		return &s3.GetBucketVersioningOutput{Status: b.versioning}, nil
	})
}

// PutBucketVersioning enables or suspends versioning.
func (s *S3) PutBucketVersioning(ctx context.Context, in *s3.PutBucketVersioningInput, _ ...func(*s3.Options)) (*s3.PutBucketVersioningOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "PutBucketVersioning", func() (*s3.PutBucketVersioningOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:PutBucketVersioning", "", false)
		if err != nil {
			return nil, err
		}
		if in.VersioningConfiguration == nil {
			return nil, malformedXML()
		}
		st := in.VersioningConfiguration.Status
		if st != s3types.BucketVersioningStatusEnabled && st != s3types.BucketVersioningStatusSuspended {
			return nil, malformedXML()
		}
		if b.objectLock && st != s3types.BucketVersioningStatusEnabled {
			return nil, newErr(http.StatusConflict, "InvalidBucketState", "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.")
		}
		b.versioning = st
		return &s3.PutBucketVersioningOutput{}, nil
	})
}

func malformedXML() error {
	return newErr(http.StatusBadRequest, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema")
}

// GetBucketPolicy returns the policy as stored; NoSuchBucketPolicy if none.
func (s *S3) GetBucketPolicy(ctx context.Context, in *s3.GetBucketPolicyInput, _ ...func(*s3.Options)) (*s3.GetBucketPolicyOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "GetBucketPolicy", func() (*s3.GetBucketPolicyOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:GetBucketPolicy", "", true)
		if err != nil {
			return nil, err
		}
		if b.policy == "" {
			return nil, newErr(http.StatusNotFound, "NoSuchBucketPolicy", "The bucket policy does not exist")
		}
		return &s3.GetBucketPolicyOutput{Policy: aws.String(b.policy)}, nil
	})
}

// PutBucketPolicy replaces the bucket policy. Like S3 it rejects (code
// MalformedPolicy) documents that do not parse, statements without a
// principal, resources outside the bucket and principals S3 cannot see,
// such as a role created moments ago or the unique ID of a deleted one
// ("Invalid principal in policy"), and policies over 20 KB (S3 User Guide,
// "Adding a bucket policy by using the Amazon S3 console": "Bucket policies
// are limited to 20 KB in size"), counted without white space between
// elements.
func (s *S3) PutBucketPolicy(ctx context.Context, in *s3.PutBucketPolicyInput, _ ...func(*s3.Options)) (*s3.PutBucketPolicyOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "PutBucketPolicy", func() (*s3.PutBucketPolicyOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:PutBucketPolicy", "", true)
		if err != nil {
			return nil, err
		}
		doc := aws.ToString(in.Policy)
		if compactLen(doc) > maxBucketPolicySize {
			// The answer S3-compatible stores give, following S3; S3's own
			// list of error codes does not document this one.
			return nil, newErr(http.StatusBadRequest, "PolicyTooLarge", "Policy exceeds the maximum allowed document size.")
		}
		malformed := func(msg string) error { return newErr(http.StatusBadRequest, "MalformedPolicy", "%s", msg) }
		d, perr := parsePolicy(doc, false)
		if perr != nil {
			if strings.HasPrefix(strings.TrimSpace(doc), "{") && perr != errSyntax {
				return nil, malformed(perr.Error())
			}
			return nil, malformed("Policies must be valid JSON and the first byte must be '{'")
		}
		for _, st := range d.Statement {
			if st.Principal == nil && st.NotPrincipal == nil {
				return nil, malformed("Missing required field Principal")
			}
			for _, r := range append(append([]string{}, st.Resource...), st.NotResource...) {
				if r != b.arn() && !strings.HasPrefix(r, b.arn()+"/") {
					return nil, malformed("Policy has invalid resource")
				}
			}
		}
		if bad := s.c.invalidPrincipalLocked(d, true); bad != "" {
			// S3's answer to a principal it cannot resolve, above all the
			// unique ID (AROA…) a deleted role leaves behind; see S3 User
			// Guide, "Specifying a principal in a policy",
			// https://docs.aws.amazon.com/AmazonS3/latest/userguide/s3-bucket-user-policy-specifying-principal-intro.html
			return nil, malformed("Invalid principal in policy")
		}
		b.policy = doc
		return &s3.PutBucketPolicyOutput{}, nil
	})
}

// DeleteBucketPolicy removes the bucket policy; deleting none succeeds.
func (s *S3) DeleteBucketPolicy(ctx context.Context, in *s3.DeleteBucketPolicyInput, _ ...func(*s3.Options)) (*s3.DeleteBucketPolicyOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "DeleteBucketPolicy", func() (*s3.DeleteBucketPolicyOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:DeleteBucketPolicy", "", true)
		if err != nil {
			return nil, err
		}
		b.policy = ""
		return &s3.DeleteBucketPolicyOutput{}, nil
	})
}

// GetBucketReplication returns the configuration as written;
// ReplicationConfigurationNotFoundError if none.
func (s *S3) GetBucketReplication(ctx context.Context, in *s3.GetBucketReplicationInput, _ ...func(*s3.Options)) (*s3.GetBucketReplicationOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "GetBucketReplication", func() (*s3.GetBucketReplicationOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:GetReplicationConfiguration", "", false)
		if err != nil {
			return nil, err
		}
		if b.replication == nil {
			return nil, newErr(http.StatusNotFound, "ReplicationConfigurationNotFoundError", "The replication configuration was not found")
		}
		return &s3.GetBucketReplicationOutput{ReplicationConfiguration: clone(b.replication)}, nil
	})
}

// PutBucketReplication replaces the bucket's replication configuration
// after S3's checks: versioning Enabled on the bucket ("Versioning must be
// 'Enabled' on the bucket to apply a replication configuration"),
// destinations that exist with versioning, and the rule grammar of the V2
// schema. Like S3 it checks neither the role (its existence or permissions:
// a role IAM has not propagated fails replication later, not this call)
// nor the KMS keys.
func (s *S3) PutBucketReplication(ctx context.Context, in *s3.PutBucketReplicationInput, _ ...func(*s3.Options)) (*s3.PutBucketReplicationOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "PutBucketReplication", func() (*s3.PutBucketReplicationOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:PutReplicationConfiguration", "", false)
		if err != nil {
			return nil, err
		}
		if err := s.c.checkReplicationLocked(b, in.ReplicationConfiguration); err != nil {
			return nil, err
		}
		b.replication = clone(in.ReplicationConfiguration)
		return &s3.PutBucketReplicationOutput{}, nil
	})
}

func (c *Cloud) checkReplicationLocked(b *bucket, rc *s3types.ReplicationConfiguration) error {
	if b.versioning != s3types.BucketVersioningStatusEnabled {
		return invalidRequest("Versioning must be 'Enabled' on the bucket to apply a replication configuration")
	}
	if rc == nil || len(rc.Rules) == 0 || len(rc.Rules) > 1000 {
		return malformedXML()
	}
	ids := map[string]bool{}
	prios := map[int32]bool{}
	for _, r := range rc.Rules {
		id := aws.ToString(r.ID)
		if len(id) > 255 {
			return invalidRequest("ID must be less than or equal to 255 characters")
		}
		if id != "" && ids[id] {
			return invalidRequest("Rule Id must be unique")
		}
		ids[id] = true
		if r.Status != s3types.ReplicationRuleStatusEnabled && r.Status != s3types.ReplicationRuleStatusDisabled {
			return malformedXML()
		}
		if r.Filter != nil {
			if r.DeleteMarkerReplication == nil {
				return invalidRequest("DeleteMarkerReplication must be specified for this version of Cross Region Replication configuration schema.")
			}
			if r.Priority == nil {
				return invalidRequest("Priority must be specified for this version of Cross Region Replication configuration schema.")
			}
			if prios[*r.Priority] {
				return invalidRequest("Found overlapping rules with same priority")
			}
			prios[*r.Priority] = true
		}
		if r.Destination == nil || !strings.HasPrefix(aws.ToString(r.Destination.Bucket), "arn:aws:s3:::") {
			return invalidRequest("Invalid Destination Bucket ARN")
		}
		if ssc := r.SourceSelectionCriteria; ssc != nil && ssc.SseKmsEncryptedObjects != nil && ssc.SseKmsEncryptedObjects.Status == s3types.SseKmsEncryptedObjectsStatusEnabled &&
			(r.Destination.EncryptionConfiguration == nil || aws.ToString(r.Destination.EncryptionConfiguration.ReplicaKmsKeyID) == "") {
			return invalidRequest("ReplicaKmsKeyID must be specified if SseKmsEncryptedObjects tag is present.")
		}
		if r.Destination.AccessControlTranslation != nil && aws.ToString(r.Destination.Account) == "" {
			return invalidRequest("Destination Account must be specified when AccessControlTranslation is specified")
		}
		dst, ok := c.buckets[strings.TrimPrefix(aws.ToString(r.Destination.Bucket), "arn:aws:s3:::")]
		if !ok {
			return invalidRequest("Destination bucket must exist.")
		}
		if dst.versioning != s3types.BucketVersioningStatusEnabled {
			return invalidRequest("Destination bucket must have versioning enabled.")
		}
	}
	return nil
}

// DeleteBucketReplication removes the configuration; deleting none
// succeeds.
func (s *S3) DeleteBucketReplication(ctx context.Context, in *s3.DeleteBucketReplicationInput, _ ...func(*s3.Options)) (*s3.DeleteBucketReplicationOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "DeleteBucketReplication", func() (*s3.DeleteBucketReplicationOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:PutReplicationConfiguration", "", false)
		if err != nil {
			return nil, err
		}
		b.replication = nil
		return &s3.DeleteBucketReplicationOutput{}, nil
	})
}

// PutBucketEncryption sets the bucket's default encryption.
func (s *S3) PutBucketEncryption(ctx context.Context, in *s3.PutBucketEncryptionInput, _ ...func(*s3.Options)) (*s3.PutBucketEncryptionOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "PutBucketEncryption", func() (*s3.PutBucketEncryptionOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:PutEncryptionConfiguration", "", false)
		if err != nil {
			return nil, err
		}
		if in.ServerSideEncryptionConfiguration == nil || len(in.ServerSideEncryptionConfiguration.Rules) == 0 {
			return nil, malformedXML()
		}
		b.encryption = clone(in.ServerSideEncryptionConfiguration)
		return &s3.PutBucketEncryptionOutput{}, nil
	})
}

// DeleteBucketEncryption resets the bucket's default encryption to SSE-S3:
// since January 2023 every bucket has default encryption, and deleting the
// configuration returns it to SSE-S3 (S3 API Reference,
// DeleteBucketEncryption).
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteBucketEncryption.html
func (s *S3) DeleteBucketEncryption(ctx context.Context, in *s3.DeleteBucketEncryptionInput, _ ...func(*s3.Options)) (*s3.DeleteBucketEncryptionOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "DeleteBucketEncryption", func() (*s3.DeleteBucketEncryptionOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:PutEncryptionConfiguration", "", false)
		if err != nil {
			return nil, err
		}
		b.encryption = sseS3Default()
		return &s3.DeleteBucketEncryptionOutput{}, nil
	})
}

// GetBucketEncryption returns the default encryption; every bucket has one
// (SSE-S3 unless set), as on S3 since January 2023.
func (s *S3) GetBucketEncryption(ctx context.Context, in *s3.GetBucketEncryptionInput, _ ...func(*s3.Options)) (*s3.GetBucketEncryptionOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "GetBucketEncryption", func() (*s3.GetBucketEncryptionOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:GetEncryptionConfiguration", "", false)
		if err != nil {
			return nil, err
		}
		if b.encryption == nil {
			return nil, newErr(http.StatusNotFound, "ServerSideEncryptionConfigurationNotFoundError", "The server side encryption configuration was not found")
		}
		return &s3.GetBucketEncryptionOutput{ServerSideEncryptionConfiguration: clone(b.encryption)}, nil
	})
}

// GetBucketOwnershipControls returns the bucket's Object Ownership
// ("BucketOwnerEnforced" by default, as on S3 since April 2023).
func (s *S3) GetBucketOwnershipControls(ctx context.Context, in *s3.GetBucketOwnershipControlsInput, _ ...func(*s3.Options)) (*s3.GetBucketOwnershipControlsOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "GetBucketOwnershipControls", func() (*s3.GetBucketOwnershipControlsOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:GetBucketOwnershipControls", "", false)
		if err != nil {
			return nil, err
		}
		if b.ownership == "" {
			return nil, newErr(http.StatusNotFound, "OwnershipControlsNotFoundError", "The bucket ownership controls were not found")
		}
		return &s3.GetBucketOwnershipControlsOutput{OwnershipControls: &s3types.OwnershipControls{Rules: []s3types.OwnershipControlsRule{{ObjectOwnership: b.ownership}}}}, nil
	})
}

// PutBucketOwnershipControls sets the bucket's Object Ownership.
func (s *S3) PutBucketOwnershipControls(ctx context.Context, in *s3.PutBucketOwnershipControlsInput, _ ...func(*s3.Options)) (*s3.PutBucketOwnershipControlsOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "PutBucketOwnershipControls", func() (*s3.PutBucketOwnershipControlsOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:PutBucketOwnershipControls", "", false)
		if err != nil {
			return nil, err
		}
		if in.OwnershipControls == nil || len(in.OwnershipControls.Rules) != 1 {
			return nil, malformedXML()
		}
		b.ownership = in.OwnershipControls.Rules[0].ObjectOwnership
		return &s3.PutBucketOwnershipControlsOutput{}, nil
	})
}

// PutObject stores a new object version. SSE-KMS uses SSEKMSKeyId or the
// bucket's default key, which must exist in the bucket's region and whose
// key policy must allow the caller. When the bucket's replication
// configuration selects the object it is marked PENDING and replicated
// asynchronously (see replicate.go).
func (s *S3) PutObject(ctx context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	var data []byte
	if in.Body != nil {
		var err error
		if data, err = io.ReadAll(in.Body); err != nil {
			return nil, wrapErr(svcS3, "PutObject", err)
		}
	}
	return do(ctx, s.c, s.caller, svcS3, "PutObject", func() (*s3.PutObjectOutput, error) {
		k := aws.ToString(in.Key)
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:PutObject", "arn:aws:s3:::"+aws.ToString(in.Bucket)+"/"+k, false)
		if err != nil {
			return nil, err
		}
		if k == "" || len(k) > 1024 {
			return nil, newErr(http.StatusBadRequest, "KeyTooLongError", "Your key is too long")
		}
		sum := md5.Sum(data)
		o := &object{key: k, data: data, etag: `"` + hex.EncodeToString(sum[:]) + `"`, modified: s.c.now(), versionID: "null"}
		if b.versioning == s3types.BucketVersioningStatusEnabled {
			o.versionID = s.c.randomIDLocked(32)
		}
		if err := s.c.lockNewVersionLocked(b, o, in); err != nil {
			return nil, err
		}
		// Without encryption headers the bucket's default applies: SSE-S3,
		// or SSE-KMS with the default key and the default's Bucket Key
		// setting. An SSE-KMS object without a Bucket Key header takes the
		// bucket's setting.
		// See https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-encryption.html
		// and https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-key.html
		kmsKey, bucketKey := b.defaultKMSKey()
		switch {
		case in.ServerSideEncryption == s3types.ServerSideEncryptionAwsKms || in.ServerSideEncryption == s3types.ServerSideEncryptionAwsKmsDsse:
			kmsKey = cmp.Or(aws.ToString(in.SSEKMSKeyId), kmsKey)
			bucketKey = aws.ToBool(in.BucketKeyEnabled) || (in.BucketKeyEnabled == nil && bucketKey)
			o.sse = in.ServerSideEncryption
			if kmsKey == "" {
				kmsKey = "alias/aws/s3"
			}
		case in.ServerSideEncryption != "":
			kmsKey, bucketKey = "", false
			o.sse = in.ServerSideEncryption
		case kmsKey != "":
			o.sse = s3types.ServerSideEncryptionAwsKms
			if in.BucketKeyEnabled != nil {
				bucketKey = *in.BucketKeyEnabled
			}
		case b.encryption != nil:
			o.sse = s3types.ServerSideEncryptionAes256
		}
		if kmsKey != "" {
			kms := &KMS{c: s.c, caller: s.caller, region: b.region}
			ky, err := kms.keyLocked(kmsKey)
			if err != nil {
				return nil, newErr(http.StatusBadRequest, "KMS.NotFoundException", "Invalid arn %s", kmsKey)
			}
			if !ky.enabled {
				return nil, newErr(http.StatusBadRequest, "KMS.DisabledException", "%s is disabled.", ky.arn)
			}
			if err := kms.authorizeLocked(ky, "kms:GenerateDataKey"); err != nil {
				return nil, s3AccessDenied()
			}
			o.kmsKey, o.bucketKey = ky.arn, bucketKey
		}
		b.add(o)
		s.c.scheduleReplicationLocked(b, o)
		out := &s3.PutObjectOutput{ETag: aws.String(o.etag), ServerSideEncryption: o.sse}
		if o.versionID != "null" {
			out.VersionId = aws.String(o.versionID)
		}
		if o.kmsKey != "" {
			out.SSEKMSKeyId, out.BucketKeyEnabled = aws.String(o.kmsKey), aws.Bool(o.bucketKey)
		}
		return out, nil
	})
}

// HeadObject describes an object version (the latest without VersionId),
// including its ReplicationStatus; 404 NotFound when missing or when the
// latest version is a delete marker.
func (s *S3) HeadObject(ctx context.Context, in *s3.HeadObjectInput, _ ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "HeadObject", func() (*s3.HeadObjectOutput, error) {
		k := aws.ToString(in.Key)
		action := "s3:GetObject"
		if in.VersionId != nil {
			action = "s3:GetObjectVersion"
		}
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, action, "arn:aws:s3:::"+aws.ToString(in.Bucket)+"/"+k, false)
		if err != nil {
			return nil, err
		}
		o := b.version(k, aws.ToString(in.VersionId))
		if o == nil || o.deleteMarker {
			return nil, typed(http.StatusNotFound, &s3types.NotFound{})
		}
		out := &s3.HeadObjectOutput{
			ContentLength: aws.Int64(int64(len(o.data))), ETag: aws.String(o.etag), LastModified: aws.Time(o.modified),
			ServerSideEncryption: o.sse, ReplicationStatus: o.replication,
		}
		if o.lockMode != "" {
			out.ObjectLockMode, out.ObjectLockRetainUntilDate = o.lockMode, aws.Time(o.retainUntil)
		}
		if o.legalHold {
			out.ObjectLockLegalHoldStatus = s3types.ObjectLockLegalHoldStatusOn
		}
		if o.versionID != "null" {
			out.VersionId = aws.String(o.versionID)
		}
		if o.kmsKey != "" {
			out.SSEKMSKeyId, out.BucketKeyEnabled = aws.String(o.kmsKey), aws.Bool(o.bucketKey)
		}
		return out, nil
	})
}

// DeleteObject deletes a version permanently (with VersionId), or adds a
// delete marker in a versioned bucket, or removes the object otherwise.
// Deleting what does not exist succeeds, as on S3. A version under a legal
// hold or a retention period that is not over cannot be deleted
// (AccessDenied); governance mode yields to BypassGovernanceRetention.
// See https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html
func (s *S3) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, _ ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "DeleteObject", func() (*s3.DeleteObjectOutput, error) {
		k := aws.ToString(in.Key)
		action := "s3:DeleteObject"
		if in.VersionId != nil {
			action = "s3:DeleteObjectVersion"
		}
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, action, "arn:aws:s3:::"+aws.ToString(in.Bucket)+"/"+k, false)
		if err != nil {
			return nil, err
		}
		if v := aws.ToString(in.VersionId); v != "" {
			o := b.version(k, v)
			if o != nil && o.locked(s.c.now(), aws.ToBool(in.BypassGovernanceRetention)) {
				// S3's answer, as its users see it.
				return nil, newErr(http.StatusForbidden, "AccessDenied", "Access Denied because object protected by object lock.")
			}
			b.remove(k, v)
			out := &s3.DeleteObjectOutput{VersionId: aws.String(v)}
			if o != nil && o.deleteMarker {
				out.DeleteMarker = aws.Bool(true)
			}
			return out, nil
		}
		if b.versioning == "" {
			b.remove(k, "null")
			return &s3.DeleteObjectOutput{}, nil
		}
		m := &object{key: k, versionID: "null", deleteMarker: true, modified: s.c.now()}
		if b.versioning == s3types.BucketVersioningStatusEnabled {
			m.versionID = s.c.randomIDLocked(32)
		}
		b.add(m)
		return &s3.DeleteObjectOutput{DeleteMarker: aws.Bool(true), VersionId: aws.String(m.versionID)}, nil
	})
}

// ListObjectVersions lists versions and delete markers by key, newest
// first within a key, paginated by KeyMarker/VersionIdMarker and MaxKeys
// (default 1000).
func (s *S3) ListObjectVersions(ctx context.Context, in *s3.ListObjectVersionsInput, _ ...func(*s3.Options)) (*s3.ListObjectVersionsOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "ListObjectVersions", func() (*s3.ListObjectVersionsOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:ListBucketVersions", "", false)
		if err != nil {
			return nil, err
		}
		return listVersions(b, in), nil
	})
}

func isCode(err error, code string) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == code
}
