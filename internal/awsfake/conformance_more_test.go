package awsfake

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// More conformance scenarios: managed policies, permissions boundaries and
// role paths, default encryption of new objects, Object Lock. They run in
// TestConformance with the others.

func managedDoc(bucket, action string) string {
	return `{"Version":"2012-10-17","Statement":[{"Sid":"Objects","Effect":"Allow","Action":"` + action + `","Resource":"arn:aws:s3:::` + bucket + `/*"}]}`
}

func scenarioManagedPolicies(t *testing.T, w world) {
	ctx := context.Background()
	acct := randomAccount()
	cl := assume(t, w, acct, "us-east-1")
	roleName := randomName("bucketbridge-src")
	must1[*iam.CreateRoleOutput](t, "create role")(cl.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(roleName), AssumeRolePolicyDocument: aws.String(trustS3)}))
	name := randomName("bucketbridge-for-" + roleName)
	v1 := managedDoc("source-bucket", "s3:GetObjectVersionForReplication")
	created := must1[*iam.CreatePolicyOutput](t, "create policy")(cl.iam.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(name), PolicyDocument: aws.String(v1)}))
	arn := aws.ToString(created.Policy.Arn)
	if want := "arn:aws:iam::" + acct + ":policy/" + name; arn != want || aws.ToString(created.Policy.DefaultVersionId) != "v1" {
		t.Errorf("created policy %s default %s, want %s default v1", arn, aws.ToString(created.Policy.DefaultVersionId), want)
	}
	_, err := cl.iam.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(name), PolicyDocument: aws.String(v1)})
	wantCode(t, "create policy twice", err, "EntityAlreadyExists")
	err = nil

	gv := must1[*iam.GetPolicyVersionOutput](t, "get policy version")(cl.iam.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: aws.String(arn), VersionId: aws.String("v1")}))
	if d, err := policy.DecodeIAM(aws.ToString(gv.PolicyVersion.Document)); err != nil || !policy.Equal(d, mustParse(t, v1)) || !gv.PolicyVersion.IsDefaultVersion {
		t.Errorf("version v1 reads back %q default %v (err %v)", aws.ToString(gv.PolicyVersion.Document), gv.PolicyVersion.IsDefaultVersion, err)
	}

	v2 := managedDoc("source-bucket", "s3:GetObjectVersionAcl")
	nv := must1[*iam.CreatePolicyVersionOutput](t, "create version")(cl.iam.CreatePolicyVersion(ctx, &iam.CreatePolicyVersionInput{PolicyArn: aws.String(arn), PolicyDocument: aws.String(v2), SetAsDefault: true}))
	if aws.ToString(nv.PolicyVersion.VersionId) != "v2" || !nv.PolicyVersion.IsDefaultVersion {
		t.Errorf("new version %s default %v, want v2 default", aws.ToString(nv.PolicyVersion.VersionId), nv.PolicyVersion.IsDefaultVersion)
	}
	gp := must1[*iam.GetPolicyOutput](t, "get policy")(cl.iam.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(arn)}))
	if aws.ToString(gp.Policy.DefaultVersionId) != "v2" {
		t.Errorf("default version %s after SetAsDefault, want v2", aws.ToString(gp.Policy.DefaultVersionId))
	}
	// Add versions until IAM refuses one (counting on no exact number of
	// calls, as a retried call may have added a version already).
	for i := 0; i < 10 && err == nil; i++ {
		_, err = cl.iam.CreatePolicyVersion(ctx, &iam.CreatePolicyVersionInput{PolicyArn: aws.String(arn), PolicyDocument: aws.String(v1)})
	}
	wantCode(t, "a sixth version", err, "LimitExceeded")
	versions := func() (ids []string, def string) {
		lv := must1[*iam.ListPolicyVersionsOutput](t, "list versions")(cl.iam.ListPolicyVersions(ctx, &iam.ListPolicyVersionsInput{PolicyArn: aws.String(arn)}))
		for _, v := range lv.Versions {
			ids = append(ids, aws.ToString(v.VersionId))
			if v.IsDefaultVersion {
				def += aws.ToString(v.VersionId)
			}
		}
		slices.Sort(ids)
		return ids, def
	}
	if ids, def := versions(); !slices.Equal(ids, []string{"v1", "v2", "v3", "v4", "v5"}) || def != "v2" {
		t.Errorf("versions %v default %q, want v1…v5 default v2", ids, def)
	}
	_, err = cl.iam.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: aws.String(arn), VersionId: aws.String("v2")})
	wantCode(t, "delete the default version", err, "DeleteConflict")

	must1[*iam.AttachRolePolicyOutput](t, "attach")(cl.iam.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(roleName), PolicyArn: aws.String(arn)}))
	la := must1[*iam.ListAttachedRolePoliciesOutput](t, "list attached")(cl.iam.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(roleName)}))
	if len(la.AttachedPolicies) != 1 || aws.ToString(la.AttachedPolicies[0].PolicyArn) != arn || aws.ToString(la.AttachedPolicies[0].PolicyName) != name {
		t.Errorf("attached policies %+v, want %s", la.AttachedPolicies, arn)
	}
	if gp := must1[*iam.GetPolicyOutput](t, "get policy")(cl.iam.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(arn)})); aws.ToInt32(gp.Policy.AttachmentCount) != 1 {
		t.Errorf("attachment count %d, want 1", aws.ToInt32(gp.Policy.AttachmentCount))
	}
	_, err = cl.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(roleName)})
	wantCode(t, "delete a role with a managed policy attached", err, "DeleteConflict")
	_, err = cl.iam.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(roleName), PolicyArn: aws.String("arn:aws:iam::" + acct + ":policy/" + randomName("missing"))})
	wantCode(t, "attach a policy that does not exist", err, "NoSuchEntity")

	must1[*iam.DetachRolePolicyOutput](t, "detach")(cl.iam.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(roleName), PolicyArn: aws.String(arn)}))
	_, err = cl.iam.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(roleName), PolicyArn: aws.String(arn)})
	wantCode(t, "detach twice", err, "NoSuchEntity")
	ids, _ := versions()
	for _, v := range ids {
		if v != "v2" {
			must1[*iam.DeletePolicyVersionOutput](t, "delete version "+v)(cl.iam.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: aws.String(arn), VersionId: aws.String(v)}))
		}
	}
	if ids, def := versions(); !slices.Equal(ids, []string{"v2"}) || def != "v2" {
		t.Errorf("versions %v default %q after deleting the others, want [v2]", ids, def)
	}
	must1[*iam.DeletePolicyOutput](t, "delete policy")(cl.iam.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: aws.String(arn)}))
	_, err = cl.iam.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(arn)})
	wantCode(t, "get a deleted policy", err, "NoSuchEntity")
	must1[*iam.DeleteRoleOutput](t, "delete role")(cl.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(roleName)}))
	_, err = cl.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(roleName)})
	wantCode(t, "get a deleted role", err, "NoSuchEntity")
}

