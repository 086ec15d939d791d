package awsfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// These canaries replicate through the documents internal/policy builds
// (the role's from every request, the destination's from every role), so
// they also prove that what bucketbridge writes is what replication needs.

// replicationCase is one source bucket replicating one prefix into a
// destination bucket of DemoDestinationAccount through its own role.
type replicationCase struct {
	source      string // a bucket of DemoSourceAccount in DemoSourceRegion
	destination string // a bucket of DemoDestinationAccount in DemoDestinationRegion
	prefix      string
	// objectLock builds the role's documents for a source with Object Lock.
	objectLock bool
	// managed attaches every document of the role as a managed policy.
	managed bool
	// boundary, when set, is the role's permissions boundary.
	boundary string
	// editRole changes the role's documents before they are written.
	editRole func(*policy.RolePolicies)
}

func (rc replicationCase) roleName() string { return "bucketbridge-" + rc.source }

// setupReplication writes every document of rc through the fake's clients.
func setupReplication(t *testing.T, c *Cloud, rc replicationCase) {
	t.Helper()
	ctx := context.Background()
	m := c.IAM(DemoSourceAccount)
	in := &iam.CreateRoleInput{RoleName: aws.String(rc.roleName()), AssumeRolePolicyDocument: aws.String(trustS3)}
	if rc.boundary != "" {
		b := must1[*iam.CreatePolicyOutput](t, "create boundary")(m.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String("boundary-" + rc.source), PolicyDocument: aws.String(rc.boundary)}))
		in.PermissionsBoundary = b.Policy.Arn
	}
	role := aws.ToString(must1[*iam.CreateRoleOutput](t, "create role")(m.CreateRole(ctx, in)).Role.Arn)

	docs, err := policy.BuildRolePolicies(policy.RoleInput{Role: role, ObjectLock: rc.objectLock,
		Source: policy.Side{AccountID: DemoSourceAccount, Region: DemoSourceRegion, Bucket: rc.source},
		Targets: []policy.RoleTarget{{SourceKMSKeyARN: DemoSourceKey, Prefix: rc.prefix,
			Destination: policy.Side{AccountID: DemoDestinationAccount, Region: DemoDestinationRegion, Bucket: rc.destination, KMSKeyARN: DemoDestinationKey}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rc.editRole != nil {
		rc.editRole(&docs)
	}
	if rc.managed {
		for i, p := range docs.Inline {
			name := policy.ManagedPolicyName(rc.roleName(), 10+i)
			docs.Managed = append(docs.Managed, policy.ManagedPolicy{Name: name, ARN: policy.ManagedPolicyARN("aws", DemoSourceAccount, name), Document: p.Document})
		}
		docs.Inline = nil
	}
	for _, p := range docs.Inline {
		must1[*iam.PutRolePolicyOutput](t, "put role policy")(m.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(rc.roleName()), PolicyName: aws.String(p.Name), PolicyDocument: aws.String(marshal(t, p.Document))}))
	}
	for _, p := range docs.Managed {
		must1[*iam.CreatePolicyOutput](t, "create managed policy")(m.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(p.Name), PolicyDocument: aws.String(marshal(t, p.Document))}))
		must1[*iam.AttachRolePolicyOutput](t, "attach")(m.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(rc.roleName()), PolicyArn: aws.String(p.ARN)}))
	}

	grant := policy.Grant{Bucket: rc.destination, Region: DemoDestinationRegion, Roles: []string{role}}
	s3B, kmsB := c.S3(DemoDestinationAccount, DemoDestinationRegion), c.KMS(DemoDestinationAccount, DemoDestinationRegion)
	var current policy.Document
	if out, err := s3B.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(rc.destination)}); err == nil {
		current, _ = policy.Parse([]byte(aws.ToString(out.Policy)))
	}
	bp, err := policy.SyncBucketPolicy(current, grant)
	if err != nil {
		t.Fatal(err)
	}
	must1[*s3.PutBucketPolicyOutput](t, "put bucket policy")(s3B.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(rc.destination), Policy: aws.String(marshal(t, bp.Document))}))
	kp := must1[*kms.GetKeyPolicyOutput](t, "get key policy")(kmsB.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(DemoDestinationKey)}))
	kd, _ := policy.Parse([]byte(aws.ToString(kp.Policy)))
	ks, err := policy.SyncDestinationKeyPolicy(kd, grant)
	if err != nil {
		t.Fatal(err)
	}
	must1[*kms.PutKeyPolicyOutput](t, "put key policy")(kmsB.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(DemoDestinationKey), Policy: aws.String(marshal(t, ks.Document))}))

	rule := replicationRule("bucketbridge-canary", 1, rc.destination, DemoDestinationAccount, DemoDestinationKey)
	rule.Filter.Prefix = aws.String(rc.prefix)
	must1[*s3.PutBucketReplicationOutput](t, "put replication")(c.S3(DemoSourceAccount, DemoSourceRegion).PutBucketReplication(ctx, &s3.PutBucketReplicationInput{Bucket: aws.String(rc.source),
		ReplicationConfiguration: &s3types.ReplicationConfiguration{Role: aws.String(role), Rules: []s3types.ReplicationRule{rule}}}))
}

