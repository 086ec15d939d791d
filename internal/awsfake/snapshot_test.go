package awsfake

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/google/go-cmp/cmp"
)

// snapshotEpoch is the clock of the snapshot tests: two clouds that do the
// same things at the same time end in the same world, unique IDs included.
var snapshotEpoch = time.Date(2026, 11, 27, 3, 48, 59, 129607000, time.UTC)

func fixedClock() time.Time { return snapshotEpoch }

// worldJSON is a world as the database keeps it.
func worldJSON(t *testing.T, c *Cloud) []byte {
	t.Helper()
	b, err := json.Marshal(c.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// restoreInto restores data, as marshal made it, into a new Cloud with cfg.
func restoreInto(t *testing.T, cfg Config, data []byte) *Cloud {
	t.Helper()
	var s Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	c := NewWithConfig(cfg)
	if err := c.Restore(&s); err != nil {
		t.Fatal(err)
	}
	return c
}

// settle waits until no replication of c is pending.
func settle(t *testing.T, c *Cloud) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		n := len(c.pending)
		c.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d replications still pending at the deadline", n)
		}
		time.Sleep(time.Millisecond)
	}
}

// putCanary puts an SSE-KMS object into demo-source and returns its version.
func putCanary(t *testing.T, c *Cloud, key string) string {
	t.Helper()
	put := must1[*s3.PutObjectOutput](t, "put "+key)(c.S3(DemoSourceAccount, DemoSourceRegion).PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(DemoSourceBucket), Key: aws.String(key), Body: strings.NewReader("canary"),
		ServerSideEncryption: s3types.ServerSideEncryptionAwsKms, SSEKMSKeyId: aws.String(DemoSourceKey),
	}))
	return aws.ToString(put.VersionId)
}

