package awsfake

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// These tests cover what the fake does as AWS does and moto does not: see
// the list at the top of conformance_test.go.

func wantMessage(t *testing.T, what string, err error, code, msg string) {
	t.Helper()
	wantCode(t, what, err, code)
	if err != nil && !strings.Contains(err.Error(), msg) {
		t.Errorf("%s: %v, want AWS's message %q", what, err, msg)
	}
}

func marshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// principalsIn returns every AWS principal of the statement with this Sid.
func principalsIn(t *testing.T, doc, sid string) []string {
	t.Helper()
	d, err := policy.DecodeIAM(doc)
	if err != nil {
		t.Fatalf("parse %s: %v", doc, err)
	}
	for _, st := range d.Statement {
		if st.Sid == sid && st.Principal != nil {
			return st.Principal.IDs["AWS"]
		}
	}
	return nil
}

func TestDeleteRoleLeavesItsUniqueIDInEveryPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := NewDemo("", "")
	iamA, iamB := c.IAM(DemoSourceAccount), c.IAM(DemoDestinationAccount)
	s3B, kmsB := c.S3(DemoDestinationAccount, DemoDestinationRegion), c.KMS(DemoDestinationAccount, DemoDestinationRegion)
	created := must1[*iam.CreateRoleOutput](t, "create role")(iamA.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("replicator"), Path: aws.String("/service-role/"), AssumeRolePolicyDocument: aws.String(trustS3)}))
	roleARN, id := aws.ToString(created.Role.Arn), aws.ToString(created.Role.RoleId)
	if roleARN != "arn:aws:iam::111111111111:role/service-role/replicator" || !policy.IsUniqueID(id) || !strings.HasPrefix(id, "AROA") {
		t.Fatalf("role %s has ID %s", roleARN, id)
	}
	if again := must1[*iam.GetRoleOutput](t, "get role")(iamA.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("replicator")})); aws.ToString(again.Role.RoleId) != id {
		t.Fatalf("role ID changed from %s to %s", id, aws.ToString(again.Role.RoleId))
	}

	// Name the role in B's bucket policy (beside a foreign statement), in B's
	// key policy, and in the trust policy of a role of B.
	bucketDoc := doc([]string{
		`{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::demo-destination","arn:aws:s3:::demo-destination/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}`,
		`{"Sid":"BucketbridgeReplicaObjects","Effect":"Allow","Principal":{"AWS":["` + roleARN + `"]},"Action":"s3:ReplicateObject","Resource":"arn:aws:s3:::demo-destination/*",` +
			`"Condition":{"ArnEquals":{"aws:PrincipalArn":"` + roleARN + `"}}}`,
	})
	keyDoc := doc([]string{
		`{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":"kms:*","Resource":"*"}`,
		`{"Sid":"BucketbridgeReplicaEncrypt","Effect":"Allow","Principal":{"AWS":"` + roleARN + `"},"Action":"kms:Encrypt","Resource":"*"}`,
	})
	trustDoc := `{"Version":"2012-10-17","Statement":[{"Sid":"FromA","Effect":"Allow","Principal":{"AWS":"` + roleARN + `"},"Action":"sts:AssumeRole"}]}`
	must1[*s3.PutBucketPolicyOutput](t, "put bucket policy")(s3B.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket), Policy: aws.String(bucketDoc)}))
	must1[*kms.PutKeyPolicyOutput](t, "put key policy")(kmsB.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(DemoDestinationKey), Policy: aws.String(keyDoc)}))
	must1[*iam.CreateRoleOutput](t, "create trusting role")(iamB.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("trusts-a"), AssumeRolePolicyDocument: aws.String(trustDoc)}))

	must1[*iam.DeleteRoleOutput](t, "delete role")(iamA.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String("replicator")}))

	bp := aws.ToString(must1[*s3.GetBucketPolicyOutput](t, "get bucket policy")(s3B.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket)})).Policy)
	kp := aws.ToString(must1[*kms.GetKeyPolicyOutput](t, "get key policy")(kmsB.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(DemoDestinationKey)})).Policy)
	tp := aws.ToString(must1[*iam.GetRoleOutput](t, "get trusting role")(iamB.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("trusts-a")})).Role.AssumeRolePolicyDocument)
	for _, tt := range []struct{ what, doc, sid string }{{"bucket policy", bp, "BucketbridgeReplicaObjects"}, {"key policy", kp, "BucketbridgeReplicaEncrypt"}, {"trust policy", tp, "FromA"}} {
		if got := principalsIn(t, tt.doc, tt.sid); len(got) != 1 || got[0] != id {
			t.Errorf("%s names %v after the role's deletion, want its unique ID %s", tt.what, got, id)
		}
	}
	if !strings.Contains(bp, `"aws:PrincipalArn":"`+roleARN+`"`) {
		t.Errorf("the role's ARN in a condition was rewritten too: %s", bp)
	}

	// S3 and KMS refuse the documents as they now read.
	_, err := s3B.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket), Policy: aws.String(bp)})
	wantMessage(t, "put back the bucket policy", err, "MalformedPolicy", "Invalid principal in policy")
	_, err = kmsB.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(DemoDestinationKey), Policy: aws.String(kp)})
	wantMessage(t, "put back the key policy", err, "MalformedPolicyDocumentException", "Policy contains a statement with one or more invalid principals.")
	_, err = iamB.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("trusts-a"), PolicyDocument: aws.String(tp)})
	wantCode(t, "put back the trust policy", err, "MalformedPolicyDocument")

	// A role created again under the same name is another role: the old ID
	// stays, and does not match it.
	again := must1[*iam.CreateRoleOutput](t, "create the role again")(iamA.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("replicator"), Path: aws.String("/service-role/"), AssumeRolePolicyDocument: aws.String(trustS3)}))
	if aws.ToString(again.Role.RoleId) == id || aws.ToString(again.Role.Arn) != roleARN {
		t.Errorf("the role created again has ID %s and ARN %s", aws.ToString(again.Role.RoleId), aws.ToString(again.Role.Arn))
	}

	// What bucketbridge computes from its live requests is accepted: the
	// deleted role's ID goes, and is reported.
	current, err := policy.Parse([]byte(bp))
	if err != nil {
		t.Fatal(err)
	}
	sync, err := policy.SyncBucketPolicy(current, policy.Grant{Bucket: DemoDestinationBucket, Region: DemoDestinationRegion, Roles: []string{roleARN}})
	if err != nil {
		t.Fatal(err)
	}
	if len(sync.Dropped) != 1 || sync.Dropped[0].Principal != id || sync.Dropped[0].Reason != policy.DroppedUniqueID {
		t.Errorf("dropped %+v, want %s", sync.Dropped, id)
	}
	must1[*s3.PutBucketPolicyOutput](t, "put the synced bucket policy")(s3B.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket), Policy: aws.String(marshal(t, sync.Document))}))
	kd, _ := policy.Parse([]byte(kp))
	ksync, err := policy.SyncDestinationKeyPolicy(kd, policy.Grant{Bucket: DemoDestinationBucket, Region: DemoDestinationRegion, Roles: []string{roleARN}})
	if err != nil {
		t.Fatal(err)
	}
	// The old statement with the bare Sid is bucketbridge's too: it loses the ID and goes.
	must1[*kms.PutKeyPolicyOutput](t, "put the synced key policy")(kmsB.PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(DemoDestinationKey), Policy: aws.String(marshal(t, ksync.Document))}))

	// A foreign statement holding the ID: bucketbridge names it and writes nothing.
	foreign := strings.Replace(bp, "BucketbridgeReplicaObjects", "TeamReaders", 1)
	fd, _ := policy.Parse([]byte(foreign))
	_, err = policy.SyncBucketPolicy(fd, policy.Grant{Bucket: DemoDestinationBucket, Region: DemoDestinationRegion, Roles: []string{roleARN}})
	if err == nil || !strings.Contains(err.Error(), `statement "TeamReaders" names `+id) {
		t.Errorf("sync with a foreign statement holding %s: %v", id, err)
	}
}