// replicated is the outcome of replicating one object.
type replicated struct {
	status  s3types.ReplicationStatus
	reason  string
	version string
	source  *s3.HeadObjectOutput
	replica *s3.HeadObjectOutput // nil unless COMPLETED
}

// putAndReplicate puts an object into bucket and waits, up to a deadline,
// for its replication to be decided.
func putAndReplicate(t *testing.T, c *Cloud, bucket, dst string, in *s3.PutObjectInput) replicated {
	t.Helper()
	ctx := context.Background()
	in.Bucket, in.Body = aws.String(bucket), strings.NewReader("canary")
	put := must1[*s3.PutObjectOutput](t, "put object")(c.S3(DemoSourceAccount, DemoSourceRegion).PutObject(ctx, in))
	v := aws.ToString(put.VersionId)
	deadline := time.Now().Add(10 * time.Second)
	var out replicated
	for {
		out.status = c.ReplicationStatus(bucket, aws.ToString(in.Key), v)
		if out.status != s3types.ReplicationStatusPending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("object %s still PENDING at the deadline", aws.ToString(in.Key))
		}
		time.Sleep(time.Millisecond)
	}
	out.version, out.reason = v, c.ReplicationFailure(bucket, aws.ToString(in.Key), v)
	out.source = must1[*s3.HeadObjectOutput](t, "head source")(c.S3(DemoSourceAccount, DemoSourceRegion).HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: in.Key, VersionId: put.VersionId}))
	if out.status == s3types.ReplicationStatusCompleted {
		out.replica = must1[*s3.HeadObjectOutput](t, "head replica")(c.S3(DemoDestinationAccount, DemoDestinationRegion).HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(dst), Key: in.Key, VersionId: put.VersionId}))
	}
	return out
}

func wantReplicated(t *testing.T, r replicated, status s3types.ReplicationStatus, reason ...string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %s (%s), want %s", r.status, r.reason, status)
	}
	for _, w := range reason {
		if !strings.Contains(r.reason, w) {
			t.Errorf("reason %q does not mention %q", r.reason, w)
		}
	}
}

func newCanaryCloud(t *testing.T) *Cloud {
	t.Helper()
	c := NewWithConfig(Config{ReplicationDelay: time.Millisecond})
	c.SeedDemo("", "")
	return c
}