func scenarioBoundaryAndPath(t *testing.T, w world) {
	ctx := context.Background()
	acct := randomAccount()
	cl := assume(t, w, acct, "us-east-1")
	boundary := must1[*iam.CreatePolicyOutput](t, "create boundary")(cl.iam.CreatePolicy(ctx, &iam.CreatePolicyInput{
		PolicyName: aws.String(randomName("bucketbridge-boundary")), PolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","kms:*"],"Resource":"*"}]}`),
	}))
	name := randomName("s3crr_role_for_source")
	created := must1[*iam.CreateRoleOutput](t, "create role")(cl.iam.CreateRole(ctx, &iam.CreateRoleInput{
		RoleName: aws.String(name), Path: aws.String("/service-role/"), AssumeRolePolicyDocument: aws.String(trustS3), PermissionsBoundary: boundary.Policy.Arn,
	}))
	want := "arn:aws:iam::" + acct + ":role/service-role/" + name
	if aws.ToString(created.Role.Arn) != want {
		t.Errorf("role ARN %s, want %s", aws.ToString(created.Role.Arn), want)
	}
	got := must1[*iam.GetRoleOutput](t, "get role")(cl.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)}))
	if aws.ToString(got.Role.Path) != "/service-role/" || aws.ToString(got.Role.Arn) != want {
		t.Errorf("role path %q ARN %s, want /service-role/ and %s", aws.ToString(got.Role.Path), aws.ToString(got.Role.Arn), want)
	}
	if pb := got.Role.PermissionsBoundary; pb == nil || aws.ToString(pb.PermissionsBoundaryArn) != aws.ToString(boundary.Policy.Arn) ||
		pb.PermissionsBoundaryType != iamtypes.PermissionsBoundaryAttachmentTypePolicy {
		t.Errorf("permissions boundary %+v, want %s", pb, aws.ToString(boundary.Policy.Arn))
	}
	// A role named with its path is a valid principal.
	b := newBucket(t, cl, "us-east-1", false)
	p := `{"Version":"2012-10-17","Statement":[{"Sid":"PathRole","Effect":"Allow","Principal":{"AWS":"` + want + `"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::` + b + `/*"}]}`
	must1[*s3.PutBucketPolicyOutput](t, "put policy naming a path role")(cl.s3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(b), Policy: aws.String(p)}))
}

