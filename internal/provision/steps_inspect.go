package provision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// bucketFindings is what inspection read about a bucket.
type bucketFindings struct {
	Bucket            string             `json:"bucket"`
	Owner             string             `json:"owner"`
	Region            string             `json:"region"`
	Versioning        string             `json:"versioning"`
	DefaultEncryption *encryptionFinding `json:"default_encryption,omitempty"`
	ObjectOwnership   string             `json:"object_ownership,omitempty"`
	ObjectLock        bool               `json:"object_lock"`
	// ObjectLockDefault is the mode of the default retention, "" for none.
	ObjectLockDefault string                           `json:"object_lock_default_retention,omitempty"`
	Policy            *policy.Document                 `json:"bucket_policy,omitempty"`
	Replication       *policy.ReplicationConfiguration `json:"replication,omitempty"`
}

// encryptionFinding is a bucket's default encryption.
type encryptionFinding struct {
	Algorithm  string `json:"algorithm"`
	KMSKeyID   string `json:"kms_key_id,omitempty"`
	BucketKeys bool   `json:"bucket_keys"`
	// KMSKeyARN is the key an alias (or the omitted key, aws/s3) resolves
	// to, when the default names no key ARN or ID.
	KMSKeyARN string `json:"kms_key_arn,omitempty"`
}

// keyFindings is what inspection read about a KMS key.
type keyFindings struct {
	ARN     string          `json:"arn"`
	State   string          `json:"state"`
	Spec    string          `json:"spec"`
	Manager string          `json:"manager"`
	Usage   string          `json:"usage,omitempty"`
	Policy  policy.Document `json:"policy"`
	// DelegatesToAccount: the key policy lets the account's IAM policies grant
	// access (source key only).
	DelegatesToAccount *bool `json:"delegates_to_account,omitempty"`
}

// roleFinding is the replication role inspection settled on.
type roleFinding struct {
	Name    string `json:"name"`
	Adopted bool   `json:"adopted"`
	// ARN is the adopted role's ARN, path included.
	ARN string `json:"arn,omitempty"`
}

type sourceFindings struct {
	Bucket bucketFindings `json:"bucket"`
	Key    keyFindings    `json:"key"`
	Role   roleFinding    `json:"role"`
}

type destinationFindings struct {
	Bucket        bucketFindings `json:"bucket"`
	Key           keyFindings    `json:"key"`
	OwnerEnforced bool           `json:"owner_enforced"`
}