// An object written without encryption headers into a bucket whose default
// is SSE-S3 replicates as SSE-S3, although the rule selects SSE-KMS objects
// and the destination's default is SSE-KMS with KB.
func TestCanarySSES3SourceReplicatesAsSSES3(t *testing.T) {
	t.Parallel()
	c := newCanaryCloud(t)
	rc := replicationCase{source: DemoSourceSSES3Bucket, destination: DemoDestinationBucket, prefix: "app/"}
	setupReplication(t, c, rc)
	r := putAndReplicate(t, c, rc.source, rc.destination, &s3.PutObjectInput{Key: aws.String("app/plain")})
	wantReplicated(t, r, s3types.ReplicationStatusCompleted)
	if r.source.ServerSideEncryption != s3types.ServerSideEncryptionAes256 {
		t.Errorf("source object encryption %s, want the bucket's default AES256", r.source.ServerSideEncryption)
	}
	if r.replica.ServerSideEncryption != s3types.ServerSideEncryptionAes256 || aws.ToString(r.replica.SSEKMSKeyId) != "" {
		t.Errorf("replica encryption %s key %q, want SSE-S3, not the destination's KB", r.replica.ServerSideEncryption, aws.ToString(r.replica.SSEKMSKeyId))
	}
	// The same bucket, written with SSE-KMS KA: the replica is under KB.
	r = putAndReplicate(t, c, rc.source, rc.destination, &s3.PutObjectInput{Key: aws.String("app/kms"), ServerSideEncryption: s3types.ServerSideEncryptionAwsKms, SSEKMSKeyId: aws.String(DemoSourceKey)})
	wantReplicated(t, r, s3types.ReplicationStatusCompleted)
	if aws.ToString(r.replica.SSEKMSKeyId) != DemoDestinationKey {
		t.Errorf("replica of an SSE-KMS object is under %q, want KB", aws.ToString(r.replica.SSEKMSKeyId))
	}
}

// An object written without encryption headers into a bucket whose default
// is SSE-KMS with another key than the one the role may decrypt fails.
func TestCanaryOtherDefaultKeyFails(t *testing.T) {
	t.Parallel()
	c := newCanaryCloud(t)
	rc := replicationCase{source: DemoSourceOtherKeyBucket, destination: DemoDestinationBucket, prefix: ""}
	setupReplication(t, c, rc)
	r := putAndReplicate(t, c, rc.source, rc.destination, &s3.PutObjectInput{Key: aws.String("app/plain")})
	wantReplicated(t, r, s3types.ReplicationStatusFailed, "SrcGetObjectNotPermitted", "kms:Decrypt", DemoSourceOtherKey)
	if aws.ToString(r.source.SSEKMSKeyId) != DemoSourceOtherKey {
		t.Errorf("source object under %q, want the bucket's default key", aws.ToString(r.source.SSEKMSKeyId))
	}
	r = putAndReplicate(t, c, rc.source, rc.destination, &s3.PutObjectInput{Key: aws.String("app/ka"), ServerSideEncryption: s3types.ServerSideEncryptionAwsKms, SSEKMSKeyId: aws.String(DemoSourceKey)})
	wantReplicated(t, r, s3types.ReplicationStatusCompleted)
}

// With S3 Bucket Keys the encryption context is the bucket's ARN: a role
// whose KMS conditions name only object ARNs cannot replicate such objects.
func TestCanaryBucketKeysContext(t *testing.T) {
	t.Parallel()
	onlyObjects := func(p *policy.RolePolicies) {
		for i := range p.Inline {
			for _, st := range p.Inline[i].Document.Statement {
				for _, keys := range st.Condition {
					if v, ok := keys["kms:EncryptionContext:aws:s3:arn"]; ok {
						keys["kms:EncryptionContext:aws:s3:arn"] = policy.Values(slicesFilter(v, func(s string) bool { return strings.Contains(s, "/") }))
					}
				}
			}
		}
	}
	tests := []struct {
		name      string
		edit      func(*policy.RolePolicies)
		bucketKey *bool
		want      s3types.ReplicationStatus
	}{
		{"bucket key (the bucket's default) with bucketbridge's documents", nil, nil, s3types.ReplicationStatusCompleted},
		{"bucket key with object ARNs only in the conditions", onlyObjects, nil, s3types.ReplicationStatusFailed},
		{"no bucket key with object ARNs only in the conditions", onlyObjects, aws.Bool(false), s3types.ReplicationStatusCompleted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCanaryCloud(t)
			rc := replicationCase{source: DemoSourceBucket, destination: DemoDestinationBucket, prefix: "app/", editRole: tt.edit}
			setupReplication(t, c, rc)
			r := putAndReplicate(t, c, rc.source, rc.destination, &s3.PutObjectInput{Key: aws.String("app/x"), BucketKeyEnabled: tt.bucketKey})
			wantReplicated(t, r, tt.want)
			if tt.want == s3types.ReplicationStatusFailed && !strings.Contains(r.reason, "kms:Decrypt") {
				t.Errorf("reason %q, want the decrypt refused", r.reason)
			}
			if r.replica != nil && aws.ToBool(r.replica.BucketKeyEnabled) != aws.ToBool(r.source.BucketKeyEnabled) {
				t.Errorf("replica bucket key %v, source %v", aws.ToBool(r.replica.BucketKeyEnabled), aws.ToBool(r.source.BucketKeyEnabled))
			}
		})
	}
}