// richWorld gives the demo world everything a Snapshot must keep: a role
// with a path, tags, a boundary, inline and attached managed policies (one
// with two versions), a deleted role's unique ID in a key policy, bucket and
// key policies, a replication configuration, replicated and failed
// objects, a delete marker, an Object Lock bucket with a locked version,
// and a key created through the API.
func richWorld(t *testing.T, c *Cloud) {
	t.Helper()
	ctx := context.Background()
	c.SeedDemo("", "")
	iamA := c.IAM(DemoSourceAccount)
	s3A := c.S3(DemoSourceAccount, DemoSourceRegion)
	s3B := c.S3(DemoDestinationAccount, DemoDestinationRegion)
	d := correctDocs()
	boundary := must1[*iam.CreatePolicyOutput](t, "create boundary")(iamA.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String("boundary"),
		PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","kms:*"],"Resource":"*"}]}`)}))
	must1[*iam.CreateRoleOutput](t, "create role")(iamA.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(canaryRole),
		AssumeRolePolicyDocument: aws.String(d.trust), Description: aws.String("replication"), PermissionsBoundary: boundary.Policy.Arn,
		Tags: []iamtypes.Tag{{Key: aws.String("managed-by"), Value: aws.String("bucketbridge")}}}))
	must1[*iam.PutRolePolicyOutput](t, "put role policy")(iamA.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(canaryRole),
		PolicyName: aws.String("bucketbridge-replication"), PolicyDocument: aws.String(doc(d.rolePolicy[:3]))}))
	managed := must1[*iam.CreatePolicyOutput](t, "create managed policy")(iamA.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String("bucketbridge-for-role-1"),
		Path: aws.String("/bucketbridge/"), PolicyDocument: aws.String(doc(d.rolePolicy[3:4]))}))
	must1[*iam.CreatePolicyVersionOutput](t, "create policy version")(iamA.CreatePolicyVersion(ctx, &iam.CreatePolicyVersionInput{PolicyArn: managed.Policy.Arn,
		PolicyDocument: aws.String(doc(d.rolePolicy[3:])), SetAsDefault: true}))
	must1[*iam.AttachRolePolicyOutput](t, "attach")(iamA.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(canaryRole), PolicyArn: managed.Policy.Arn}))
	must1[*kms.PutKeyPolicyOutput](t, "put key policy")(c.KMS(DemoDestinationAccount, DemoDestinationRegion).PutKeyPolicy(ctx,
		&kms.PutKeyPolicyInput{KeyId: aws.String(DemoDestinationKey), Policy: aws.String(doc(d.keyPolicyB))}))
	must1[*s3.PutBucketPolicyOutput](t, "put bucket policy")(s3B.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket), Policy: aws.String(doc(d.bucketPolicy))}))
	must1[*s3.PutBucketReplicationOutput](t, "put replication")(s3A.PutBucketReplication(ctx, &s3.PutBucketReplicationInput{Bucket: aws.String(DemoSourceBucket),
		ReplicationConfiguration: &s3types.ReplicationConfiguration{Role: aws.String("arn:aws:iam::" + DemoSourceAccount + ":role/" + canaryRole),
			Rules: []s3types.ReplicationRule{replicationRule("bucketbridge-canary", 1, DemoDestinationBucket, DemoDestinationAccount, DemoDestinationKey)}}}))

	// A deleted role leaves its unique ID in the key policy naming it.
	gone := `arn:aws:iam::111111111111:role/gone`
	must1[*iam.CreateRoleOutput](t, "create gone")(iamA.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("gone"), AssumeRolePolicyDocument: aws.String(trustS3)}))
	must1[*kms.PutKeyPolicyOutput](t, "name gone")(c.KMS(DemoSourceAccount, DemoSourceRegion).PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(DemoSourceOtherKey),
		Policy: aws.String(strings.Replace(DefaultKeyPolicy(DemoSourceAccount), `"Resource":"*"}`, `"Resource":"*"},{"Sid":"Gone","Effect":"Allow","Principal":{"AWS":"`+gone+`"},"Action":"kms:Decrypt","Resource":"*"}`, 1))}))
	must1[*iam.DeleteRoleOutput](t, "delete gone")(iamA.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String("gone")}))

	if v := putCanary(t, c, "bucketbridge-canary/ok"); waitStatus(t, c, "bucketbridge-canary/ok", v) != s3types.ReplicationStatusCompleted {
		t.Fatal("the first canary did not replicate")
	}
	must1[*s3.PutBucketPolicyOutput](t, "drop the replicate statement")(s3B.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket),
		Policy: aws.String(doc(without(d.bucketPolicy, "BucketbridgeReplicaObjects")))}))
	if v := putCanary(t, c, "bucketbridge-canary/denied"); waitStatus(t, c, "bucketbridge-canary/denied", v) != s3types.ReplicationStatusFailed {
		t.Fatal("the second canary did not fail")
	}
	must1[*s3.PutBucketPolicyOutput](t, "put bucket policy back")(s3B.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket), Policy: aws.String(doc(d.bucketPolicy))}))
	must1[*s3.DeleteObjectOutput](t, "delete marker")(s3A.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(DemoSourceBucket), Key: aws.String("bucketbridge-canary/ok")}))

	must1[*s3.CreateBucketOutput](t, "create locked bucket")(s3A.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("locked"), ObjectLockEnabledForBucket: aws.Bool(true)}))
	must1[*s3.PutObjectLockConfigurationOutput](t, "default retention")(s3A.PutObjectLockConfiguration(ctx, &s3.PutObjectLockConfigurationInput{Bucket: aws.String("locked"),
		ObjectLockConfiguration: &s3types.ObjectLockConfiguration{ObjectLockEnabled: s3types.ObjectLockEnabledEnabled,
			Rule: &s3types.ObjectLockRule{DefaultRetention: &s3types.DefaultRetention{Mode: s3types.ObjectLockRetentionModeCompliance, Days: aws.Int32(1)}}}}))
	must1[*s3.PutObjectOutput](t, "put locked")(s3A.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("locked"), Key: aws.String("kept"), Body: strings.NewReader("kept")}))
	must1[*kms.CreateKeyOutput](t, "create key")(c.KMS(DemoSourceAccount, "eu-west-1").CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("made through the API")}))
}

func waitStatus(t *testing.T, c *Cloud, key, version string) s3types.ReplicationStatus {
	t.Helper()
	settle(t, c)
	return c.ReplicationStatus(DemoSourceBucket, key, version)
}

