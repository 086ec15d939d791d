package awsfake

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// canaryDocs are the documents of DESIGN §10 for demo-source →
// demo-destination, each a list of statements so that a test can drop one.
type canaryDocs struct {
	trust        string
	rolePolicy   []string
	keyPolicyB   []string
	bucketPolicy []string
	// suspendDestination suspends versioning on the destination after the
	// rule is written.
	suspendDestination bool
	// deleteRole deletes the role (and its policies) after the rule is
	// written.
	deleteRole bool
}

const canaryRole = "bucketbridge-demo-source"

func correctDocs() canaryDocs {
	role := "arn:aws:iam::" + DemoSourceAccount + ":role/" + canaryRole
	return canaryDocs{
		trust: trustS3,
		rolePolicy: []string{
			`{"Sid":"SourceBucket","Effect":"Allow","Action":["s3:ListBucket","s3:GetReplicationConfiguration"],"Resource":"arn:aws:s3:::demo-source"}`,
			`{"Sid":"SourceObjects","Effect":"Allow","Action":["s3:GetObjectVersionForReplication","s3:GetObjectVersionAcl","s3:GetObjectVersionTagging"],"Resource":"arn:aws:s3:::demo-source/*"}`,
			`{"Sid":"DestinationObjects","Effect":"Allow","Action":["s3:ReplicateObject","s3:ReplicateDelete","s3:ReplicateTags","s3:ObjectOwnerOverrideToBucketOwner"],"Resource":"arn:aws:s3:::demo-destination/*"}`,
			`{"Sid":"DecryptSource","Effect":"Allow","Action":"kms:Decrypt","Resource":"` + DemoSourceKey + `","Condition":{"StringEquals":{"kms:ViaService":"s3.us-east-1.amazonaws.com"},"StringLike":{"kms:EncryptionContext:aws:s3:arn":["arn:aws:s3:::demo-source","arn:aws:s3:::demo-source/*"]}}}`,
			`{"Sid":"EncryptDestination","Effect":"Allow","Action":["kms:Encrypt","kms:GenerateDataKey","kms:Decrypt"],"Resource":"` + DemoDestinationKey + `","Condition":{"StringEquals":{"kms:ViaService":"s3.us-west-2.amazonaws.com"},"StringLike":{"kms:EncryptionContext:aws:s3:arn":["arn:aws:s3:::demo-destination","arn:aws:s3:::demo-destination/*"]}}}`,
		},
		keyPolicyB: []string{
			`{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":"kms:*","Resource":"*"}`,
			`{"Sid":"BucketbridgeReplicaEncrypt","Effect":"Allow","Principal":{"AWS":["` + role + `"]},"Action":["kms:Encrypt","kms:GenerateDataKey","kms:Decrypt"],"Resource":"*","Condition":{"StringEquals":{"kms:ViaService":"s3.us-west-2.amazonaws.com"},"StringLike":{"kms:EncryptionContext:aws:s3:arn":["arn:aws:s3:::demo-destination","arn:aws:s3:::demo-destination/*"]}}}`,
		},
		bucketPolicy: []string{
			`{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::demo-destination","arn:aws:s3:::demo-destination/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}`,
			`{"Sid":"BucketbridgeReplicaObjects","Effect":"Allow","Principal":{"AWS":["` + role + `"]},"Action":["s3:ReplicateObject","s3:ReplicateDelete","s3:ReplicateTags","s3:ObjectOwnerOverrideToBucketOwner"],"Resource":"arn:aws:s3:::demo-destination/*"}`,
			`{"Sid":"BucketbridgeReplicaBucket","Effect":"Allow","Principal":{"AWS":["` + role + `"]},"Action":"s3:GetBucketVersioning","Resource":"arn:aws:s3:::demo-destination"}`,
		},
	}
}

// without returns stmts minus the statement with this Sid.
func without(stmts []string, sid string) []string {
	var out []string
	for _, s := range stmts {
		if !strings.Contains(s, `"Sid":"`+sid+`"`) {
			out = append(out, s)
		}
	}
	return out
}

func doc(stmts []string) string {
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(stmts, ",") + `]}`
}

