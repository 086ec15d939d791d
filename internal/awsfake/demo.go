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

// DemoWorld is the demo world as plain data: the accounts, keys and buckets
// that NewDemo seeds into the in-memory AWS, and that a seeder can create
// in an emulator such as moto through the SDK.
type DemoWorld struct {
	// ServiceAccount is the account of the service's own identity.
	ServiceAccount string
	// Accounts hold the keys and buckets; each gets the provisioner role.
	Accounts []string
	// Keys are customer-managed symmetric keys.
	Keys []DemoKey
	// Buckets refer to Keys by ARN for their default encryption.
	Buckets []DemoBucket
}

// DemoKey is a customer-managed key of the demo world.
type DemoKey struct {
	// Name says what the key is for: "source" or "destination".
	Name    string
	Account string
	Region  string
	// ID is the key ID in the in-memory AWS; an emulator makes up its own.
	ID          string
	Description string
	// Policy is the key policy.
	Policy string
}

// ARN is the key's ARN in the in-memory AWS.
func (k DemoKey) ARN() string {
	return "arn:aws:kms:" + k.Region + ":" + k.Account + ":key/" + k.ID
}

// DemoBucket is a bucket of the demo world.
type DemoBucket struct {
	Account string
	Region  string
	Name    string
	// Versioning is the versioning status ("" = never enabled).
	Versioning s3types.BucketVersioningStatus
	// KMSKey, when set, is the ARN (DemoKey.ARN) of the key of the bucket's
	// default encryption, SSE-KMS; SSE-S3 otherwise.
	KMSKey string
	// BucketKey: the default encryption uses S3 Bucket Keys.
	BucketKey bool
	// Policy is the bucket policy ("" = none).
	Policy          string
	ObjectOwnership s3types.ObjectOwnership
}

// Demo returns the demo world (see the Demo constants).
func Demo() DemoWorld {
	return DemoWorld{
		ServiceAccount: DemoServiceAccount,
		Accounts:       []string{DemoSourceAccount, DemoDestinationAccount},
		Keys: []DemoKey{
			{Name: "source", Account: DemoSourceAccount, Region: DemoSourceRegion, ID: "11111111-1111-4111-8111-111111111111",
				Description: "demo source key", Policy: DefaultKeyPolicy(DemoSourceAccount)},
			{Name: "source_other", Account: DemoSourceAccount, Region: DemoSourceRegion, ID: "33333333-3333-4333-8333-333333333333",
				Description: "demo source key of demo-source-other-key", Policy: DefaultKeyPolicy(DemoSourceAccount)},
			{Name: "destination", Account: DemoDestinationAccount, Region: DemoDestinationRegion, ID: "22222222-2222-4222-8222-222222222222",
				Description: "demo destination key", Policy: DefaultKeyPolicy(DemoDestinationAccount)},
		},
		Buckets: []DemoBucket{
			{Account: DemoSourceAccount, Region: DemoSourceRegion, Name: DemoSourceBucket,
				Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: DemoSourceKey, BucketKey: true,
				ObjectOwnership: s3types.ObjectOwnershipBucketOwnerEnforced},
			{Account: DemoSourceAccount, Region: DemoSourceRegion, Name: DemoSourceSSES3Bucket,
				Versioning: s3types.BucketVersioningStatusEnabled, ObjectOwnership: s3types.ObjectOwnershipBucketOwnerEnforced},
			{Account: DemoSourceAccount, Region: DemoSourceRegion, Name: DemoSourceOtherKeyBucket,
				Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: DemoSourceOtherKey,
				ObjectOwnership: s3types.ObjectOwnershipBucketOwnerEnforced},
			{Account: DemoDestinationAccount, Region: DemoDestinationRegion, Name: DemoDestinationBucket,
				Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: DemoDestinationKey, Policy: DemoDestinationPolicy,
				ObjectOwnership: s3types.ObjectOwnershipBucketOwnerEnforced},
			{Account: DemoDestinationAccount, Region: DemoDestinationRegion, Name: DemoUnversionedBucket,
				ObjectOwnership: s3types.ObjectOwnershipBucketOwnerEnforced},
		},
	}
}

// NewDemo returns a Cloud seeded with the demo world (see Demo); in both
// demo accounts the role provisionerRole (default DefaultProvisionerRole)
// may be assumed by DemoServiceAccount with externalID (default
// DefaultExternalID).
func NewDemo(provisionerRole, externalID string) *Cloud {
	c := New()
	c.SeedDemo(provisionerRole, externalID)
	return c
}

// SeedDemo adds the demo world of NewDemo to c, which must not hold any
// of its buckets yet.
func (c *Cloud) SeedDemo(provisionerRole, externalID string) {
	c.SeedProvisioners(provisionerRole, externalID)
	w := Demo()
	for _, k := range w.Keys {
		c.AddKey(k.Account, k.Region, KeyOptions{ID: k.ID, Description: k.Description, Policy: k.Policy})
	}
	for _, b := range w.Buckets {
		must(c.AddBucket(b.Account, b.Region, b.Name, BucketOptions{
			Versioning: b.Versioning, KMSKey: b.KMSKey, BucketKey: b.BucketKey, Policy: b.Policy, ObjectOwnership: b.ObjectOwnership,
		}))
	}
}

// SeedProvisioners makes provisionerRole (default DefaultProvisionerRole)
// assumable in both demo accounts by DemoServiceAccount with externalID
// (default DefaultExternalID): it creates the role where it is missing and
// corrects its trust policy where it differs, so that a world restored from
// a Snapshot follows the settings of the server that restored it.
func (c *Cloud) SeedProvisioners(provisionerRole, externalID string) {
	provisionerRole = cmp.Or(provisionerRole, DefaultProvisionerRole)
	externalID = cmp.Or(externalID, DefaultExternalID)
	w := Demo()
	trust := ProvisionerTrustPolicy(w.ServiceAccount, externalID)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, acct := range w.Accounts {
		r, ok := c.accountLocked(acct).roles[provisionerRole]
		switch {
		case !ok:
			r = c.newRoleLocked(acct, provisionerRole, "/", trust)
			r.visibleAt = r.created
		case r.trust != trust:
			r.trust = trust
		default:
			continue
		}
		c.gen++
	}
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