func TestRoleARNMustNameThePath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := NewDemo("", "")
	must1[*iam.CreateRoleOutput](t, "create role")(c.IAM(DemoSourceAccount).CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("replicator"), Path: aws.String("/service-role/"), AssumeRolePolicyDocument: aws.String(trustS3)}))
	for arn, want := range map[string]string{
		"arn:aws:iam::111111111111:role/replicator":              "MalformedPolicy",
		"arn:aws:iam::111111111111:role/other-path/replicator":   "MalformedPolicy",
		"arn:aws:iam::111111111111:role/service-role/replicator": "",
	} {
		p := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"` + arn + `"},"Action":"s3:ReplicateObject","Resource":"arn:aws:s3:::demo-destination/*"}]}`
		_, err := c.S3(DemoDestinationAccount, DemoDestinationRegion).PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket), Policy: aws.String(p)})
		wantCode(t, "principal "+arn, err, want)
	}
	_, err := c.IAM(DemoSourceAccount).CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("bad-path"), Path: aws.String("service-role"), AssumeRolePolicyDocument: aws.String(trustS3)})
	wantCode(t, "a path without slashes", err, "InvalidInput")
}

// padBucketPolicy returns a valid policy on demo-destination of exactly n bytes.
func padBucketPolicy(t *testing.T, n int) string {
	t.Helper()
	head := `{"Version":"2012-10-17","Statement":[{"Sid":"Pad","Effect":"Deny","Principal":"*","Action":"s3:DeleteBucket","Resource":"arn:aws:s3:::demo-destination","Condition":{"StringNotLike":{"aws:PrincipalArn":"`
	tail := `"}}}]}`
	if n < len(head)+len(tail) {
		t.Fatalf("%d bytes is too short", n)
	}
	return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
}

func TestSizeLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := NewDemo("", "")
	iamA := c.IAM(DemoSourceAccount)
	must1[*iam.CreateRoleOutput](t, "create role")(iamA.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("r"), AssumeRolePolicyDocument: aws.String(trustS3)}))
	// identityDoc returns an identity policy of exactly n characters.
	identityDoc := func(n int) string {
		head := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/`
		tail := `"}]}`
		return head + strings.Repeat("p", n-len(head)-len(tail)) + tail
	}
	s3B := c.S3(DemoDestinationAccount, DemoDestinationRegion)
	putBucket := func(doc string) error {
		_, err := s3B.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket), Policy: aws.String(doc)})
		return err
	}
	keyDoc := func(n int) string {
		head := `{"Version":"2012-10-17","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":"kms:*","Resource":"*"},` +
			`{"Sid":"Pad","Effect":"Deny","Principal":"*","Action":"kms:ScheduleKeyDeletion","Resource":"*","Condition":{"StringNotLike":{"aws:PrincipalArn":"`
		tail := `"}}}]}`
		return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
	}
	putKey := func(doc string) error {
		_, err := c.KMS(DemoDestinationAccount, DemoDestinationRegion).PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(DemoDestinationKey), Policy: aws.String(doc)})
		return err
	}
	tests := []struct {
		name      string
		call      func() error
		code, msg string
	}{
		{"bucket policy of exactly 20 KB", func() error { return putBucket(padBucketPolicy(t, policy.MaxBucketPolicyBytes)) }, "", ""},
		{"bucket policy one byte over 20 KB", func() error { return putBucket(padBucketPolicy(t, policy.MaxBucketPolicyBytes+1)) }, "PolicyTooLarge", "Policy exceeds the maximum allowed document size."},
		{"bucket policy over 20 KB only by white space", func() error {
			return putBucket(strings.Replace(padBucketPolicy(t, policy.MaxBucketPolicyBytes), ",", ",    ", 8))
		}, "", ""},
		{"key policy of exactly 32 KB", func() error { return putKey(keyDoc(policy.MaxKeyPolicyBytes)) }, "", ""},
		{"key policy over 32 KB", func() error { return putKey(keyDoc(policy.MaxKeyPolicyBytes + 1)) }, "LimitExceededException", "32768"},
		{"inline policies of 10,240 characters in all", func() error {
			if _, err := iamA.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("r"), PolicyName: aws.String("a"), PolicyDocument: aws.String(identityDoc(6000))}); err != nil {
				return err
			}
			_, err := iamA.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("r"), PolicyName: aws.String("b"), PolicyDocument: aws.String(identityDoc(4240))})
			return err
		}, "", ""},
		{"inline policies one character over", func() error {
			_, err := iamA.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("r"), PolicyName: aws.String("b"), PolicyDocument: aws.String(identityDoc(4241))})
			return err
		}, "LimitExceeded", "Maximum policy size of 10240 bytes exceeded for role r"},
		{"managed policy of 6,144 characters", func() error {
			_, err := iamA.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String("full"), PolicyDocument: aws.String(identityDoc(policy.MaxManagedPolicyChars))})
			return err
		}, "", ""},
		{"managed policy one character over", func() error {
			_, err := iamA.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String("over"), PolicyDocument: aws.String(identityDoc(policy.MaxManagedPolicyChars + 1))})
			return err
		}, "LimitExceeded", "Cannot exceed quota for PolicySize: 6144"},
		{"new version one character over", func() error {
			_, err := iamA.CreatePolicyVersion(ctx, &iam.CreatePolicyVersionInput{PolicyArn: aws.String("arn:aws:iam::111111111111:policy/full"), PolicyDocument: aws.String(identityDoc(policy.MaxManagedPolicyChars + 1))})
			return err
		}, "LimitExceeded", "Cannot exceed quota for PolicySize: 6144"},
	}
	for _, tt := range tests { // in order: some build on the one before
		err := tt.call()
		if tt.code == "" && err != nil {
			t.Errorf("%s: %v", tt.name, err)
		} else if tt.code != "" {
			wantMessage(t, tt.name, err, tt.code, tt.msg)
		}
	}
}