func scenarioDefaultEncryptionOfObjects(t *testing.T, w world) {
	ctx := context.Background()
	a := randomAccount()
	cl := assume(t, w, a, "us-east-1")
	key := must1[*kms.CreateKeyOutput](t, "create key")(cl.kms.CreateKey(ctx, &kms.CreateKeyInput{}))
	keyARN := aws.ToString(key.KeyMetadata.Arn)
	b := newBucket(t, cl, "us-east-1", true)
	cfg := &s3types.ServerSideEncryptionConfiguration{Rules: []s3types.ServerSideEncryptionRule{{
		ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: aws.String(keyARN)},
		BucketKeyEnabled:                   aws.Bool(true),
	}}}
	must1[*s3.PutBucketEncryptionOutput](t, "put encryption")(cl.s3.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String(b), ServerSideEncryptionConfiguration: cfg}))
	got := must1[*s3.GetBucketEncryptionOutput](t, "get encryption")(cl.s3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(b)}))
	r := got.ServerSideEncryptionConfiguration.Rules
	if len(r) != 1 || !aws.ToBool(r[0].BucketKeyEnabled) || aws.ToString(r[0].ApplyServerSideEncryptionByDefault.KMSMasterKeyID) != keyARN {
		t.Errorf("default encryption read back %+v, want SSE-KMS %s with Bucket Keys", r, keyARN)
	}
	// An object written without encryption headers takes the default.
	put := must1[*s3.PutObjectOutput](t, "put object")(cl.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("plain"), Body: strings.NewReader("x")}))
	h := must1[*s3.HeadObjectOutput](t, "head")(cl.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("plain"), VersionId: put.VersionId}))
	if h.ServerSideEncryption != s3types.ServerSideEncryptionAwsKms || !strings.HasSuffix(keyARN, aws.ToString(h.SSEKMSKeyId)) || !aws.ToBool(h.BucketKeyEnabled) {
		t.Errorf("object without headers: %s key %s bucket key %v, want aws:kms %s with bucket key", h.ServerSideEncryption, aws.ToString(h.SSEKMSKeyId), aws.ToBool(h.BucketKeyEnabled), keyARN)
	}
	// SSE-S3 asked for explicitly.
	must1[*s3.PutObjectOutput](t, "put SSE-S3 object")(cl.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("s3"), Body: strings.NewReader("x"), ServerSideEncryption: s3types.ServerSideEncryptionAes256}))
	h = must1[*s3.HeadObjectOutput](t, "head")(cl.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("s3")}))
	if h.ServerSideEncryption != s3types.ServerSideEncryptionAes256 || aws.ToString(h.SSEKMSKeyId) != "" {
		t.Errorf("SSE-S3 object: %s key %q, want AES256 and no key", h.ServerSideEncryption, aws.ToString(h.SSEKMSKeyId))
	}
}

