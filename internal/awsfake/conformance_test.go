package awsfake

// The conformance suite: one set of scenarios run against the fake and
// against moto (DESIGN §7), so that the fake cannot drift from a real AWS
// emulator. `go test ./internal/awsfake -run TestConformance` needs moto at
// MOTO_URL (default http://127.0.0.1:5000); without it the moto half fails
// and says how to start it.
//
// Where the fake and moto differ, the fake follows AWS, on purpose; the
// scenarios below only assert what both do. Known differences:
//
//   - Replication: moto stores the configuration but never replicates and
//     sets no ReplicationStatus; the fake replicates when the documents allow
//     it (canary_test.go), as S3 does.
//   - Policies: moto evaluates no trust, key or IAM policy and accepts
//     malformed documents, invalid principals and key policies that lock
//     the caller out; the fake rejects them with AWS's codes
//     (MalformedPolicyDocument for IAM and KMS, MalformedPolicy for S3
//     bucket policies) and evaluates policies for AssumeRole, KMS calls,
//     cross-account S3 calls and replication (fake_test.go).
//   - AssumeRole: moto answers for any role ARN and ExternalId; the fake
//     needs the role and a trust policy that allows the caller with that
//     ExternalId, else AccessDenied, as AWS.
//   - PutBucketReplication: moto accepts a missing role and a missing or
//     unversioned destination; the fake answers InvalidRequest, as S3 does
//     for the destination (for the role the message is the fake's own).
//   - GetBucketReplication: moto drops SourceSelectionCriteria, reports
//     Filter as {Prefix: ""} and DeleteMarkerReplication as Disabled; the
//     fake returns the configuration as written, as AWS does. The suite
//     compares rule identity and destination only.
//   - IAM eventual consistency and faults: only the fake has them.
//   - ListRolePolicies: IAM and the fake list names alphabetically, moto
//     in insertion order. DescribeKey: moto leaves KeyUsage empty when
//     CreateKey did not set it; AWS and the fake say ENCRYPT_DECRYPT.
//   - Defaults of new buckets: the fake gives every bucket SSE-S3 default
//     encryption and Object Ownership BucketOwnerEnforced, as S3 does since
//     2023; moto reports no default encryption
//     (ServerSideEncryptionConfigurationNotFoundError). Not asserted.
//   - Deleted roles: moto forgets a deleted role and leaves its ARN in every
//     policy; AWS and the fake show the role's unique ID (AROA…) in its place
//     in bucket, key and trust policies, and refuse to save a policy that
//     holds such an ID (S3 MalformedPolicy "Invalid principal in policy",
//     KMS MalformedPolicyDocumentException "Policy contains a statement with
//     one or more invalid principals."). moto accepts it (fake_test.go).
//   - Size limits: moto enforces none of AWS's document quotas; the fake
//     refuses a bucket policy over 20 KB (PolicyTooLarge), a key policy over
//     32 KB (LimitExceededException), a role's inline policies over 10,240
//     characters in all and a managed policy over 6,144 characters
//     (LimitExceeded), and an eleventh managed policy attached to a role
//     (LimitExceeded "Cannot exceed quota for PoliciesPerRole: 10"), which
//     moto attaches (fake_test.go). Both stop a policy at 5 versions.
//   - DeletePolicy: moto deletes a policy still attached, or with versions
//     other than its default; IAM and the fake answer DeleteConflict.
//   - Permissions boundaries: moto checks only the ARN's form and evaluates
//     nothing; the fake wants a managed policy of the account and lets a role
//     do only what its boundary allows too (canary_test.go).
//   - Object Lock: moto insists on a checksum header (Content-MD5 or
//     x-amz-sdk-checksum-algorithm) to upload into a bucket with a default
//     retention, which the fake does not check (it sees no headers); moto lets
//     versioning of an Object Lock bucket be suspended and enables Object
//     Lock only on an empty bucket, where S3 and the fake refuse the first
//     (InvalidBucketState) and allow the second on any versioned bucket.
//   - ListPolicyVersions: the fake lists newest first, moto oldest first;
//     the suite compares them as sets.
//   - DeleteBucketEncryption: S3 and the fake return the bucket to SSE-S3
//     default encryption (every bucket has one since January 2023); moto
//     forgets the configuration (ServerSideEncryptionConfigurationNotFoundError).
//     The suite asserts only that the SSE-KMS default is gone.

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/bucketbridge/bucketbridge/internal/policy"
	"github.com/google/go-cmp/cmp"
)