func TestManagedPolicyConflicts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := NewDemo("", "")
	m := c.IAM(DemoSourceAccount)
	must1[*iam.CreateRoleOutput](t, "create role")(m.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("r"), AssumeRolePolicyDocument: aws.String(trustS3)}))
	var arns []string
	for i := range 11 {
		p := must1[*iam.CreatePolicyOutput](t, "create policy")(m.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(fmt.Sprintf("bucketbridge-for-r-%d", i+1)), PolicyDocument: aws.String(managedDoc("b", "s3:GetObject"))}))
		arns = append(arns, aws.ToString(p.Policy.Arn))
	}
	for _, arn := range arns[:10] {
		must1[*iam.AttachRolePolicyOutput](t, "attach")(m.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String("r"), PolicyArn: aws.String(arn)}))
	}
	must1[*iam.AttachRolePolicyOutput](t, "attach again")(m.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String("r"), PolicyArn: aws.String(arns[0])}))
	_, err := m.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String("r"), PolicyArn: aws.String(arns[10])})
	wantMessage(t, "an eleventh managed policy", err, "LimitExceeded", "Cannot exceed quota for PoliciesPerRole: 10")
	_, err = m.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: aws.String(arns[0])})
	wantMessage(t, "delete an attached policy", err, "DeleteConflict", "Cannot delete a policy attached to entities.")
	_, err = m.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String("r")})
	wantMessage(t, "delete a role with managed policies", err, "DeleteConflict", "Cannot delete entity, must detach all policies first.")
	must1[*iam.CreatePolicyVersionOutput](t, "new version")(m.CreatePolicyVersion(ctx, &iam.CreatePolicyVersionInput{PolicyArn: aws.String(arns[10]), PolicyDocument: aws.String(managedDoc("b", "s3:PutObject")), SetAsDefault: true}))
	_, err = m.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: aws.String(arns[10])})
	wantMessage(t, "delete a policy with two versions", err, "DeleteConflict", "This policy has more than one version. Before you delete a policy, you must delete the policy's versions.")
	_, err = m.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: aws.String(arns[10]), VersionId: aws.String("v2")})
	wantMessage(t, "delete the default version", err, "DeleteConflict", "Cannot delete the default version of a policy.")
	must1[*iam.DeletePolicyVersionOutput](t, "delete v1")(m.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: aws.String(arns[10]), VersionId: aws.String("v1")}))
	must1[*iam.DeletePolicyOutput](t, "delete policy")(m.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: aws.String(arns[10])}))
	_, err = m.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("bounded"), AssumeRolePolicyDocument: aws.String(trustS3), PermissionsBoundary: aws.String(arns[10])})
	wantCode(t, "a boundary that does not exist", err, "NoSuchEntity")
	gp := must1[*iam.GetPolicyOutput](t, "get policy")(m.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(arns[0])}))
	if aws.ToInt32(gp.Policy.AttachmentCount) != 1 {
		t.Errorf("attachment count %d, want 1", aws.ToInt32(gp.Policy.AttachmentCount))
	}
	page := must1[*iam.ListAttachedRolePoliciesOutput](t, "list")(m.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String("r"), MaxItems: aws.Int32(4)}))
	var names []string
	for {
		for _, p := range page.AttachedPolicies {
			names = append(names, aws.ToString(p.PolicyName))
		}
		if !page.IsTruncated {
			break
		}
		page = must1[*iam.ListAttachedRolePoliciesOutput](t, "list")(m.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String("r"), MaxItems: aws.Int32(4), Marker: page.Marker}))
	}
	if len(names) != 10 {
		t.Errorf("listed %d attached policies in pages of 4: %v", len(names), names)
	}
}