// inspectSource is the read-only preflight in A: X exists, is A's, is in RX,
// is versioned (or may be made so); its default encryption is SSE-KMS with
// KA, or the request is warned that objects written without encryption
// headers replicate as SSE-S3 (checkSourceEncryption); KA is a usable
// customer-managed key in RX;
// X's replication configuration names the role to adopt, if any; KA's policy
// delegates to A's IAM or not.
func inspectSource(ctx context.Context, run *Run) (Result, error) {
	side := run.Replication.Source
	// Every read starts at once; their answers are judged in order below.
	bucket := readBucket(ctx, run.Source, side)
	replication := prefetch(func() (*policy.ReplicationConfiguration, error) { return readReplication(ctx, run.Source, side) })
	locked := prefetch(func() (objectLock, error) { return readObjectLock(ctx, run.Source, side) })
	key := readKey(ctx, run.Source, side)
	b, err := bucket.check(side, "source", run.Replication.EnableVersioning)
	if err != nil {
		return Result{}, err
	}
	repl, err := replication.get()
	if err != nil {
		return Result{}, err
	}
	b.Replication = repl
	role := roleFinding{Name: policy.RoleName(side.Bucket)}
	if repl != nil {
		for _, r := range repl.Rules {
			if r.Filter == nil && !policy.IsOwnedRuleID(r.ID) {
				return Result{}, classify(fmt.Errorf("rule %q: %w", r.ID, policy.ErrLegacyReplicationSchema), call{Account: side.AccountID, Action: "s3:PutReplicationConfiguration", Resource: side.Bucket})
			}
		}
		if repl.Role != "" && len(repl.Rules) > 0 {
			name, err := adoptableRole(repl.Role, side)
			if err != nil {
				return Result{}, err
			}
			role = roleFinding{Name: name, Adopted: repl.Role != policy.RoleARN(policy.Partition(side.Region), side.AccountID, policy.RoleName(side.Bucket))}
			if role.Adopted {
				role.ARN = repl.Role
			}
		}
	}
	lock, err := locked.get()
	if err != nil {
		return Result{}, err
	}
	b.ObjectLock, b.ObjectLockDefault = lock.Enabled, lock.DefaultMode
	k, err := key.check(side, "source")
	if err != nil {
		return Result{}, err
	}
	delegated := delegatesToAccount(k.Policy, side.AccountID)
	k.DelegatesToAccount = &delegated
	// After the key's own checks: a default of another key matters only
	// once the request's key is known to be usable.
	warnings, err := checkSourceEncryption(ctx, run, b.DefaultEncryption)
	if err != nil {
		return Result{}, err
	}
	run.Learn(func(f *Facts) {
		f.RoleName = role.Name
		f.RoleAdopted = role.Adopted
		f.AdoptedRoleARN = role.ARN
		f.SourceKeyNotDelegated = !delegated
		f.SourceObjectLock = lock.Enabled
		f.SourceVersioned = b.Versioning == string(s3types.BucketVersioningStatusEnabled)
	})
	return Result{After: sourceFindings{Bucket: b, Key: k, Role: role}, Warnings: warnings}, nil
}

// inspectDestination is the read-only preflight in B: Y exists, is B's, is
// in RY, is versioned (or may be made so); its Object Ownership and policy;
// KB is a usable customer-managed key in RY.
func inspectDestination(ctx context.Context, run *Run) (Result, error) {
	side := run.Replication.Destination
	// Every read starts at once; their answers are judged in order below.
	bucket := readBucket(ctx, run.Destination, side)
	ownership := prefetch(func() (*s3.GetBucketOwnershipControlsOutput, error) {
		return run.Destination.S3.GetBucketOwnershipControls(ctx, &s3.GetBucketOwnershipControlsInput{Bucket: aws.String(side.Bucket), ExpectedBucketOwner: aws.String(side.AccountID)})
	})
	bucketPolicy := prefetch(func() (*policy.Document, error) { return readBucketPolicy(ctx, run.Destination, side) })
	locked := prefetch(func() (objectLock, error) { return readObjectLock(ctx, run.Destination, side) })
	key := readKey(ctx, run.Destination, side)
	b, err := bucket.check(side, "destination", run.Replication.EnableVersioning)
	if err != nil {
		return Result{}, err
	}
	own, err := ownership.get()
	switch {
	case IsNotFound(err):
		// No controls: ACLs are honoured, as with ObjectWriter.
		b.ObjectOwnership = string(s3types.ObjectOwnershipObjectWriter)
	case err != nil:
		return Result{}, classify(err, call{Account: side.AccountID, Action: "s3:GetBucketOwnershipControls", Resource: side.Bucket})
	default:
		b.ObjectOwnership = string(s3types.ObjectOwnershipObjectWriter)
		if own.OwnershipControls != nil && len(own.OwnershipControls.Rules) > 0 {
			b.ObjectOwnership = string(own.OwnershipControls.Rules[0].ObjectOwnership)
		}
	}
	if b.Policy, err = bucketPolicy.get(); err != nil {
		return Result{}, err
	}
	lock, err := locked.get()
	if err != nil {
		return Result{}, err
	}
	b.ObjectLock, b.ObjectLockDefault = lock.Enabled, lock.DefaultMode
	k, err := key.check(side, "destination")
	if err != nil {
		return Result{}, err
	}
	enforced := b.ObjectOwnership == string(s3types.ObjectOwnershipBucketOwnerEnforced)
	run.Learn(func(f *Facts) {
		f.DestinationOwnerEnforced, f.DestinationObjectLock, f.DestinationLockDefault = enforced, b.ObjectLock, b.ObjectLockDefault
		f.DestinationVersioned = b.Versioning == string(s3types.BucketVersioningStatusEnabled)
	})
	return Result{After: destinationFindings{Bucket: b, Key: k, OwnerEnforced: enforced}}, nil
}