func slicesFilter(v policy.Values, keep func(string) bool) []string {
	var out []string
	for _, s := range v {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

// Replication from a bucket with Object Lock needs Object Lock on the
// destination and the role's read of retention and legal holds.
func TestCanaryObjectLock(t *testing.T) {
	t.Parallel()
	lock := &s3types.ObjectLockConfiguration{ObjectLockEnabled: s3types.ObjectLockEnabledEnabled,
		Rule: &s3types.ObjectLockRule{DefaultRetention: &s3types.DefaultRetention{Mode: s3types.ObjectLockRetentionModeGovernance, Days: aws.Int32(1)}}}
	tests := []struct {
		name        string
		destination string
		roleLock    bool
		want        s3types.ReplicationStatus
		reason      []string
	}{
		{"destination without Object Lock", DemoDestinationBucket, true, s3types.ReplicationStatusFailed, []string{"DstBucketObjectLockConfigMissing"}},
		{"role without retention rights", "locked-destination", false, s3types.ReplicationStatusFailed, []string{"SrcGetRetentionNotPermitted", "s3:GetObjectRetention"}},
		{"everything in place", "locked-destination", true, s3types.ReplicationStatusCompleted, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c := newCanaryCloud(t)
			if err := c.AddBucket(DemoSourceAccount, DemoSourceRegion, "locked-source", BucketOptions{Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: DemoSourceKey, BucketKey: true, ObjectLock: lock}); err != nil {
				t.Fatal(err)
			}
			if err := c.AddBucket(DemoDestinationAccount, DemoDestinationRegion, "locked-destination", BucketOptions{Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: DemoDestinationKey,
				ObjectLock: &s3types.ObjectLockConfiguration{ObjectLockEnabled: s3types.ObjectLockEnabledEnabled}}); err != nil {
				t.Fatal(err)
			}
			rc := replicationCase{source: "locked-source", destination: tt.destination, prefix: "", objectLock: tt.roleLock}
			setupReplication(t, c, rc)
			r := putAndReplicate(t, c, rc.source, rc.destination, &s3.PutObjectInput{Key: aws.String("bucketbridge-canary/req-1")})
			wantReplicated(t, r, tt.want, tt.reason...)
			if r.source.ObjectLockMode != s3types.ObjectLockModeGovernance {
				t.Errorf("source object lock %q, want the default GOVERNANCE retention", r.source.ObjectLockMode)
			}
			// The canary cannot be deleted while its retention lasts.
			_, err := c.S3(DemoSourceAccount, DemoSourceRegion).DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(rc.source), Key: aws.String("bucketbridge-canary/req-1"), VersionId: aws.String(r.version)})
			wantMessage(t, "delete the locked canary", err, "AccessDenied", "Access Denied because object protected by object lock.")
			if r.replica == nil {
				return
			}
			if r.replica.ObjectLockMode != s3types.ObjectLockModeGovernance || !aws.ToTime(r.replica.ObjectLockRetainUntilDate).Equal(aws.ToTime(r.source.ObjectLockRetainUntilDate)) {
				t.Errorf("replica lock %q until %v, want the source's", r.replica.ObjectLockMode, aws.ToTime(r.replica.ObjectLockRetainUntilDate))
			}
		})
	}
}