// scenario is one conformance check, run on a fresh world.
type scenario struct {
	name string
	run  func(t *testing.T, w world)
}

var scenarios = []scenario{
	{"BucketPolicyLifecycle", scenarioBucketPolicy},
	{"RoleAndInlinePolicyLifecycle", scenarioRole},
	{"KeyPolicyLifecycle", scenarioKeyPolicy},
	{"NotFoundAnswers", scenarioNotFound},
	{"AssumeRoleIntoSecondAccount", scenarioSecondAccount},
	{"VersioningBeforeReplication", scenarioVersioningFirst},
	{"ReplacingDocumentsKeepsNothing", scenarioReplace},
	{"ObjectsAndVersions", scenarioObjects},
	{"EncryptionAndOwnership", scenarioEncryption},
	{"ManagedPolicies", scenarioManagedPolicies},
	{"PermissionsBoundaryAndRolePath", scenarioBoundaryAndPath},
	{"DefaultEncryptionOfNewObjects", scenarioDefaultEncryptionOfObjects},
	{"ObjectLock", scenarioObjectLock},
	{"RestoringDefaultEncryption", scenarioRestoreDefaultEncryption},
	{"ExplicitGovernanceRetentionOverridesCompliance", scenarioExplicitRetention},
}

func TestConformance(t *testing.T) {
	t.Parallel()
	backends := []struct {
		name string
		new  func(t *testing.T) world
	}{{"fake", newFakeWorld}, {"moto", newMotoWorld}}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) {
					t.Parallel()
					sc.run(t, b.new(t))
				})
			}
		})
	}
}

const trustS3 = `{"Version":"2012-10-17","Statement":[{"Sid":"S3ReplicationAssume","Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"sts:AssumeRole"}]}`

func rolePolicy(bucket string) string {
	return `{"Version":"2012-10-17","Statement":[{"Sid":"SourceBucket","Effect":"Allow","Action":["s3:ListBucket","s3:GetReplicationConfiguration"],"Resource":"arn:aws:s3:::` + bucket + `"}]}`
}

// newBucket creates a bucket (versioned when asked) with cl in region.
func newBucket(t *testing.T, cl clients, region string, versioned bool) string {
	t.Helper()
	ctx := context.Background()
	name := randomName("bb-conf")
	in := &s3.CreateBucketInput{Bucket: aws.String(name)}
	if region != "us-east-1" {
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(region)}
	}
	must1[*s3.CreateBucketOutput](t, "create bucket")(cl.s3.CreateBucket(ctx, in))
	if versioned {
		must1[*s3.PutBucketVersioningOutput](t, "enable versioning")(cl.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
			Bucket: aws.String(name), VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled},
		}))
	}
	return name
}

func mustParse(t *testing.T, doc string) policy.Document {
	t.Helper()
	d, err := policy.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("parse %s: %v", doc, err)
	}
	return d
}