// versioningAdvice tells a human how to get past an unversioned bucket.
func versioningAdvice(which, bucket, status string) string {
	if status == "" {
		status = "never enabled"
	}
	return fmt.Sprintf("%s bucket %s does not have versioning enabled (%s), which replication requires: enable versioning on bucket %s (aws s3api put-bucket-versioning --bucket %s --versioning-configuration Status=Enabled) or deprovision this request (DELETE it) and resubmit it with enable_versioning: true",
		which, bucket, status, bucket, bucket)
}

// bucketReads are the reads inspection makes of a bucket, started at once.
type bucketReads struct {
	head       *pending[*s3.HeadBucketOutput]
	location   *pending[*s3.GetBucketLocationOutput]
	versioning *pending[*s3.GetBucketVersioningOutput]
	encryption *pending[*s3.GetBucketEncryptionOutput]
}

func readBucket(ctx context.Context, acct *Account, side Side) bucketReads {
	bucket, owner := aws.String(side.Bucket), aws.String(side.AccountID)
	return bucketReads{
		head: prefetch(func() (*s3.HeadBucketOutput, error) {
			return acct.S3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: bucket, ExpectedBucketOwner: owner})
		}),
		location: prefetch(func() (*s3.GetBucketLocationOutput, error) {
			return acct.S3.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: bucket, ExpectedBucketOwner: owner})
		}),
		versioning: prefetch(func() (*s3.GetBucketVersioningOutput, error) {
			return acct.S3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: bucket, ExpectedBucketOwner: owner})
		}),
		encryption: prefetch(func() (*s3.GetBucketEncryptionOutput, error) {
			return acct.S3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: bucket, ExpectedBucketOwner: owner})
		}),
	}
}

// check judges the reads in order: the bucket exists, belongs to the
// side's account, is in its region and is versioned unless the request
// may enable it.
func (r bucketReads) check(side Side, which string, mayEnableVersioning bool) (bucketFindings, error) {
	f := bucketFindings{Bucket: side.Bucket, Owner: side.AccountID}
	_, err := r.head.get()
	switch {
	case err == nil:
	case IsNotFound(err):
		return f, Permanent(fmt.Sprintf("%s bucket %s does not exist: check the bucket name (and that it was not deleted)", which, side.Bucket), err)
	case httpStatus(err) == http.StatusForbidden:
		return f, Permanent(fmt.Sprintf("%s bucket %s is not owned by account %s, or the provisioner role there may not s3:ListBucket it: check the bucket's owner and the role's permissions", which, side.Bucket, side.AccountID), err)
	case httpStatus(err) == http.StatusMovedPermanently || errorCode(err) == "PermanentRedirect":
		return f, Permanent(fmt.Sprintf("%s bucket %s is not in region %s: deprovision this request (DELETE it) and resubmit it with the bucket's region (and a key in that region)", which, side.Bucket, side.Region), err)
	default:
		return f, classify(err, call{Account: side.AccountID, Action: "s3:ListBucket", Resource: side.Bucket})
	}
	loc, err := r.location.get()
	if err != nil {
		return f, classify(err, call{Account: side.AccountID, Action: "s3:GetBucketLocation", Resource: side.Bucket})
	}
	f.Region = bucketRegion(loc.LocationConstraint)
	if f.Region != side.Region {
		return f, Permanent(fmt.Sprintf("%s bucket %s is in region %s, not %s: deprovision this request (DELETE it) and resubmit it with region %s and a key in that region", which, side.Bucket, f.Region, side.Region, f.Region), nil)
	}
	ver, err := r.versioning.get()
	if err != nil {
		return f, classify(err, call{Account: side.AccountID, Action: "s3:GetBucketVersioning", Resource: side.Bucket})
	}
	f.Versioning = string(ver.Status)
	if ver.Status != s3types.BucketVersioningStatusEnabled && !mayEnableVersioning {
		return f, Permanent(versioningAdvice(which, side.Bucket, f.Versioning), nil)
	}
	enc, err := r.encryption.get()
	switch {
	case IsNotFound(err):
	case err != nil:
		return f, classify(err, call{Account: side.AccountID, Action: "s3:GetEncryptionConfiguration", Resource: side.Bucket})
	case enc.ServerSideEncryptionConfiguration != nil && len(enc.ServerSideEncryptionConfiguration.Rules) > 0:
		r := enc.ServerSideEncryptionConfiguration.Rules[0]
		e := &encryptionFinding{BucketKeys: aws.ToBool(r.BucketKeyEnabled)}
		if d := r.ApplyServerSideEncryptionByDefault; d != nil {
			e.Algorithm, e.KMSKeyID = string(d.SSEAlgorithm), aws.ToString(d.KMSMasterKeyID)
		}
		f.DefaultEncryption = e
	}
	return f, nil
}