// A replica of an object without retention gets the destination bucket's
// default retention; one of an object with its own retention keeps that,
// overriding the destination's default, as S3 does.
func TestReplicaRetentionFromSourceOrDestinationDefault(t *testing.T) {
	t.Parallel()
	c := newCanaryCloud(t)
	if err := c.AddBucket(DemoDestinationAccount, DemoDestinationRegion, "compliance-destination", BucketOptions{Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: DemoDestinationKey,
		ObjectLock: &s3types.ObjectLockConfiguration{ObjectLockEnabled: s3types.ObjectLockEnabledEnabled,
			Rule: &s3types.ObjectLockRule{DefaultRetention: &s3types.DefaultRetention{Mode: s3types.ObjectLockRetentionModeCompliance, Days: aws.Int32(3)}}}}); err != nil {
		t.Fatal(err)
	}
	rc := replicationCase{source: DemoSourceBucket, destination: "compliance-destination"}
	setupReplication(t, c, rc)
	before := time.Now()
	r := putAndReplicate(t, c, rc.source, rc.destination, &s3.PutObjectInput{Key: aws.String("plain")})
	wantReplicated(t, r, s3types.ReplicationStatusCompleted)
	if until := aws.ToTime(r.replica.ObjectLockRetainUntilDate); r.replica.ObjectLockMode != s3types.ObjectLockModeCompliance || until.Before(before.Add(71*time.Hour)) {
		t.Errorf("replica of an object without retention: %q until %v, want the destination's COMPLIANCE default of 3 days", r.replica.ObjectLockMode, until)
	}

	locked := newCanaryCloud(t)
	if err := locked.AddBucket(DemoSourceAccount, DemoSourceRegion, "locked-source", BucketOptions{Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: DemoSourceKey, BucketKey: true,
		ObjectLock: &s3types.ObjectLockConfiguration{ObjectLockEnabled: s3types.ObjectLockEnabledEnabled}}); err != nil {
		t.Fatal(err)
	}
	if err := locked.AddBucket(DemoDestinationAccount, DemoDestinationRegion, "compliance-destination", BucketOptions{Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: DemoDestinationKey,
		ObjectLock: &s3types.ObjectLockConfiguration{ObjectLockEnabled: s3types.ObjectLockEnabledEnabled,
			Rule: &s3types.ObjectLockRule{DefaultRetention: &s3types.DefaultRetention{Mode: s3types.ObjectLockRetentionModeCompliance, Days: aws.Int32(3)}}}}); err != nil {
		t.Fatal(err)
	}
	rc = replicationCase{source: "locked-source", destination: "compliance-destination", objectLock: true}
	setupReplication(t, locked, rc)
	until := time.Now().Add(time.Hour).Truncate(time.Second)
	r = putAndReplicate(t, locked, rc.source, rc.destination, &s3.PutObjectInput{Key: aws.String("governed"),
		ObjectLockMode: s3types.ObjectLockModeGovernance, ObjectLockRetainUntilDate: aws.Time(until)})
	wantReplicated(t, r, s3types.ReplicationStatusCompleted)
	if r.replica.ObjectLockMode != s3types.ObjectLockModeGovernance || !aws.ToTime(r.replica.ObjectLockRetainUntilDate).Equal(until) {
		t.Errorf("replica of an object with GOVERNANCE retention: %q until %v, want the source's", r.replica.ObjectLockMode, aws.ToTime(r.replica.ObjectLockRetainUntilDate))
	}
}

// The role's permissions may come from attached managed policies only.
func TestCanaryManagedPolicies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCanaryCloud(t)
	rc := replicationCase{source: DemoSourceBucket, destination: DemoDestinationBucket, prefix: "", managed: true}
	setupReplication(t, c, rc)
	inline := must1[*iam.ListRolePoliciesOutput](t, "list inline")(c.IAM(DemoSourceAccount).ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(rc.roleName())}))
	if len(inline.PolicyNames) != 0 {
		t.Fatalf("inline policies %v, want none", inline.PolicyNames)
	}
	wantReplicated(t, putAndReplicate(t, c, rc.source, rc.destination, &s3.PutObjectInput{Key: aws.String("one")}), s3types.ReplicationStatusCompleted)
	attached := must1[*iam.ListAttachedRolePoliciesOutput](t, "list attached")(c.IAM(DemoSourceAccount).ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(rc.roleName())}))
	for _, p := range attached.AttachedPolicies {
		must1[*iam.DetachRolePolicyOutput](t, "detach")(c.IAM(DemoSourceAccount).DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(rc.roleName()), PolicyArn: p.PolicyArn}))
	}
	wantReplicated(t, putAndReplicate(t, c, rc.source, rc.destination, &s3.PutObjectInput{Key: aws.String("two")}), s3types.ReplicationStatusFailed, "SrcGetObjectNotPermitted")
}