func scenarioBucketPolicy(t *testing.T, w world) {
	ctx := context.Background()
	acct := randomAccount()
	cl := assume(t, w, acct, "us-east-1")
	b := newBucket(t, cl, "us-east-1", false)
	_, err := cl.s3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(b), ExpectedBucketOwner: aws.String(acct)})
	wantCode(t, "get policy before put", err, "NoSuchBucketPolicy")

	doc := `{"Version":"2012-10-17","Statement":[{"Sid":"Foreign","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::` + b + `","arn:aws:s3:::` + b + `/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}},` +
		`{"Sid":"ReadFromAccount","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + acct + `:root"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::` + b + `/*"}]}`
	must1[*s3.PutBucketPolicyOutput](t, "put policy")(cl.s3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(b), Policy: aws.String(doc), ExpectedBucketOwner: aws.String(acct)}))
	got := must1[*s3.GetBucketPolicyOutput](t, "get policy")(cl.s3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(b), ExpectedBucketOwner: aws.String(acct)}))
	if !policy.Equal(mustParse(t, doc), mustParse(t, aws.ToString(got.Policy))) {
		t.Errorf("policy read back differs:\nput %s\ngot %s", doc, aws.ToString(got.Policy))
	}
	must1[*s3.DeleteBucketPolicyOutput](t, "delete policy")(cl.s3.DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: aws.String(b), ExpectedBucketOwner: aws.String(acct)}))
	_, err = cl.s3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(b)})
	wantCode(t, "get policy after delete", err, "NoSuchBucketPolicy")
	must1[*s3.DeleteBucketPolicyOutput](t, "delete policy again")(cl.s3.DeleteBucketPolicy(ctx, &s3.DeleteBucketPolicyInput{Bucket: aws.String(b)}))
}

func scenarioRole(t *testing.T, w world) {
	ctx := context.Background()
	acct := randomAccount()
	cl := assume(t, w, acct, "us-east-1")
	name := randomName("bucketbridge-src")
	created := must1[*iam.CreateRoleOutput](t, "create role")(cl.iam.CreateRole(ctx, &iam.CreateRoleInput{
		RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trustS3),
		Tags: []iamtypes.Tag{{Key: aws.String("bucketbridge"), Value: aws.String("managed")}},
	}))
	if want := "arn:aws:iam::" + acct + ":role/" + name; aws.ToString(created.Role.Arn) != want {
		t.Errorf("role ARN %s, want %s", aws.ToString(created.Role.Arn), want)
	}
	_, err := cl.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trustS3)})
	wantCode(t, "create role twice", err, "EntityAlreadyExists")

	got := must1[*iam.GetRoleOutput](t, "get role")(cl.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)}))
	trust := aws.ToString(got.Role.AssumeRolePolicyDocument)
	if !strings.HasPrefix(trust, "%7B") {
		t.Errorf("trust policy %q is not URL-encoded as IAM returns it", trust)
	}
	if d, err := policy.DecodeIAM(trust); err != nil || !policy.Equal(d, mustParse(t, trustS3)) {
		t.Errorf("trust policy read back %q (err %v), want %s", trust, err, trustS3)
	}

	newTrust := strings.Replace(trustS3, "S3ReplicationAssume", "S3Assume", 1)
	must1[*iam.UpdateAssumeRolePolicyOutput](t, "update trust")(cl.iam.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(name), PolicyDocument: aws.String(newTrust)}))
	got = must1[*iam.GetRoleOutput](t, "get role")(cl.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)}))
	if d, err := policy.DecodeIAM(aws.ToString(got.Role.AssumeRolePolicyDocument)); err != nil || !policy.Equal(d, mustParse(t, newTrust)) {
		t.Errorf("updated trust policy read back %q (err %v)", aws.ToString(got.Role.AssumeRolePolicyDocument), err)
	}
	must1[*iam.TagRoleOutput](t, "tag role")(cl.iam.TagRole(ctx, &iam.TagRoleInput{RoleName: aws.String(name), Tags: []iamtypes.Tag{{Key: aws.String("owner"), Value: aws.String("team a")}}}))

	doc := rolePolicy("source-bucket")
	for _, p := range []string{"dest-b", "dest-a"} {
		must1[*iam.PutRolePolicyOutput](t, "put role policy")(cl.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(p), PolicyDocument: aws.String(doc)}))
	}
	rp := must1[*iam.GetRolePolicyOutput](t, "get role policy")(cl.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String("dest-a")}))
	raw := aws.ToString(rp.PolicyDocument)
	if strings.Contains(raw, `"`) || !strings.Contains(raw, "%22") {
		t.Errorf("role policy %q is not URL-encoded as IAM returns it", raw)
	}
	if d, err := policy.DecodeIAM(raw); err != nil || !policy.Equal(d, mustParse(t, doc)) {
		t.Errorf("role policy read back %q (err %v), want %s", raw, err, doc)
	}
	list := must1[*iam.ListRolePoliciesOutput](t, "list role policies")(cl.iam.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(name)}))
	// IAM lists names alphabetically; moto in insertion order.
	if diff := cmp.Diff([]string{"dest-a", "dest-b"}, slices.Sorted(slices.Values(list.PolicyNames))); diff != "" {
		t.Errorf("ListRolePolicies (-want +got):\n%s", diff)
	}

	_, err = cl.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(name)})
	wantCode(t, "delete role with inline policies", err, "DeleteConflict")
	for _, p := range []string{"dest-a", "dest-b"} {
		must1[*iam.DeleteRolePolicyOutput](t, "delete role policy")(cl.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(p)}))
	}
	_, err = cl.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String("dest-a")})
	wantCode(t, "delete role policy twice", err, "NoSuchEntity")
	must1[*iam.DeleteRoleOutput](t, "delete role")(cl.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(name)}))
	_, err = cl.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	wantCode(t, "get deleted role", err, "NoSuchEntity")
}