// bucketRegion turns GetBucketLocation's answer into a region name: S3 says
// "" for us-east-1 and "EU" for eu-west-1.
// https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketLocation.html
func bucketRegion(lc s3types.BucketLocationConstraint) string {
	switch lc {
	case "":
		return "us-east-1"
	case "EU":
		return "eu-west-1"
	}
	return string(lc)
}

// keyReads are the reads inspection makes of a key, started at once.
type keyReads struct {
	describe *pending[*kms.DescribeKeyOutput]
	policy   *pending[policy.Document]
}

func readKey(ctx context.Context, acct *Account, side Side) keyReads {
	return keyReads{
		describe: prefetch(func() (*kms.DescribeKeyOutput, error) {
			return acct.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(side.KMSKeyARN)})
		}),
		policy: prefetch(func() (policy.Document, error) { return readKeyPolicy(ctx, acct, side) }),
	}
}

// check judges the reads: the key is a usable customer-managed symmetric
// key of the side's account and region; it returns them with its policy.
func (r keyReads) check(side Side, which string) (keyFindings, error) {
	f := keyFindings{ARN: side.KMSKeyARN}
	if region, account, ok := keyARNParts(side.KMSKeyARN); ok {
		if region != side.Region {
			return f, Permanent(fmt.Sprintf("%s key %s is in region %s but bucket %s is in %s: S3 encrypts with a key of the bucket's region, so name a key in %s", which, side.KMSKeyARN, region, side.Bucket, side.Region, side.Region), nil)
		}
		if account != side.AccountID {
			return f, Permanent(fmt.Sprintf("%s key %s belongs to account %s, not %s: name a key of the bucket's account", which, side.KMSKeyARN, account, side.AccountID), nil)
		}
	}
	out, err := r.describe.get()
	switch {
	case IsNotFound(err):
		return f, Permanent(fmt.Sprintf("%s key %s does not exist in account %s, region %s: check the key ARN", which, side.KMSKeyARN, side.AccountID, side.Region), err)
	case err != nil:
		return f, classify(err, call{Account: side.AccountID, Action: "kms:DescribeKey", Resource: side.KMSKeyARN})
	case out.KeyMetadata == nil:
		return f, fmt.Errorf("describe key %s: no key metadata in the answer", side.KMSKeyARN)
	}
	md := out.KeyMetadata
	f.State, f.Spec, f.Manager, f.Usage = string(md.KeyState), string(md.KeySpec), string(md.KeyManager), string(md.KeyUsage)
	switch {
	case md.KeyManager == kmstypes.KeyManagerTypeAws:
		return f, Permanent(fmt.Sprintf("%s key %s is an AWS managed key (such as aws/s3), whose policy cannot be changed to let another account's role use it: encrypt %s with a customer-managed key, deprovision this request (DELETE it) and resubmit it with that key", which, side.KMSKeyARN, side.Bucket), nil)
	case md.AWSAccountId != nil && aws.ToString(md.AWSAccountId) != side.AccountID:
		return f, Permanent(fmt.Sprintf("%s key %s belongs to account %s, not %s: name a key of the bucket's account", which, side.KMSKeyARN, aws.ToString(md.AWSAccountId), side.AccountID), nil)
	case md.KeyState == kmstypes.KeyStatePendingDeletion || md.KeyState == kmstypes.KeyStatePendingReplicaDeletion:
		return f, Permanent(fmt.Sprintf("%s key %s is scheduled for deletion: cancel it (aws kms cancel-key-deletion --key-id %s, then aws kms enable-key) or name another key", which, side.KMSKeyARN, side.KMSKeyARN), nil)
	case md.KeyState != "" && md.KeyState != kmstypes.KeyStateEnabled || md.KeyState == "" && !md.Enabled:
		return f, Permanent(fmt.Sprintf("%s key %s is %s, not Enabled: enable it (aws kms enable-key --key-id %s) or name another key", which, side.KMSKeyARN, cmpState(md), side.KMSKeyARN), nil)
	case md.KeySpec != "" && md.KeySpec != kmstypes.KeySpecSymmetricDefault:
		return f, Permanent(fmt.Sprintf("%s key %s has key spec %s: S3 encrypts only with symmetric encryption keys (SYMMETRIC_DEFAULT), so name one", which, side.KMSKeyARN, md.KeySpec), nil)
	case md.KeyUsage != "" && md.KeyUsage != kmstypes.KeyUsageTypeEncryptDecrypt:
		return f, Permanent(fmt.Sprintf("%s key %s has key usage %s: S3 needs an ENCRYPT_DECRYPT key", which, side.KMSKeyARN, md.KeyUsage), nil)
	}
	doc, err := r.policy.get()
	if err != nil {
		return f, err
	}
	f.Policy = doc
	return f, nil
}

