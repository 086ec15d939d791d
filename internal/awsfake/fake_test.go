package awsfake

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// These tests cover what only the fake (and AWS) do, not moto: see the
// list at the top of conformance_test.go.

func TestMalformedPoliciesRejected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := NewDemo("", "")
	bad := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*"`
	_, err := c.S3(DemoDestinationAccount, DemoDestinationRegion).PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket), Policy: aws.String(bad)})
	wantCode(t, "PutBucketPolicy", err, "MalformedPolicy")
	_, err = c.S3(DemoDestinationAccount, DemoDestinationRegion).PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket),
		Policy: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::someone-else/*"}]}`)})
	wantCode(t, "PutBucketPolicy on another bucket's resource", err, "MalformedPolicy")
	_, err = c.IAM(DemoSourceAccount).PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(DefaultProvisionerRole), PolicyName: aws.String("p"), PolicyDocument: aws.String(bad)})
	wantCode(t, "PutRolePolicy", err, "MalformedPolicyDocument")
	_, err = c.IAM(DemoSourceAccount).CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("r"), AssumeRolePolicyDocument: aws.String(bad)})
	wantCode(t, "CreateRole", err, "MalformedPolicyDocument")
	_, err = c.IAM(DemoSourceAccount).CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("r"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111111111111:role/nobody"},"Action":"sts:AssumeRole"}]}`)})
	wantCode(t, "CreateRole trusting a missing role", err, "MalformedPolicyDocument")
	_, err = c.KMS(DemoSourceAccount, DemoSourceRegion).PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(DemoSourceKey), Policy: aws.String(bad)})
	wantCode(t, "PutKeyPolicy", err, "MalformedPolicyDocumentException")
}

func TestKeyPolicyLockoutRejected(t *testing.T) {
	t.Parallel()
	c := NewDemo("", "")
	lockout := `{"Version":"2012-10-17","Statement":[{"Sid":"OnlySomeoneElse","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::333333333333:root"},"Action":"kms:*","Resource":"*"}]}`
	_, err := c.KMS(DemoSourceAccount, DemoSourceRegion).PutKeyPolicy(context.Background(), &kms.PutKeyPolicyInput{KeyId: aws.String(DemoSourceKey), Policy: aws.String(lockout)})
	wantCode(t, "lockout", err, "MalformedPolicyDocumentException")
	if err != nil && !strings.Contains(err.Error(), "will not allow you to update the key policy in the future") {
		t.Errorf("lockout: %v, want AWS's message", err)
	}
}

func TestAssumeRoleEnforcesRoleAndExternalID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := NewDemo("Prov", "secret")
	s := c.STS(DemoServiceAccount)
	for _, tt := range []struct{ role, ext string }{
		{"arn:aws:iam::111111111111:role/Prov", "wrong"},
		{"arn:aws:iam::111111111111:role/Missing", "secret"},
		{"arn:aws:iam::333333333333:role/Prov", "secret"},
	} {
		_, err := s.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(tt.role), RoleSessionName: aws.String("s"), ExternalId: aws.String(tt.ext)})
		wantCode(t, tt.role+" "+tt.ext, err, "AccessDenied")
	}
	// Another caller account is not trusted either.
	_, err := c.STS("999999999999").AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::111111111111:role/Prov"), RoleSessionName: aws.String("s"), ExternalId: aws.String("secret")})
	wantCode(t, "untrusted caller", err, "AccessDenied")

	out := must1[*sts.AssumeRoleOutput](t, "assume")(s.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::222222222222:role/Prov"), RoleSessionName: aws.String("s"), ExternalId: aws.String("secret")}))
	acct, err := c.AccountFor(*out.Credentials)
	if err != nil || acct != DemoDestinationAccount {
		t.Errorf("AccountFor = %q, %v; want %s", acct, err, DemoDestinationAccount)
	}
}

func TestBucketOwnershipAndKeyRegionEnforced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := NewDemo("", "")
	_, err := c.S3(DemoSourceAccount, DemoSourceRegion).HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(DemoSourceBucket), ExpectedBucketOwner: aws.String(DemoDestinationAccount)})
	wantCode(t, "wrong ExpectedBucketOwner", err, "AccessDenied")
	_, err = c.S3(DemoSourceAccount, DemoSourceRegion).GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(DemoDestinationBucket)})
	wantCode(t, "another account's bucket without a grant", err, "AccessDenied")
	_, err = c.S3(DemoSourceAccount, DemoSourceRegion).GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(DemoDestinationBucket)})
	wantCode(t, "another account's bucket policy", err, "MethodNotAllowed")
	_, err = c.KMS(DemoSourceAccount, "eu-west-1").DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(DemoSourceKey)})
	wantCode(t, "key from another region", err, "NotFoundException")
	_, err = c.S3(DemoDestinationAccount, DemoDestinationRegion).PutBucketReplication(ctx, &s3.PutBucketReplicationInput{Bucket: aws.String(DemoUnversionedBucket)})
	wantCode(t, "replication on demo-unversioned", err, "InvalidRequest")
}

func TestWildcardMatch(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"s3:*", "s3:ReplicateObject", true},
		{"s3:Replicate*", "s3:GetObject", false},
		{"arn:aws:s3:::b/p*", "arn:aws:s3:::b/p/x", true},
		{"arn:aws:s3:::b/p*", "arn:aws:s3:::b", false},
		{"kms:?ncrypt", "kms:Encrypt", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
	} {
		if got := wildcardMatch(tt.pattern, tt.s); got != tt.want {
			t.Errorf("wildcardMatch(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}