// TestManagedPoliciesConcurrently has many provisioners create, version,
// attach, detach and delete managed policies of one role at once.
func TestManagedPoliciesConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := NewDemo("", "")
	m := c.IAM(DemoSourceAccount)
	must1[*iam.CreateRoleOutput](t, "create role")(m.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("shared"), AssumeRolePolicyDocument: aws.String(trustS3)}))
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 20 {
		wg.Go(func() {
			name := fmt.Sprintf("bucketbridge-for-shared-%d", i)
			p, err := m.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(name), PolicyDocument: aws.String(managedDoc("b", "s3:GetObject"))})
			if err != nil {
				errs <- err
				return
			}
			arn := p.Policy.Arn
			for range 3 {
				if _, err := m.CreatePolicyVersion(ctx, &iam.CreatePolicyVersionInput{PolicyArn: arn, PolicyDocument: aws.String(managedDoc("b", "s3:PutObject")), SetAsDefault: true}); err != nil {
					errs <- err
				}
			}
			// The quota of 10 lets only some attach at a time: retry until attached.
			for {
				_, err := m.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String("shared"), PolicyArn: arn})
				if err == nil {
					break
				}
				if errCode(err) != "LimitExceeded" {
					errs <- err
					return
				}
			}
			if _, err := m.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String("shared"), PolicyArn: arn}); err != nil {
				errs <- err
			}
			lv, err := m.ListPolicyVersions(ctx, &iam.ListPolicyVersionsInput{PolicyArn: arn})
			if err != nil {
				errs <- err
				return
			}
			for _, v := range lv.Versions {
				if !v.IsDefaultVersion {
					if _, err := m.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: arn, VersionId: v.VersionId}); err != nil {
						errs <- err
					}
				}
			}
			if _, err := m.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: arn}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	la := must1[*iam.ListAttachedRolePoliciesOutput](t, "list")(m.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String("shared")}))
	if len(la.AttachedPolicies) != 0 {
		t.Errorf("%d policies still attached", len(la.AttachedPolicies))
	}
	must1[*iam.DeleteRoleOutput](t, "delete role")(m.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String("shared")}))
}