// A permissions boundary limits what the role's policies grant.
func TestCanaryPermissionsBoundary(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		boundary string
		want     s3types.ReplicationStatus
		reason   []string
	}{
		{"boundary without KMS", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}`,
			s3types.ReplicationStatusFailed, []string{"SrcGetObjectNotPermitted", "kms:Decrypt", "permissions boundary"}},
		{"boundary denying replication", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","kms:*"],"Resource":"*"},{"Sid":"NoWrites","Effect":"Deny","Action":"s3:Replicate*","Resource":"*"}]}`,
			s3types.ReplicationStatusFailed, []string{"DstPutObjectNotPermitted", `Sid "NoWrites"`, "permissions boundary"}},
		{"boundary allowing S3 and KMS", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","kms:*"],"Resource":"*"}]}`,
			s3types.ReplicationStatusCompleted, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCanaryCloud(t)
			rc := replicationCase{source: DemoSourceBucket, destination: DemoDestinationBucket, prefix: "", boundary: tt.boundary}
			setupReplication(t, c, rc)
			wantReplicated(t, putAndReplicate(t, c, rc.source, rc.destination, &s3.PutObjectInput{Key: aws.String("x")}), tt.want, tt.reason...)
		})
	}
}

// The demo seeds the buckets the walkthrough and the default-encryption
// checks use.
func TestDemoDefaultEncryption(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := NewDemo("", "")
	s3A := c.S3(DemoSourceAccount, DemoSourceRegion)
	for bucket, want := range map[string]string{
		DemoSourceBucket:         `{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms","KMSMasterKeyID":"` + DemoSourceKey + `"},"BucketKeyEnabled":true}]}`,
		DemoSourceSSES3Bucket:    `{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"},"BucketKeyEnabled":false}]}`,
		DemoSourceOtherKeyBucket: `{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms","KMSMasterKeyID":"` + DemoSourceOtherKey + `"},"BucketKeyEnabled":false}]}`,
	} {
		v := must1[*s3.GetBucketVersioningOutput](t, "versioning")(s3A.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(bucket), ExpectedBucketOwner: aws.String(DemoSourceAccount)}))
		if v.Status != s3types.BucketVersioningStatusEnabled {
			t.Errorf("%s versioning %q", bucket, v.Status)
		}
		enc := must1[*s3.GetBucketEncryptionOutput](t, "encryption")(s3A.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(bucket)}))
		var got, w policy.BucketEncryption
		b, _ := json.Marshal(enc.ServerSideEncryptionConfiguration)
		if err := errors.Join(json.Unmarshal(b, &got), json.Unmarshal([]byte(want), &w)); err != nil {
			t.Fatal(err)
		}
		if got.Default() != w.Default() {
			t.Errorf("%s default encryption %+v, want %+v", bucket, got.Default(), w.Default())
		}
	}
	if _, err := c.KMS(DemoSourceAccount, DemoSourceRegion).DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(DemoSourceOtherKey)}); err != nil {
		t.Errorf("the second source key: %v", err)
	}
}

// FailReplication fails exactly the next n replications from the account,
// with the reason S3 gives a role it cannot use yet, and the objects put
// afterwards replicate again.
func TestFailReplicationFailsTheNextReplications(t *testing.T) {
	t.Parallel()
	c := newCanaryCloud(t)
	rc := replicationCase{source: DemoSourceBucket, destination: DemoDestinationBucket}
	setupReplication(t, c, rc)
	c.Faults(DemoSourceAccount).FailReplication(2)
	for i, want := range []s3types.ReplicationStatus{s3types.ReplicationStatusFailed, s3types.ReplicationStatusFailed, s3types.ReplicationStatusCompleted} {
		r := putAndReplicate(t, c, rc.source, rc.destination, &s3.PutObjectInput{Key: aws.String(fmt.Sprintf("object-%d", i))})
		if want == s3types.ReplicationStatusFailed {
			wantReplicated(t, r, want, "AssumeRoleNotPermitted", "propagation")
		} else {
			wantReplicated(t, r, want)
		}
	}
}