func scenarioKeyPolicy(t *testing.T, w world) {
	ctx := context.Background()
	acct := randomAccount()
	cl := assume(t, w, acct, "us-west-2")
	key := must1[*kms.CreateKeyOutput](t, "create key")(cl.kms.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("conformance")}))
	arn := aws.ToString(key.KeyMetadata.Arn)
	if !strings.HasPrefix(arn, "arn:aws:kms:us-west-2:"+acct+":key/") {
		t.Errorf("key ARN %s is not in us-west-2 / %s", arn, acct)
	}
	d := must1[*kms.DescribeKeyOutput](t, "describe key")(cl.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(arn)}))
	m := d.KeyMetadata
	// KeyUsage is not compared: moto leaves it empty unless given.
	if m.KeyManager != kmstypes.KeyManagerTypeCustomer || !m.Enabled || m.KeySpec != kmstypes.KeySpecSymmetricDefault || aws.ToString(m.AWSAccountId) != acct {
		t.Errorf("DescribeKey = manager %s enabled %v spec %s usage %s account %s", m.KeyManager, m.Enabled, m.KeySpec, m.KeyUsage, aws.ToString(m.AWSAccountId))
	}
	kp := must1[*kms.GetKeyPolicyOutput](t, "get key policy")(cl.kms.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(arn), PolicyName: aws.String("default")}))
	def := mustParse(t, aws.ToString(kp.Policy))
	if !slices.ContainsFunc(def.Statement, func(s policy.Statement) bool {
		return s.Principal != nil && slices.Contains(s.Principal.IDs["AWS"], "arn:aws:iam::"+acct+":root") && slices.Contains(s.Action, "kms:*")
	}) {
		t.Errorf("default key policy %s does not delegate to the account", aws.ToString(kp.Policy))
	}
	doc := `{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + acct + `:root"},"Action":"kms:*","Resource":"*"},` +
		`{"Sid":"BucketbridgeReplicaEncrypt","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + acct + `:root"},"Action":["kms:Encrypt","kms:GenerateDataKey"],"Resource":"*","Condition":{"StringEquals":{"kms:ViaService":"s3.us-west-2.amazonaws.com"}}}]}`
	must1[*kms.PutKeyPolicyOutput](t, "put key policy")(cl.kms.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(arn), PolicyName: aws.String("default"), Policy: aws.String(doc)}))
	kp = must1[*kms.GetKeyPolicyOutput](t, "get key policy")(cl.kms.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(aws.ToString(key.KeyMetadata.KeyId)), PolicyName: aws.String("default")}))
	if !policy.Equal(mustParse(t, doc), mustParse(t, aws.ToString(kp.Policy))) {
		t.Errorf("key policy read back differs:\nput %s\ngot %s", doc, aws.ToString(kp.Policy))
	}
}

func scenarioNotFound(t *testing.T, w world) {
	ctx := context.Background()
	acct := randomAccount()
	cl := assume(t, w, acct, "us-east-1")
	missing := randomName("bb-missing")
	_, err := cl.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(missing)})
	wantCode(t, "HeadBucket", err, "NotFound")
	_, err = cl.s3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(missing)})
	wantCode(t, "GetBucketPolicy of a missing bucket", err, "NoSuchBucket")
	_, err = cl.s3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(missing)})
	wantCode(t, "GetBucketVersioning of a missing bucket", err, "NoSuchBucket")
	_, err = cl.s3.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(missing)})
	wantCode(t, "GetBucketReplication of a missing bucket", err, "NoSuchBucket")

	b := newBucket(t, cl, "us-east-1", false)
	_, err = cl.s3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(b)})
	wantCode(t, "GetBucketPolicy", err, "NoSuchBucketPolicy")
	_, err = cl.s3.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(b)})
	wantCode(t, "GetBucketReplication", err, "ReplicationConfigurationNotFoundError")
	v := must1[*s3.GetBucketVersioningOutput](t, "get versioning")(cl.s3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(b)}))
	if v.Status != "" {
		t.Errorf("versioning of a new bucket = %q, want none", v.Status)
	}
	_, err = cl.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("nothing")})
	wantCode(t, "HeadObject", err, "NotFound")

	_, err = cl.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("no-such-role")})
	wantCode(t, "GetRole", err, "NoSuchEntity")
	var nse *iamtypes.NoSuchEntityException
	if !errorsAs(err, &nse) {
		t.Errorf("GetRole error %T is not *iamtypes.NoSuchEntityException", err)
	}
	_, err = cl.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String("no-such-role"), PolicyName: aws.String("p")})
	wantCode(t, "GetRolePolicy", err, "NoSuchEntity")
	_, err = cl.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String("no-such-role")})
	wantCode(t, "DeleteRole", err, "NoSuchEntity")

	keyARN := "arn:aws:kms:us-east-1:" + acct + ":key/0b8f5a7e-0000-4000-8000-000000000000"
	_, err = cl.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(keyARN)})
	wantCode(t, "DescribeKey", err, "NotFoundException")
	var nf *kmstypes.NotFoundException
	if !errorsAs(err, &nf) {
		t.Errorf("DescribeKey error %T is not *kmstypes.NotFoundException", err)
	}
	_, err = cl.kms.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(keyARN), PolicyName: aws.String("default")})
	wantCode(t, "GetKeyPolicy", err, "NotFoundException")
}