// TestRolePoliciesFitIAM writes what policy.BuildRolePolicies builds for its
// largest cases into the fake's IAM: every document is accepted, so the
// builder counts sizes no more generously than IAM.
func TestRolePoliciesFitIAM(t *testing.T) {
	t.Parallel()
	long := func(s string) string { return (s + "-" + strings.Repeat("b", 63))[:63] }
	hundred := policy.RoleInput{Role: "arn:aws:iam::111111111111:role/bucketbridge-demo-source", Source: policy.Side{AccountID: DemoSourceAccount, Region: DemoSourceRegion, Bucket: long("source")}}
	for i := range 110 {
		hundred.Targets = append(hundred.Targets, policy.RoleTarget{SourceKMSKeyARN: DemoSourceKey, Prefix: fmt.Sprintf("%03d/", i) + strings.Repeat("p", 59) + "/",
			Destination: policy.Side{AccountID: DemoDestinationAccount, Region: DemoDestinationRegion, Bucket: long("destination"), KMSKeyARN: DemoDestinationKey}})
	}
	twenty := hundred
	twenty.Targets = nil
	for d := range 20 {
		for p := range 4 {
			twenty.Targets = append(twenty.Targets, policy.RoleTarget{SourceKMSKeyARN: DemoSourceKey, Prefix: fmt.Sprintf("%02d/%02d/", d, p) + strings.Repeat("q", 58),
				Destination: policy.Side{AccountID: DemoDestinationAccount, Region: DemoDestinationRegion, Bucket: long(fmt.Sprintf("destination-%02d", d)), KMSKeyARN: DemoDestinationKey}})
		}
	}
	for name, in := range map[string]policy.RoleInput{"110 prefixes": hundred, "20 destinations": twenty} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c := NewDemo("", "")
			m := c.IAM(DemoSourceAccount)
			must1[*iam.CreateRoleOutput](t, "create role")(m.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("bucketbridge-demo-source"), AssumeRolePolicyDocument: aws.String(trustS3)}))
			got, err := policy.BuildRolePolicies(in)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range got.Inline {
				must1[*iam.PutRolePolicyOutput](t, "put "+p.Name)(m.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String("bucketbridge-demo-source"), PolicyName: aws.String(p.Name), PolicyDocument: aws.String(marshal(t, p.Document))}))
			}
			for _, p := range got.Managed {
				created := must1[*iam.CreatePolicyOutput](t, "create "+p.Name)(m.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(p.Name), PolicyDocument: aws.String(marshal(t, p.Document))}))
				if aws.ToString(created.Policy.Arn) != p.ARN {
					t.Errorf("policy %s has ARN %s, the builder said %s", p.Name, aws.ToString(created.Policy.Arn), p.ARN)
				}
				must1[*iam.AttachRolePolicyOutput](t, "attach "+p.Name)(m.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String("bucketbridge-demo-source"), PolicyArn: aws.String(p.ARN)}))
			}
		})
	}
}