// provisionCanary writes docs into a demo Cloud through the fake's SDK
// clients, the way the provisioner does, and puts a canary object.
func provisionCanary(t *testing.T, d canaryDocs) (*Cloud, *s3.PutObjectOutput) {
	t.Helper()
	ctx := context.Background()
	c := NewWithConfig(Config{ReplicationDelay: time.Millisecond})
	c.SeedDemo("", "")
	iamA := c.IAM(DemoSourceAccount)
	s3A := c.S3(DemoSourceAccount, DemoSourceRegion)
	s3B := c.S3(DemoDestinationAccount, DemoDestinationRegion)
	must1[*iam.CreateRoleOutput](t, "create role")(iamA.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(canaryRole), AssumeRolePolicyDocument: aws.String(d.trust)}))
	must1[*iam.PutRolePolicyOutput](t, "put role policy")(iamA.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(canaryRole), PolicyName: aws.String("demo-destination"), PolicyDocument: aws.String(doc(d.rolePolicy))}))
	must1[*kms.PutKeyPolicyOutput](t, "put key policy")(c.KMS(DemoDestinationAccount, DemoDestinationRegion).PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(DemoDestinationKey), Policy: aws.String(doc(d.keyPolicyB))}))
	must1[*s3.PutBucketPolicyOutput](t, "put bucket policy")(s3B.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket), Policy: aws.String(doc(d.bucketPolicy))}))
	rule := replicationRule("bucketbridge-canary", 1, DemoDestinationBucket, DemoDestinationAccount, DemoDestinationKey)
	must1[*s3.PutBucketReplicationOutput](t, "put replication")(s3A.PutBucketReplication(ctx, &s3.PutBucketReplicationInput{Bucket: aws.String(DemoSourceBucket), ReplicationConfiguration: &s3types.ReplicationConfiguration{
		Role: aws.String("arn:aws:iam::" + DemoSourceAccount + ":role/" + canaryRole), Rules: []s3types.ReplicationRule{rule},
	}}))
	if d.suspendDestination {
		must1[*s3.PutBucketVersioningOutput](t, "suspend versioning")(s3B.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(DemoDestinationBucket), VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusSuspended}}))
	}
	if d.deleteRole {
		must1[*iam.DeleteRolePolicyOutput](t, "delete role policy")(iamA.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(canaryRole), PolicyName: aws.String("demo-destination")}))
		must1[*iam.DeleteRoleOutput](t, "delete role")(iamA.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(canaryRole)}))
	}
	put := must1[*s3.PutObjectOutput](t, "put canary")(s3A.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(DemoSourceBucket), Key: aws.String("bucketbridge-canary/req-1"), Body: strings.NewReader("canary"),
		ServerSideEncryption: s3types.ServerSideEncryptionAwsKms, SSEKMSKeyId: aws.String(DemoSourceKey), ExpectedBucketOwner: aws.String(DemoSourceAccount),
	}))
	return c, put
}

// waitReplicated waits, up to a deadline, until the canary is no longer
// PENDING and returns its status.
func waitReplicated(t *testing.T, c *Cloud, versionID string) s3types.ReplicationStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := c.ReplicationStatus(DemoSourceBucket, "bucketbridge-canary/req-1", versionID)
		if st != s3types.ReplicationStatusPending {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("canary still PENDING at the deadline")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCanaryReplicatesUnderCorrectDocuments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, put := provisionCanary(t, correctDocs())
	if st := waitReplicated(t, c, aws.ToString(put.VersionId)); st != s3types.ReplicationStatusCompleted {
		t.Fatalf("status %s (%s), want COMPLETED", st, c.ReplicationFailure(DemoSourceBucket, "bucketbridge-canary/req-1", aws.ToString(put.VersionId)))
	}
	src := must1[*s3.HeadObjectOutput](t, "head source")(c.S3(DemoSourceAccount, DemoSourceRegion).HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(DemoSourceBucket), Key: aws.String("bucketbridge-canary/req-1"), VersionId: put.VersionId}))
	if src.ReplicationStatus != s3types.ReplicationStatusCompleted {
		t.Errorf("HeadObject of the source says %s, want COMPLETED", src.ReplicationStatus)
	}
	rep := must1[*s3.HeadObjectOutput](t, "head replica")(c.S3(DemoDestinationAccount, DemoDestinationRegion).HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(DemoDestinationBucket), Key: aws.String("bucketbridge-canary/req-1"), VersionId: put.VersionId}))
	got := []string{string(rep.ReplicationStatus), string(rep.ServerSideEncryption), aws.ToString(rep.SSEKMSKeyId)}
	want := []string{"REPLICA", "aws:kms", DemoDestinationKey}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("replica status/encryption/key = %v, want %v", got, want)
	}
}

func TestCanaryFailsWithReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(d *canaryDocs)
		want   []string // substrings of the failure reason
	}{
		{"TrustDoesNotAllowS3", func(d *canaryDocs) { d.trust = strings.Replace(d.trust, "s3.amazonaws.com", "ec2.amazonaws.com", 1) }, []string{"AssumeRoleNotPermitted", "trust policy"}},
		{"RoleDeleted", func(d *canaryDocs) { d.deleteRole = true }, []string{"AssumeRoleNotPermitted", "does not exist"}},
		{"CannotReadSourceVersion", func(d *canaryDocs) { d.rolePolicy = without(d.rolePolicy, "SourceObjects") }, []string{"SrcGetObjectNotPermitted", "s3:GetObjectVersionForReplication"}},
		{"CannotDecryptSource", func(d *canaryDocs) { d.rolePolicy = without(d.rolePolicy, "DecryptSource") }, []string{"SrcGetObjectNotPermitted", "kms:Decrypt", DemoSourceKey}},
		{"DecryptConditionWrongRegion", func(d *canaryDocs) {
			d.rolePolicy[3] = strings.Replace(d.rolePolicy[3], "s3.us-east-1.", "s3.eu-west-1.", 1)
		}, []string{"SrcGetObjectNotPermitted", "kms:Decrypt"}},
		{"CannotReplicateObject", func(d *canaryDocs) { d.rolePolicy = without(d.rolePolicy, "DestinationObjects") }, []string{"DstPutObjectNotPermitted", "s3:ReplicateObject", "identity policy"}},
		{"CannotEncryptDestination", func(d *canaryDocs) { d.rolePolicy = without(d.rolePolicy, "EncryptDestination") }, []string{"DstPutObjectNotPermitted", "kms:Encrypt", DemoDestinationKey}},
		{"DestinationKeyPolicyMissesRole", func(d *canaryDocs) { d.keyPolicyB = without(d.keyPolicyB, "BucketbridgeReplicaEncrypt") }, []string{"DstPutObjectNotPermitted", "kms:Encrypt", "key policy"}},
		{"DestinationBucketPolicyMissesRole", func(d *canaryDocs) { d.bucketPolicy = without(d.bucketPolicy, "BucketbridgeReplicaObjects") }, []string{"DstPutObjectNotPermitted", "s3:ReplicateObject", "bucket policy of demo-destination"}},
		{"DestinationVersioningSuspended", func(d *canaryDocs) { d.suspendDestination = true }, []string{"DstBucketUnversioned"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := correctDocs()
			tt.change(&d)
			c, put := provisionCanary(t, d)
			v := aws.ToString(put.VersionId)
			if st := waitReplicated(t, c, v); st != s3types.ReplicationStatusFailed {
				t.Fatalf("status %s, want FAILED", st)
			}
			reason := c.ReplicationFailure(DemoSourceBucket, "bucketbridge-canary/req-1", v)
			for _, w := range tt.want {
				if !strings.Contains(reason, w) {
					t.Errorf("reason %q does not mention %q", reason, w)
				}
			}
			_, err := c.S3(DemoDestinationAccount, DemoDestinationRegion).HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(DemoDestinationBucket), Key: aws.String("bucketbridge-canary/req-1")})
			wantCode(t, "replica of a failed replication", err, "NotFound")
		})
	}
}

func TestCanaryOutsideRulePrefixIsNotReplicated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, _ := provisionCanary(t, correctDocs())
	// Narrow the rule to a prefix, then put an object outside it (it gets
	// the bucket's default SSE-KMS encryption).
	s3A := c.S3(DemoSourceAccount, DemoSourceRegion)
	rc := must1[*s3.GetBucketReplicationOutput](t, "get replication")(s3A.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(DemoSourceBucket)})).ReplicationConfiguration
	rc.Rules[0].Filter = &s3types.ReplicationRuleFilter{Prefix: aws.String("only-this/")}
	must1[*s3.PutBucketReplicationOutput](t, "put replication")(s3A.PutBucketReplication(ctx, &s3.PutBucketReplicationInput{Bucket: aws.String(DemoSourceBucket), ReplicationConfiguration: rc}))
	put := must1[*s3.PutObjectOutput](t, "put object")(s3A.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(DemoSourceBucket), Key: aws.String("elsewhere/x"), Body: strings.NewReader("x")}))
	h := must1[*s3.HeadObjectOutput](t, "head")(s3A.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(DemoSourceBucket), Key: aws.String("elsewhere/x"), VersionId: put.VersionId}))
	if h.ReplicationStatus != "" {
		t.Errorf("object outside the rule's prefix has status %s, want none", h.ReplicationStatus)
	}
	if h.ServerSideEncryption != s3types.ServerSideEncryptionAwsKms || aws.ToString(h.SSEKMSKeyId) != DemoSourceKey {
		t.Errorf("default encryption not applied: %s %s", h.ServerSideEncryption, aws.ToString(h.SSEKMSKeyId))
	}
}