func cmpState(md *kmstypes.KeyMetadata) string {
	if md.KeyState != "" {
		return string(md.KeyState)
	}
	return "disabled"
}

// keyARNParts returns the region and account of a key ARN.
func keyARNParts(arn string) (region, account string, ok bool) {
	p := strings.SplitN(arn, ":", 6)
	if len(p) != 6 || p[0] != "arn" || p[2] != "kms" {
		return "", "", false
	}
	return p[3], p[4], true
}

// adoptableRole checks the role an existing replication configuration names
// and returns its name. A role with a path (the S3 console creates its roles
// under /service-role/) is adopted by its full ARN.
func adoptableRole(arn string, side Side) (string, error) {
	ref, err := policy.ParseRoleARN(arn)
	if err != nil {
		return "", Permanent(fmt.Sprintf("the replication configuration of source bucket %s names %q, which is not an IAM role ARN: fix or remove that configuration", side.Bucket, arn), err)
	}
	if ref.AccountID != side.AccountID {
		return "", Permanent(fmt.Sprintf("the replication configuration of source bucket %s names role %s of account %s: a replication role must belong to the bucket's account %s", side.Bucket, arn, ref.AccountID, side.AccountID), nil)
	}
	return ref.Name, nil
}

// objectLock is a bucket's Object Lock: enabled or not, and the mode of
// its default retention ("" for none).
type objectLock struct {
	Enabled     bool
	DefaultMode string
}