func scenarioSecondAccount(t *testing.T, w world) {
	ctx := context.Background()
	a, b := randomAccount(), randomAccount()
	clA := assume(t, w, a, "us-east-1")
	clB := assume(t, w, b, "us-west-2")
	for acct, cl := range map[string]clients{a: clA, b: clB} {
		id := must1[*sts.GetCallerIdentityOutput](t, "get caller identity")(cl.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}))
		if aws.ToString(id.Account) != acct || !strings.Contains(aws.ToString(id.Arn), ":assumed-role/"+testRole+"/") {
			t.Errorf("caller identity %s / %s, want an assumed-role session of %s in %s", aws.ToString(id.Account), aws.ToString(id.Arn), testRole, acct)
		}
	}
	bucketB := newBucket(t, clB, "us-west-2", true)
	loc := must1[*s3.GetBucketLocationOutput](t, "get location")(clB.s3.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(bucketB), ExpectedBucketOwner: aws.String(b)}))
	if loc.LocationConstraint != "us-west-2" {
		t.Errorf("location %q, want us-west-2", loc.LocationConstraint)
	}
	bucketA := newBucket(t, clA, "us-east-1", false)
	loc = must1[*s3.GetBucketLocationOutput](t, "get location")(clA.s3.GetBucketLocation(ctx, &s3.GetBucketLocationInput{Bucket: aws.String(bucketA)}))
	if loc.LocationConstraint != "" {
		t.Errorf("location of a us-east-1 bucket %q, want empty", loc.LocationConstraint)
	}
	key := must1[*kms.CreateKeyOutput](t, "create key in B")(clB.kms.CreateKey(ctx, &kms.CreateKeyInput{}))
	if aws.ToString(key.KeyMetadata.AWSAccountId) != b {
		t.Errorf("key created in account %s, want %s", aws.ToString(key.KeyMetadata.AWSAccountId), b)
	}
	// B's resources are B's: A does not find B's key by ARN.
	_, err := clA.kms.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: key.KeyMetadata.Arn})
	wantCode(t, "DescribeKey of B's key from A", err, "NotFoundException")
	_, err = clA.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(randomName("b-only"))})
	wantCode(t, "GetRole from A", err, "NoSuchEntity")
}

func scenarioVersioningFirst(t *testing.T, w world) {
	ctx := context.Background()
	a, b := randomAccount(), randomAccount()
	clA := assume(t, w, a, "us-east-1")
	clB := assume(t, w, b, "us-west-2")
	src := newBucket(t, clA, "us-east-1", false)
	dst := newBucket(t, clB, "us-west-2", true)
	role := must1[*iam.CreateRoleOutput](t, "create role")(clA.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(randomName("bucketbridge")), AssumeRolePolicyDocument: aws.String(trustS3)}))
	rc := replicationConfig(aws.ToString(role.Role.Arn), "bucketbridge-1", 1, dst, b)
	_, err := clA.s3.PutBucketReplication(ctx, &s3.PutBucketReplicationInput{Bucket: aws.String(src), ReplicationConfiguration: rc})
	wantCode(t, "replication on an unversioned bucket", err, "InvalidRequest")
	if err != nil && !strings.Contains(err.Error(), "Versioning must be 'Enabled' on the bucket") {
		t.Errorf("replication on an unversioned bucket: %v, want AWS's message", err)
	}
	must1[*s3.PutBucketVersioningOutput](t, "enable versioning")(clA.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
		Bucket: aws.String(src), VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled},
	}))
	v := must1[*s3.GetBucketVersioningOutput](t, "get versioning")(clA.s3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(src)}))
	if v.Status != s3types.BucketVersioningStatusEnabled {
		t.Fatalf("versioning %q after enabling", v.Status)
	}
	must1[*s3.PutBucketReplicationOutput](t, "put replication")(clA.s3.PutBucketReplication(ctx, &s3.PutBucketReplicationInput{Bucket: aws.String(src), ReplicationConfiguration: rc, ExpectedBucketOwner: aws.String(a)}))
	got := must1[*s3.GetBucketReplicationOutput](t, "get replication")(clA.s3.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(src)}))
	if diff := cmp.Diff(ruleIdentities(rc), ruleIdentities(got.ReplicationConfiguration)); diff != "" {
		t.Errorf("replication read back (-want +got):\n%s", diff)
	}
	must1[*s3.DeleteBucketReplicationOutput](t, "delete replication")(clA.s3.DeleteBucketReplication(ctx, &s3.DeleteBucketReplicationInput{Bucket: aws.String(src)}))
	_, err = clA.s3.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(src)})
	wantCode(t, "get replication after delete", err, "ReplicationConfigurationNotFoundError")
}