func scenarioObjectLock(t *testing.T, w world) {
	ctx := context.Background()
	a := randomAccount()
	cl := assume(t, w, a, "us-east-1")
	plain := newBucket(t, cl, "us-east-1", true)
	_, err := cl.s3.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String(plain)})
	wantCode(t, "Object Lock configuration of a bucket without it", err, "ObjectLockConfigurationNotFoundError")

	b := randomName("bb-conf-lock")
	must1[*s3.CreateBucketOutput](t, "create bucket with Object Lock")(cl.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b), ObjectLockEnabledForBucket: aws.Bool(true)}))
	v := must1[*s3.GetBucketVersioningOutput](t, "versioning")(cl.s3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(b)}))
	if v.Status != s3types.BucketVersioningStatusEnabled {
		t.Errorf("versioning %q of a new Object Lock bucket, want Enabled", v.Status)
	}
	lc := must1[*s3.GetObjectLockConfigurationOutput](t, "get lock configuration")(cl.s3.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String(b)}))
	if lc.ObjectLockConfiguration.ObjectLockEnabled != s3types.ObjectLockEnabledEnabled {
		t.Errorf("Object Lock %q, want Enabled", lc.ObjectLockConfiguration.ObjectLockEnabled)
	}
	rule := &s3types.ObjectLockRule{DefaultRetention: &s3types.DefaultRetention{Mode: s3types.ObjectLockRetentionModeGovernance, Days: aws.Int32(1)}}
	must1[*s3.PutObjectLockConfigurationOutput](t, "put lock configuration")(cl.s3.PutObjectLockConfiguration(ctx, &s3.PutObjectLockConfigurationInput{Bucket: aws.String(b),
		ObjectLockConfiguration: &s3types.ObjectLockConfiguration{ObjectLockEnabled: s3types.ObjectLockEnabledEnabled, Rule: rule}}))
	lc = must1[*s3.GetObjectLockConfigurationOutput](t, "get lock configuration")(cl.s3.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String(b)}))
	if r := lc.ObjectLockConfiguration.Rule; r == nil || r.DefaultRetention == nil || r.DefaultRetention.Mode != s3types.ObjectLockRetentionModeGovernance || aws.ToInt32(r.DefaultRetention.Days) != 1 {
		t.Errorf("lock rule read back %+v, want GOVERNANCE 1 day", r)
	}

	before := time.Now()
	// A checksum header is required to upload into a bucket with a default
	// retention (moto insists on Content-MD5 or x-amz-sdk-checksum-algorithm,
	// as S3's documentation of Object Lock does).
	put := must1[*s3.PutObjectOutput](t, "put object")(cl.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("bucketbridge-canary/x"), Body: strings.NewReader("x"),
		ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc32}))
	h := must1[*s3.HeadObjectOutput](t, "head")(cl.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("bucketbridge-canary/x"), VersionId: put.VersionId}))
	until := aws.ToTime(h.ObjectLockRetainUntilDate)
	if h.ObjectLockMode != s3types.ObjectLockModeGovernance || until.Before(before.Add(23*time.Hour)) || until.After(before.Add(25*time.Hour)) {
		t.Errorf("new object lock %q until %v, want GOVERNANCE for a day", h.ObjectLockMode, until)
	}
	_, err = cl.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String("bucketbridge-canary/x"), VersionId: put.VersionId})
	wantCode(t, "delete a version under retention", err, "AccessDenied")
	// A delete marker is not a deletion of the locked version.
	must1[*s3.DeleteObjectOutput](t, "delete marker")(cl.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String("bucketbridge-canary/x")}))
	must1[*s3.HeadObjectOutput](t, "head locked version")(cl.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("bucketbridge-canary/x"), VersionId: put.VersionId}))
	// Governance mode yields to a bypass by someone allowed it.
	must1[*s3.DeleteObjectOutput](t, "delete with bypass")(cl.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String("bucketbridge-canary/x"), VersionId: put.VersionId, BypassGovernanceRetention: aws.Bool(true)}))
	_, err = cl.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("bucketbridge-canary/x"), VersionId: put.VersionId})
	if err == nil {
		t.Error("the version deleted with a bypass is still there")
	}
}

// scenarioRestoreDefaultEncryption: a bucket's default encryption can be
// read, replaced by SSE-KMS, put back as it was, and deleted, as
// set_source_default_encryption and its removal do.
func scenarioRestoreDefaultEncryption(t *testing.T, w world) {
	ctx := context.Background()
	a := randomAccount()
	cl := assume(t, w, a, "us-east-1")
	key := must1[*kms.CreateKeyOutput](t, "create key")(cl.kms.CreateKey(ctx, &kms.CreateKeyInput{}))
	b := newBucket(t, cl, "us-east-1", true)
	sseS3 := &s3types.ServerSideEncryptionConfiguration{Rules: []s3types.ServerSideEncryptionRule{{
		ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAes256},
	}}}
	must1[*s3.PutBucketEncryptionOutput](t, "put SSE-S3")(cl.s3.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String(b), ServerSideEncryptionConfiguration: sseS3}))
	kmsCfg := &s3types.ServerSideEncryptionConfiguration{Rules: []s3types.ServerSideEncryptionRule{{
		ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: key.KeyMetadata.Arn},
		BucketKeyEnabled:                   aws.Bool(true),
	}}}
	must1[*s3.PutBucketEncryptionOutput](t, "put SSE-KMS")(cl.s3.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String(b), ServerSideEncryptionConfiguration: kmsCfg}))
	must1[*s3.PutBucketEncryptionOutput](t, "put SSE-S3 back")(cl.s3.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String(b), ServerSideEncryptionConfiguration: sseS3}))
	got := must1[*s3.GetBucketEncryptionOutput](t, "get encryption")(cl.s3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(b)}))
	if r := got.ServerSideEncryptionConfiguration.Rules; len(r) != 1 || r[0].ApplyServerSideEncryptionByDefault.SSEAlgorithm != s3types.ServerSideEncryptionAes256 {
		t.Errorf("default encryption put back reads %+v, want SSE-S3", r)
	}
	must1[*s3.PutBucketEncryptionOutput](t, "put SSE-KMS")(cl.s3.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String(b), ServerSideEncryptionConfiguration: kmsCfg}))
	must1[*s3.DeleteBucketEncryptionOutput](t, "delete encryption")(cl.s3.DeleteBucketEncryption(ctx, &s3.DeleteBucketEncryptionInput{Bucket: aws.String(b)}))
	after, err := cl.s3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(b)})
	switch {
	case isCode(err, "ServerSideEncryptionConfigurationNotFoundError"):
	case err != nil:
		t.Fatalf("get encryption after delete: %v", err)
	default:
		for _, r := range after.ServerSideEncryptionConfiguration.Rules {
			if d := r.ApplyServerSideEncryptionByDefault; d != nil && d.SSEAlgorithm != s3types.ServerSideEncryptionAes256 {
				t.Errorf("after DeleteBucketEncryption the default is %s, want SSE-S3 or none", d.SSEAlgorithm)
			}
		}
	}
}

