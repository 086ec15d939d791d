package awsfake

import (
	"cmp"

	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// The demo world of dev mode; the README's examples use these names.
const (
	// DemoServiceAccount is the account of the service's own identity in
	// dev mode: use c.STS(DemoServiceAccount) to assume the provisioner
	// roles. It is also moto's default account.
	DemoServiceAccount = "123456789012"

	// DemoSourceAccount holds the source bucket and key, in DemoSourceRegion.
	DemoSourceAccount = "111111111111"
	// DemoSourceRegion is the region of the source side.
	DemoSourceRegion = "us-east-1"
	// DemoSourceBucket is versioned; its default encryption is SSE-KMS with
	// DemoSourceKey and S3 Bucket Keys.
	DemoSourceBucket = "demo-source"
	// DemoSourceKey is a customer-managed key with the default key policy.
	DemoSourceKey = "arn:aws:kms:us-east-1:111111111111:key/11111111-1111-4111-8111-111111111111"
	// DemoSourceSSES3Bucket is versioned; its default encryption is SSE-S3,
	// S3's default since January 2023.
	DemoSourceSSES3Bucket = "demo-source-sse-s3"
	// DemoSourceOtherKeyBucket is versioned; its default encryption is
	// SSE-KMS with DemoSourceOtherKey.
	DemoSourceOtherKeyBucket = "demo-source-other-key"
	// DemoSourceOtherKey is a second customer-managed key of the source
	// account, with the default key policy.
	DemoSourceOtherKey = "arn:aws:kms:us-east-1:111111111111:key/33333333-3333-4333-8333-333333333333"

	// DemoDestinationAccount holds the destination buckets and key, in
	// DemoDestinationRegion.
	DemoDestinationAccount = "222222222222"
	// DemoDestinationRegion is the region of the destination side.
	DemoDestinationRegion = "us-west-2"
	// DemoDestinationBucket is versioned, encrypted by DemoDestinationKey,
	// and its policy holds one foreign statement (DemoForeignSid).
	DemoDestinationBucket = "demo-destination"
	// DemoDestinationKey is a customer-managed key with the default key
	// policy.
	DemoDestinationKey = "arn:aws:kms:us-west-2:222222222222:key/22222222-2222-4222-8222-222222222222"
	// DemoUnversionedBucket is a destination-side bucket without versioning.
	DemoUnversionedBucket = "demo-unversioned"
	// DemoForeignSid is the Sid of the statement in DemoDestinationBucket's
	// policy that is not bucketbridge's and must survive every change.
	DemoForeignSid = "DenyInsecureTransport"

	// DefaultProvisionerRole and DefaultExternalID are NewDemo's defaults
	// for empty arguments.
	DefaultProvisionerRole = "BucketbridgeProvisioner"
	// DefaultExternalID: see DefaultProvisionerRole.
	DefaultExternalID = "bucketbridge-dev"
)

// DemoDestinationPolicy is DemoDestinationBucket's initial bucket policy.
const DemoDestinationPolicy = `{"Version":"2012-10-17","Statement":[{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*",` +
	`"Resource":["arn:aws:s3:::demo-destination","arn:aws:s3:::demo-destination/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}`

// NewDemo returns a Cloud seeded with the demo world (see the Demo
// constants); in both demo accounts the role provisionerRole (default
// DefaultProvisionerRole) may be assumed by DemoServiceAccount with
// externalID (default DefaultExternalID).
func NewDemo(provisionerRole, externalID string) *Cloud {
	c := New()
	c.SeedDemo(provisionerRole, externalID)
	return c
}

// SeedDemo adds the demo world of NewDemo to c, which must not hold any
// of its buckets yet.
func (c *Cloud) SeedDemo(provisionerRole, externalID string) {
	provisionerRole = cmp.Or(provisionerRole, DefaultProvisionerRole)
	externalID = cmp.Or(externalID, DefaultExternalID)
	for _, acct := range []string{DemoSourceAccount, DemoDestinationAccount} {
		c.AddRole(acct, provisionerRole, ProvisionerTrustPolicy(DemoServiceAccount, externalID), nil)
	}
	c.AddKey(DemoSourceAccount, DemoSourceRegion, KeyOptions{ID: "11111111-1111-4111-8111-111111111111", Description: "demo source key"})
	c.AddKey(DemoSourceAccount, DemoSourceRegion, KeyOptions{ID: "33333333-3333-4333-8333-333333333333", Description: "demo source key of demo-source-other-key"})
	c.AddKey(DemoDestinationAccount, DemoDestinationRegion, KeyOptions{ID: "22222222-2222-4222-8222-222222222222", Description: "demo destination key"})
	must(c.AddBucket(DemoSourceAccount, DemoSourceRegion, DemoSourceBucket, BucketOptions{Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: DemoSourceKey, BucketKey: true}))
	must(c.AddBucket(DemoSourceAccount, DemoSourceRegion, DemoSourceSSES3Bucket, BucketOptions{Versioning: s3types.BucketVersioningStatusEnabled}))
	must(c.AddBucket(DemoSourceAccount, DemoSourceRegion, DemoSourceOtherKeyBucket, BucketOptions{Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: DemoSourceOtherKey}))
	must(c.AddBucket(DemoDestinationAccount, DemoDestinationRegion, DemoDestinationBucket, BucketOptions{
		Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: DemoDestinationKey, Policy: DemoDestinationPolicy,
	}))
	must(c.AddBucket(DemoDestinationAccount, DemoDestinationRegion, DemoUnversionedBucket, BucketOptions{}))
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