// replicationConfig is a one-rule configuration shaped like DESIGN §10's.
func replicationConfig(role, id string, prio int32, dst, dstAccount string) *s3types.ReplicationConfiguration {
	return &s3types.ReplicationConfiguration{Role: aws.String(role), Rules: []s3types.ReplicationRule{replicationRule(id, prio, dst, dstAccount, "")}}
}

func replicationRule(id string, prio int32, dst, dstAccount, replicaKey string) s3types.ReplicationRule {
	r := s3types.ReplicationRule{
		ID: aws.String(id), Priority: aws.Int32(prio), Status: s3types.ReplicationRuleStatusEnabled,
		Filter:                  &s3types.ReplicationRuleFilter{Prefix: aws.String("")},
		DeleteMarkerReplication: &s3types.DeleteMarkerReplication{Status: s3types.DeleteMarkerReplicationStatusDisabled},
		Destination: &s3types.Destination{
			Bucket: aws.String("arn:aws:s3:::" + dst), Account: aws.String(dstAccount),
			AccessControlTranslation: &s3types.AccessControlTranslation{Owner: s3types.OwnerOverrideDestination},
			StorageClass:             s3types.StorageClassStandard,
		},
	}
	if replicaKey != "" {
		r.SourceSelectionCriteria = &s3types.SourceSelectionCriteria{SseKmsEncryptedObjects: &s3types.SseKmsEncryptedObjects{Status: s3types.SseKmsEncryptedObjectsStatusEnabled}}
		r.Destination.EncryptionConfiguration = &s3types.EncryptionConfiguration{ReplicaKmsKeyID: aws.String(replicaKey)}
	}
	return r
}

// ruleIdentity is what both moto and AWS read back faithfully (MOTO.md).
type ruleIdentity struct {
	Role, ID, Status, Bucket, Account, ReplicaKey string
	Priority                                      int32
}

func ruleIdentities(rc *s3types.ReplicationConfiguration) []ruleIdentity {
	var out []ruleIdentity
	for _, r := range rc.Rules {
		ri := ruleIdentity{Role: aws.ToString(rc.Role), ID: aws.ToString(r.ID), Status: string(r.Status), Priority: aws.ToInt32(r.Priority)}
		if d := r.Destination; d != nil {
			ri.Bucket, ri.Account = aws.ToString(d.Bucket), aws.ToString(d.Account)
			if d.EncryptionConfiguration != nil {
				ri.ReplicaKey = aws.ToString(d.EncryptionConfiguration.ReplicaKmsKeyID)
			}
		}
		out = append(out, ri)
	}
	return out
}

