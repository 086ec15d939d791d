package awsfake

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// TestNewDemoHoldsTheDemoWorld: what dev mode serves is what Demo
// describes, key by key and bucket by bucket, so a world seeded elsewhere
// from Demo (moto) is the same one.
func TestNewDemoHoldsTheDemoWorld(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w := Demo()
	c := NewDemo("", "")
	clients := func(account, region string) *Clients {
		t.Helper()
		out, err := c.STS(w.ServiceAccount).AssumeRole(ctx, &sts.AssumeRoleInput{
			RoleArn:         aws.String("arn:aws:iam::" + account + ":role/" + DefaultProvisionerRole),
			RoleSessionName: aws.String("demo-test"), ExternalId: aws.String(DefaultExternalID),
		})
		if err != nil {
			t.Fatalf("assume the provisioner role in %s: %v", account, err)
		}
		cl, err := c.ClientsFor(*out.Credentials, region)
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	for _, k := range w.Keys {
		cl := clients(k.Account, k.Region)
		if _, err := cl.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(k.ARN())}); err != nil {
			t.Errorf("key %s: %v", k.ARN(), err)
			continue
		}
		p, err := cl.KMS.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(k.ARN())})
		if err != nil || aws.ToString(p.Policy) != k.Policy {
			t.Errorf("key %s has policy %v (%v), want %s", k.ARN(), p, err, k.Policy)
		}
	}
	for _, b := range w.Buckets {
		cl := clients(b.Account, b.Region)
		in := aws.String(b.Name)
		if v, err := cl.S3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: in}); err != nil || v.Status != b.Versioning {
			t.Errorf("bucket %s: versioning %v (%v), want %q", b.Name, v, err, b.Versioning)
		}
		enc, err := cl.S3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: in})
		gotKey := ""
		if err == nil && enc.ServerSideEncryptionConfiguration != nil {
			gotKey = aws.ToString(enc.ServerSideEncryptionConfiguration.Rules[0].ApplyServerSideEncryptionByDefault.KMSMasterKeyID)
		}
		if gotKey != b.KMSKey {
			t.Errorf("bucket %s is encrypted with %q (%v), want %q", b.Name, gotKey, err, b.KMSKey)
		}
		if oc, err := cl.S3.GetBucketOwnershipControls(ctx, &s3.GetBucketOwnershipControlsInput{Bucket: in}); err != nil ||
			oc.OwnershipControls.Rules[0].ObjectOwnership != b.ObjectOwnership {
			t.Errorf("bucket %s: object ownership %v (%v), want %s", b.Name, oc, err, b.ObjectOwnership)
		}
		if b.Policy != "" {
			p, err := cl.S3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: in})
			if err != nil || aws.ToString(p.Policy) != b.Policy {
				t.Errorf("bucket %s has policy %v (%v), want %s", b.Name, p, err, b.Policy)
			}
		}
	}
}