// readObjectLock reads a side's bucket's Object Lock configuration.
func readObjectLock(ctx context.Context, acct *Account, side Side) (objectLock, error) {
	out, err := acct.S3.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String(side.Bucket), ExpectedBucketOwner: aws.String(side.AccountID)})
	switch {
	case IsNotFound(err):
		return objectLock{}, nil
	case err != nil:
		return objectLock{}, classify(err, call{Account: side.AccountID, Action: "s3:GetBucketObjectLockConfiguration", Resource: side.Bucket})
	}
	c := out.ObjectLockConfiguration
	if c == nil || c.ObjectLockEnabled != s3types.ObjectLockEnabledEnabled {
		return objectLock{}, nil
	}
	l := objectLock{Enabled: true}
	if c.Rule != nil && c.Rule.DefaultRetention != nil {
		l.DefaultMode = string(c.Rule.DefaultRetention.Mode)
	}
	return l, nil
}

// delegatesToAccount reports whether a key policy holds the usual statement
// letting the account's IAM policies grant use of the key (KMS Developer
// Guide, "Default key policy": principal arn:aws:iam::<account>:root, kms:*).
// https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html#key-policy-default-allow-root-enable-iam
func delegatesToAccount(d policy.Document, account string) bool {
	for _, st := range d.Statement {
		if st.Effect != "Allow" || st.Principal == nil || len(st.Condition) > 0 || len(st.NotAction) > 0 || len(st.NotResource) > 0 {
			continue
		}
		var principal bool
		for _, id := range st.Principal.IDs["AWS"] {
			if id == account || strings.HasPrefix(id, "arn:") && strings.HasSuffix(id, ":iam::"+account+":root") {
				principal = true
			}
		}
		var action, resource bool
		for _, a := range st.Action {
			switch strings.ToLower(a) {
			case "kms:*", "*", "kms:decrypt":
				action = true
			}
		}
		for _, r := range st.Resource {
			resource = resource || r == "*"
		}
		if principal && action && resource {
			return true
		}
	}
	return false
}

// readKeyPolicy reads and parses a side's key policy. PolicyName is always
// "default": the only name KMS has, and moto insists on it.
func readKeyPolicy(ctx context.Context, acct *Account, side Side) (policy.Document, error) {
	out, err := acct.KMS.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(side.KMSKeyARN), PolicyName: aws.String("default")})
	if err != nil {
		return policy.Document{}, classify(err, call{Account: side.AccountID, Action: "kms:GetKeyPolicy", Resource: side.KMSKeyARN})
	}
	doc, err := policy.Parse([]byte(aws.ToString(out.Policy)))
	if err != nil {
		return policy.Document{}, Permanent(fmt.Sprintf("the key policy of %s does not parse; fix it by hand", side.KMSKeyARN), err)
	}
	return doc, nil
}

// readBucketPolicy reads and parses a side's bucket policy; nil when it has none.
func readBucketPolicy(ctx context.Context, acct *Account, side Side) (*policy.Document, error) {
	out, err := acct.S3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(side.Bucket), ExpectedBucketOwner: aws.String(side.AccountID)})
	switch {
	case IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, classify(err, call{Account: side.AccountID, Action: "s3:GetBucketPolicy", Resource: side.Bucket})
	}
	doc, err := policy.Parse([]byte(aws.ToString(out.Policy)))
	if err != nil {
		return nil, Permanent(fmt.Sprintf("the bucket policy of %s does not parse; fix it by hand", side.Bucket), err)
	}
	return &doc, nil
}

// readReplication reads a source bucket's replication configuration; nil when
// it has none.
func readReplication(ctx context.Context, acct *Account, side Side) (*policy.ReplicationConfiguration, error) {
	out, err := acct.S3.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(side.Bucket), ExpectedBucketOwner: aws.String(side.AccountID)})
	switch {
	case IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, classify(err, call{Account: side.AccountID, Action: "s3:GetReplicationConfiguration", Resource: side.Bucket})
	case out.ReplicationConfiguration == nil:
		return nil, nil
	}
	c, err := fromSDKReplication(out.ReplicationConfiguration)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// fromSDKReplication converts the SDK's configuration: policy's JSON names are