// scenarioExplicitRetention: an object put with an explicit GOVERNANCE
// retention into a bucket whose default retention is COMPLIANCE gets the
// explicit one, and a bypass deletes it; an object put without one gets
// the COMPLIANCE default, which no bypass deletes. This is how verify's
// canary stays deletable under Object Lock.
func scenarioExplicitRetention(t *testing.T, w world) {
	ctx := context.Background()
	a := randomAccount()
	cl := assume(t, w, a, "us-east-1")
	b := randomName("bb-conf-lock")
	must1[*s3.CreateBucketOutput](t, "create bucket with Object Lock")(cl.s3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b), ObjectLockEnabledForBucket: aws.Bool(true)}))
	rule := &s3types.ObjectLockRule{DefaultRetention: &s3types.DefaultRetention{Mode: s3types.ObjectLockRetentionModeCompliance, Days: aws.Int32(1)}}
	must1[*s3.PutObjectLockConfigurationOutput](t, "put lock configuration")(cl.s3.PutObjectLockConfiguration(ctx, &s3.PutObjectLockConfigurationInput{Bucket: aws.String(b),
		ObjectLockConfiguration: &s3types.ObjectLockConfiguration{ObjectLockEnabled: s3types.ObjectLockEnabledEnabled, Rule: rule}}))
	until := time.Now().Add(time.Hour).Truncate(time.Second)
	put := must1[*s3.PutObjectOutput](t, "put object with GOVERNANCE retention")(cl.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("canary"), Body: strings.NewReader("x"),
		ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc32, ObjectLockMode: s3types.ObjectLockModeGovernance, ObjectLockRetainUntilDate: aws.Time(until)}))
	h := must1[*s3.HeadObjectOutput](t, "head")(cl.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("canary"), VersionId: put.VersionId}))
	if h.ObjectLockMode != s3types.ObjectLockModeGovernance || !aws.ToTime(h.ObjectLockRetainUntilDate).Equal(until) {
		t.Errorf("explicit retention read back %q until %v, want GOVERNANCE until %v", h.ObjectLockMode, aws.ToTime(h.ObjectLockRetainUntilDate), until)
	}
	_, err := cl.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String("canary"), VersionId: put.VersionId})
	wantCode(t, "delete without a bypass", err, "AccessDenied")
	must1[*s3.DeleteObjectOutput](t, "delete with a bypass")(cl.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String("canary"), VersionId: put.VersionId, BypassGovernanceRetention: aws.Bool(true)}))

	plain := must1[*s3.PutObjectOutput](t, "put object without retention")(cl.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("plain"), Body: strings.NewReader("x"),
		ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc32}))
	h = must1[*s3.HeadObjectOutput](t, "head")(cl.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("plain"), VersionId: plain.VersionId}))
	if h.ObjectLockMode != s3types.ObjectLockModeCompliance {
		t.Errorf("object without retention got %q, want the COMPLIANCE default", h.ObjectLockMode)
	}
	_, err = cl.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: aws.String("plain"), VersionId: plain.VersionId, BypassGovernanceRetention: aws.Bool(true)})
	wantCode(t, "delete a COMPLIANCE version with a bypass", err, "AccessDenied")
}