func scenarioReplace(t *testing.T, w world) {
	ctx := context.Background()
	a := randomAccount()
	cl := assume(t, w, a, "us-east-1")
	src := newBucket(t, cl, "us-east-1", true)
	dst1 := newBucket(t, cl, "us-east-1", true)
	dst2 := newBucket(t, cl, "us-east-1", true)
	role := must1[*iam.CreateRoleOutput](t, "create role")(cl.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(randomName("bucketbridge")), AssumeRolePolicyDocument: aws.String(trustS3)}))
	roleARN := aws.ToString(role.Role.Arn)

	first := &s3types.ReplicationConfiguration{Role: aws.String(roleARN), Rules: []s3types.ReplicationRule{
		replicationRule("other-team", 1, dst1, a, ""), replicationRule("bucketbridge-1", 2, dst2, a, ""),
	}}
	second := replicationConfig(roleARN, "bucketbridge-2", 3, dst2, a)
	for _, rc := range []*s3types.ReplicationConfiguration{first, second} {
		must1[*s3.PutBucketReplicationOutput](t, "put replication")(cl.s3.PutBucketReplication(ctx, &s3.PutBucketReplicationInput{Bucket: aws.String(src), ReplicationConfiguration: rc}))
	}
	got := must1[*s3.GetBucketReplicationOutput](t, "get replication")(cl.s3.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(src)}))
	if diff := cmp.Diff(ruleIdentities(second), ruleIdentities(got.ReplicationConfiguration)); diff != "" {
		t.Errorf("replication after replacing (-want +got):\n%s", diff)
	}

	p1 := `{"Version":"2012-10-17","Statement":[{"Sid":"One","Effect":"Allow","Principal":{"AWS":"` + a + `"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::` + src + `/*"}]}`
	p2 := `{"Version":"2012-10-17","Statement":[{"Sid":"Two","Effect":"Allow","Principal":{"AWS":"` + roleARN + `"},"Action":"s3:ReplicateObject","Resource":"arn:aws:s3:::` + src + `/*"}]}`
	for _, p := range []string{p1, p2} {
		must1[*s3.PutBucketPolicyOutput](t, "put policy")(cl.s3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(src), Policy: aws.String(p)}))
	}
	gp := must1[*s3.GetBucketPolicyOutput](t, "get policy")(cl.s3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(src)}))
	if !policy.Equal(mustParse(t, p2), mustParse(t, aws.ToString(gp.Policy))) {
		t.Errorf("bucket policy after replacing = %s, want %s", aws.ToString(gp.Policy), p2)
	}

	r1, r2 := rolePolicy(src), rolePolicy(dst1)
	for _, p := range []string{r1, r2} {
		must1[*iam.PutRolePolicyOutput](t, "put role policy")(cl.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: role.Role.RoleName, PolicyName: aws.String("p"), PolicyDocument: aws.String(p)}))
	}
	rp := must1[*iam.GetRolePolicyOutput](t, "get role policy")(cl.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: role.Role.RoleName, PolicyName: aws.String("p")}))
	if d, err := policy.DecodeIAM(aws.ToString(rp.PolicyDocument)); err != nil || !policy.Equal(d, mustParse(t, r2)) {
		t.Errorf("role policy after replacing = %s (err %v), want %s", aws.ToString(rp.PolicyDocument), err, r2)
	}

	key := must1[*kms.CreateKeyOutput](t, "create key")(cl.kms.CreateKey(ctx, &kms.CreateKeyInput{}))
	k1 := `{"Version":"2012-10-17","Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + a + `:root"},"Action":"kms:*","Resource":"*"},{"Sid":"Extra","Effect":"Allow","Principal":{"AWS":"` + roleARN + `"},"Action":"kms:Decrypt","Resource":"*"}]}`
	k2 := `{"Version":"2012-10-17","Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + a + `:root"},"Action":"kms:*","Resource":"*"}]}`
	for _, p := range []string{k1, k2} {
		must1[*kms.PutKeyPolicyOutput](t, "put key policy")(cl.kms.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: key.KeyMetadata.KeyId, PolicyName: aws.String("default"), Policy: aws.String(p)}))
	}
	kp := must1[*kms.GetKeyPolicyOutput](t, "get key policy")(cl.kms.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: key.KeyMetadata.KeyId, PolicyName: aws.String("default")}))
	if !policy.Equal(mustParse(t, k2), mustParse(t, aws.ToString(kp.Policy))) {
		t.Errorf("key policy after replacing = %s, want %s", aws.ToString(kp.Policy), k2)
	}
}