func TestSnapshotRestoresTheSameWorld(t *testing.T) {
	t.Parallel()
	cfg := Config{ReplicationDelay: time.Millisecond, NowFunc: fixedClock}
	c := NewWithConfig(cfg)
	richWorld(t, c)
	data := worldJSON(t, c)
	for _, want := range []string{`"boundary":"arn:aws:iam::111111111111:policy/boundary"`, `"default_version":"v2"`, `"managed-by"`,
		`"replication":"COMPLETED"`, `"replication":"REPLICA"`, `"replication":"FAILED"`, `"delete_marker":true`, `"lock_mode":"COMPLIANCE"`,
		`\"AWS\":\"AROA`, "DstPutObjectNotPermitted", "made through the API"} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("the snapshot lacks %s", want)
		}
	}
	back := restoreInto(t, cfg, data)
	if again := worldJSON(t, back); !bytes.Equal(data, again) {
		t.Fatalf("restoring changed the world:\nbefore %s\nafter  %s", data, again)
	}
	if again := worldJSON(t, c); !bytes.Equal(data, again) {
		t.Fatal("two snapshots of the same world differ")
	}
}

// The restored world behaves as the original would have: the same calls
// give the same answers, the canary evaluator decides the same, new version
// and unique IDs continue the original's sequence, and both end in the same
// world.
func TestRestoredWorldBehavesTheSame(t *testing.T) {
	t.Parallel()
	cfg := Config{ReplicationDelay: time.Millisecond, NowFunc: fixedClock}
	original := NewWithConfig(cfg)
	richWorld(t, original)
	restored := restoreInto(t, cfg, worldJSON(t, original))

	ctx := context.Background()
	type answers struct {
		Role, Inline, Attached, KeyPolicy, OtherKeyPolicy, BucketPolicy, Replication string
		Versions                                                                     []string
		Canary, Denied, Locked                                                       []string
		Errors                                                                       []string
	}
	script := func(c *Cloud) answers {
		var a answers
		text := func(v any, err error) string {
			if err != nil {
				return "error: " + errCode(err)
			}
			b, _ := json.Marshal(v)
			return string(b)
		}
		iamA := c.IAM(DemoSourceAccount)
		s3A := c.S3(DemoSourceAccount, DemoSourceRegion)
		a.Role = text(iamA.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(canaryRole)}))
		a.Inline = text(iamA.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(canaryRole), PolicyName: aws.String("bucketbridge-replication")}))
		a.Attached = text(iamA.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(canaryRole)}))
		a.KeyPolicy = text(c.KMS(DemoDestinationAccount, DemoDestinationRegion).GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(DemoDestinationKey)}))
		a.OtherKeyPolicy = text(c.KMS(DemoSourceAccount, DemoSourceRegion).GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(DemoSourceOtherKey)}))
		a.BucketPolicy = text(c.S3(DemoDestinationAccount, DemoDestinationRegion).GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket)}))
		a.Replication = text(s3A.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(DemoSourceBucket)}))
		versions, err := s3A.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(DemoSourceBucket)})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range versions.Versions {
			a.Versions = append(a.Versions, aws.ToString(v.Key)+" "+aws.ToString(v.VersionId)+" "+c.ReplicationFailure(DemoSourceBucket, aws.ToString(v.Key), aws.ToString(v.VersionId)))
		}
		// A new canary replicates, and one the key policy no longer
		// allows fails, for the same reason in both worlds.
		v := putCanary(t, c, "bucketbridge-canary/after")
		a.Canary = []string{v, string(waitStatus(t, c, "bucketbridge-canary/after", v))}
		must1[*kms.PutKeyPolicyOutput](t, "drop the role from KB")(c.KMS(DemoDestinationAccount, DemoDestinationRegion).PutKeyPolicy(ctx,
			&kms.PutKeyPolicyInput{KeyId: aws.String(DemoDestinationKey), Policy: aws.String(doc(without(correctDocs().keyPolicyB, "BucketbridgeReplicaEncrypt")))}))
		v = putCanary(t, c, "bucketbridge-canary/no-key")
		a.Denied = []string{v, string(waitStatus(t, c, "bucketbridge-canary/no-key", v)), c.ReplicationFailure(DemoSourceBucket, "bucketbridge-canary/no-key", v)}
		// Object Lock still protects the locked version.
		locked, err := s3A.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String("locked")})
		if err != nil || len(locked.Versions) != 1 {
			t.Fatalf("locked bucket versions = %v, %v", locked, err)
		}
		_, err = s3A.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("locked"), Key: aws.String("kept"), VersionId: locked.Versions[0].VersionId})
		a.Locked = []string{errCode(err)}
		// The boundary and the attachment still count: the role cannot go.
		_, err = iamA.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(canaryRole)})
		a.Errors = append(a.Errors, errCode(err))
		_, err = iamA.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("gone"), AssumeRolePolicyDocument: aws.String(trustS3)})
		a.Errors = append(a.Errors, errCode(err))
		return a
	}
	want, got := script(original), script(restored)
	if want.Canary[1] != string(s3types.ReplicationStatusCompleted) || want.Denied[1] != string(s3types.ReplicationStatusFailed) ||
		!strings.Contains(want.Denied[2], "kms:Encrypt") || want.Locked[0] != "AccessDenied" || want.Errors[0] != "DeleteConflict" {
		t.Fatalf("the original world did not behave as the test expects: %+v", want)
	}
	if d := diffJSON(want, got); d != "" {
		t.Errorf("the restored world answers differently:\n%s", d)
	}
	if a, b := worldJSON(t, original), worldJSON(t, restored); !bytes.Equal(a, b) {
		t.Errorf("after the same calls the worlds differ:\noriginal %s\nrestored %s", a, b)
	}
}