// the SDK's field names.
func fromSDKReplication(c *s3types.ReplicationConfiguration) (policy.ReplicationConfiguration, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return policy.ReplicationConfiguration{}, fmt.Errorf("encode replication configuration: %w", err)
	}
	out, err := policy.ParseReplicationConfiguration(b)
	if err != nil {
		return policy.ReplicationConfiguration{}, fmt.Errorf("convert replication configuration: %w", err)
	}
	return out, nil
}

// toSDKReplication converts a configuration for PutBucketReplication.
func toSDKReplication(c policy.ReplicationConfiguration) (*s3types.ReplicationConfiguration, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode replication configuration: %w", err)
	}
	var out s3types.ReplicationConfiguration
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("convert replication configuration: %w", err)
	}
	return &out, nil
}

// enableVersioningSource enables versioning on X when the request allows it.
func enableVersioningSource(ctx context.Context, run *Run) (Result, error) {
	return enableVersioning(ctx, run, run.Source, run.Replication.Source, "source", run.Facts().SourceVersioned)
}

// enableVersioningDestination enables versioning on Y when the request allows it.
func enableVersioningDestination(ctx context.Context, run *Run) (Result, error) {
	return enableVersioning(ctx, run, run.Destination, run.Replication.Destination, "destination", run.Facts().DestinationVersioned)
}

type versioningState struct {
	Bucket string `json:"bucket"`
	Status string `json:"status"`
}

// enableVersioning enables versioning on a side's bucket when the request
// allows it. Inspection's finding that it is Enabled already is enough:
// that never reverts to unversioned.
func enableVersioning(ctx context.Context, run *Run, acct *Account, side Side, which string, versioned bool) (Result, error) {
	if versioned {
		state := versioningState{Bucket: side.Bucket, Status: string(s3types.BucketVersioningStatusEnabled)}
		return Result{Skipped: !run.Replication.EnableVersioning, Before: state, After: state}, nil
	}
	owner := aws.String(side.AccountID)
	read := func() (string, error) {
		out, err := acct.S3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(side.Bucket), ExpectedBucketOwner: owner})
		if err != nil {
			return "", classify(err, call{Account: side.AccountID, Action: "s3:GetBucketVersioning", Resource: side.Bucket})
		}
		return string(out.Status), nil
	}
	status, err := read()
	if err != nil {
		return Result{}, err
	}
	before := versioningState{Bucket: side.Bucket, Status: status}
	switch {
	case status == string(s3types.BucketVersioningStatusEnabled) && !run.Replication.EnableVersioning:
		return Result{Skipped: true, Before: before, After: before}, nil
	case status == string(s3types.BucketVersioningStatusEnabled):
		return Result{Before: before, After: before}, nil
	case !run.Replication.EnableVersioning:
		return Result{}, Permanent(versioningAdvice(which, side.Bucket, status), nil)
	}
	// Recorded before the call: if its answer is lost, the retry finds
	// versioning on and the rule's put still gets its bounded wait.
	at := run.now()
	run.Learn(func(f *Facts) { f.VersioningEnabledAt = &at })
	_, err = acct.S3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
		Bucket:                  aws.String(side.Bucket),
		ExpectedBucketOwner:     owner,
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled},
	})
	if err != nil {
		return Result{}, classify(err, call{Account: side.AccountID, Action: "s3:PutBucketVersioning", Resource: side.Bucket})
	}
	status, err = read()
	if err != nil {
		return Result{}, err
	}
	if status != string(s3types.BucketVersioningStatusEnabled) {
		return Result{}, errors.New("versioning of " + side.Bucket + " reads " + status + " right after enabling it")
	}
	return Result{Changed: true, Before: before, After: versioningState{Bucket: side.Bucket, Status: status}}, nil
}