func scenarioObjects(t *testing.T, w world) {
	ctx := context.Background()
	a := randomAccount()
	cl := assume(t, w, a, "us-east-1")
	b := newBucket(t, cl, "us-east-1", true)
	put := func(body string) *s3.PutObjectOutput {
		return must1[*s3.PutObjectOutput](t, "put object")(cl.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("canary/x"), Body: strings.NewReader(body), ExpectedBucketOwner: aws.String(a)}))
	}
	v1, v2 := put("one"), put("two!")
	if aws.ToString(v1.VersionId) == "" || aws.ToString(v1.VersionId) == aws.ToString(v2.VersionId) {
		t.Fatalf("version IDs %q and %q, want two distinct ones", aws.ToString(v1.VersionId), aws.ToString(v2.VersionId))
	}
	h := must1[*s3.HeadObjectOutput](t, "head object")(cl.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("canary/x"), VersionId: v1.VersionId}))
	if aws.ToInt64(h.ContentLength) != 3 || aws.ToString(h.VersionId) != aws.ToString(v1.VersionId) {
		t.Errorf("HeadObject of v1: length %d version %s", aws.ToInt64(h.ContentLength), aws.ToString(h.VersionId))
	}
	if h.ReplicationStatus != "" {
		t.Errorf("replication status %q without a replication configuration", h.ReplicationStatus)
	}
	lv := must1[*s3.ListObjectVersionsOutput](t, "list versions")(cl.s3.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(b), Prefix: aws.String("canary/")}))
	var ids []string
	for _, v := range lv.Versions {
		ids = append(ids, aws.ToString(v.VersionId))
	}
	if diff := cmp.Diff([]string{aws.ToString(v2.VersionId), aws.ToString(v1.VersionId)}, ids); diff != "" {
		t.Errorf("ListObjectVersions, newest first (-want +got):\n%s", diff)
	}
	for _, v := range ids {
		must1[*s3.DeleteObjectOutput](t, "delete version")(cl.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String("canary/x"), VersionId: aws.String(v)}))
	}
	lv = must1[*s3.ListObjectVersionsOutput](t, "list versions")(cl.s3.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(b)}))
	if len(lv.Versions)+len(lv.DeleteMarkers) != 0 {
		t.Errorf("%d versions and %d delete markers left after deleting every version", len(lv.Versions), len(lv.DeleteMarkers))
	}
	_, err := cl.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("canary/x")})
	wantCode(t, "HeadObject after deleting every version", err, "NotFound")
}

func scenarioEncryption(t *testing.T, w world) {
	ctx := context.Background()
	a := randomAccount()
	cl := assume(t, w, a, "eu-west-1")
	b := newBucket(t, cl, "eu-west-1", true)
	key := must1[*kms.CreateKeyOutput](t, "create key")(cl.kms.CreateKey(ctx, &kms.CreateKeyInput{}))
	must1[*s3.PutBucketEncryptionOutput](t, "put encryption")(cl.s3.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String(b), ServerSideEncryptionConfiguration: &s3types.ServerSideEncryptionConfiguration{
		Rules: []s3types.ServerSideEncryptionRule{{ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: key.KeyMetadata.Arn}, BucketKeyEnabled: aws.Bool(true)}},
	}}))
	enc := must1[*s3.GetBucketEncryptionOutput](t, "get encryption")(cl.s3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(b)}))
	r := enc.ServerSideEncryptionConfiguration.Rules
	if len(r) != 1 || r[0].ApplyServerSideEncryptionByDefault.SSEAlgorithm != s3types.ServerSideEncryptionAwsKms || aws.ToString(r[0].ApplyServerSideEncryptionByDefault.KMSMasterKeyID) != aws.ToString(key.KeyMetadata.Arn) {
		t.Errorf("default encryption read back %+v", r)
	}
	must1[*s3.PutBucketOwnershipControlsOutput](t, "put ownership")(cl.s3.PutBucketOwnershipControls(ctx, &s3.PutBucketOwnershipControlsInput{Bucket: aws.String(b), OwnershipControls: &s3types.OwnershipControls{
		Rules: []s3types.OwnershipControlsRule{{ObjectOwnership: s3types.ObjectOwnershipBucketOwnerPreferred}},
	}}))
	oc := must1[*s3.GetBucketOwnershipControlsOutput](t, "get ownership")(cl.s3.GetBucketOwnershipControls(ctx, &s3.GetBucketOwnershipControlsInput{Bucket: aws.String(b)}))
	if got := oc.OwnershipControls.Rules[0].ObjectOwnership; got != s3types.ObjectOwnershipBucketOwnerPreferred {
		t.Errorf("object ownership %q, want BucketOwnerPreferred", got)
	}
	hb := must1[*s3.HeadBucketOutput](t, "head bucket")(cl.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b)}))
	if aws.ToString(hb.BucketRegion) != "eu-west-1" {
		t.Errorf("HeadBucket region %q, want eu-west-1", aws.ToString(hb.BucketRegion))
	}
	po := must1[*s3.PutObjectOutput](t, "put object")(cl.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("k"), Body: strings.NewReader("x"),
		ServerSideEncryption: s3types.ServerSideEncryptionAwsKms, SSEKMSKeyId: key.KeyMetadata.Arn}))
	if po.ServerSideEncryption != s3types.ServerSideEncryptionAwsKms {
		t.Errorf("PutObject encryption %q, want aws:kms", po.ServerSideEncryption)
	}
}