// A replication pending when the snapshot was taken is decided after the
// restore, with the role and rule it was scheduled with.
func TestRestoreDecidesPendingReplications(t *testing.T) {
	t.Parallel()
	slow := NewWithConfig(Config{ReplicationDelay: time.Hour, NowFunc: fixedClock})
	fast := Config{ReplicationDelay: time.Millisecond, NowFunc: fixedClock}
	built := NewWithConfig(fast)
	richWorld(t, built)
	// Move the built world into a cloud that never decides on its own.
	if err := slow.Restore(built.Snapshot()); err != nil {
		t.Fatal(err)
	}
	v := putCanary(t, slow, "bucketbridge-canary/pending")
	if st := slow.ReplicationStatus(DemoSourceBucket, "bucketbridge-canary/pending", v); st != s3types.ReplicationStatusPending {
		t.Fatalf("status before the restore = %s, want PENDING", st)
	}
	data := worldJSON(t, slow)
	if !bytes.Contains(data, []byte(`"pending":[{"bucket":"demo-source","key":"bucketbridge-canary/pending"`)) {
		t.Fatalf("the snapshot does not hold the pending replication: %s", data)
	}
	back := restoreInto(t, fast, data)
	if st := waitStatus(t, back, "bucketbridge-canary/pending", v); st != s3types.ReplicationStatusCompleted {
		t.Errorf("restored pending replication ended %s (%s), want COMPLETED", st, back.ReplicationFailure(DemoSourceBucket, "bucketbridge-canary/pending", v))
	}
}

func TestRestoreRefusesAnotherFormat(t *testing.T) {
	t.Parallel()
	s := NewDemo("", "").Snapshot()
	s.Format = SnapshotFormat + 1
	if err := New().Restore(s); err == nil || !strings.Contains(err.Error(), "format") {
		t.Errorf("restore of format %d = %v, want an error naming the format", s.Format, err)
	}
}

// A server whose settings changed since the world was saved can still
// assume its provisioner roles.
func TestSeedProvisionersFollowsTheSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := NewDemo("", "")
	c.SeedProvisioners("", "rotated")
	c.SeedProvisioners("Other", "rotated")
	for _, tt := range []struct{ role, ext string }{{DefaultProvisionerRole, "rotated"}, {"Other", "rotated"}} {
		for _, acct := range []string{DemoSourceAccount, DemoDestinationAccount} {
			if _, err := c.STS(DemoServiceAccount).AssumeRole(ctx, stsAssume("arn:aws:iam::"+acct+":role/"+tt.role, tt.ext)); err != nil {
				t.Errorf("assume %s in %s with %s: %v", tt.role, acct, tt.ext, err)
			}
		}
	}
	if _, err := c.STS(DemoServiceAccount).AssumeRole(ctx, stsAssume("arn:aws:iam::"+DemoSourceAccount+":role/"+DefaultProvisionerRole, DefaultExternalID)); err == nil {
		t.Error("the old external ID still works")
	}
}

// diffJSON compares two values as their JSON.
func diffJSON(want, got any) string {
	w, _ := json.MarshalIndent(want, "", "  ")
	g, _ := json.MarshalIndent(got, "", "  ")
	return cmp.Diff(string(w), string(g))
}

func stsAssume(roleARN, externalID string) *sts.AssumeRoleInput {
	return &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("test"), ExternalId: aws.String(externalID)}
}
