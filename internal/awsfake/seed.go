package awsfake

import (
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// BucketOptions describe a bucket added with Cloud.AddBucket.
type BucketOptions struct {
	// Versioning is the versioning status ("" = never enabled).
	Versioning s3types.BucketVersioningStatus
	// KMSKey, when set, makes SSE-KMS with this key ARN the default
	// encryption (SSE-S3 otherwise).
	KMSKey string
	// BucketKey turns S3 Bucket Keys on in the default SSE-KMS encryption.
	BucketKey bool
	// ObjectLock, when set, enables Object Lock with this configuration
	// (its Rule may be nil: no default retention).
	ObjectLock *s3types.ObjectLockConfiguration
	// Policy is the bucket policy ("" = none). It is not validated.
	Policy string
	// ObjectOwnership defaults to BucketOwnerEnforced.
	ObjectOwnership s3types.ObjectOwnership
}

// AddBucket seeds a bucket without validation or faults. It fails when the
// name is taken.
func (c *Cloud) AddBucket(account, region, name string, o BucketOptions) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.buckets[name]; ok {
		return fmt.Errorf("awsfake: bucket %s exists", name)
	}
	c.gen++
	b := c.addBucketLocked(account, region, name)
	b.versioning, b.policy = o.Versioning, o.Policy
	if o.ObjectOwnership != "" {
		b.ownership = o.ObjectOwnership
	}
	if o.KMSKey != "" {
		b.encryption = &s3types.ServerSideEncryptionConfiguration{Rules: []s3types.ServerSideEncryptionRule{{
			ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: aws.String(o.KMSKey)},
			BucketKeyEnabled:                   aws.Bool(o.BucketKey),
		}}}
	}
	if o.ObjectLock != nil {
		b.objectLock = true
		if r := o.ObjectLock.Rule; r != nil && r.DefaultRetention != nil {
			b.lockDefault = clone(r.DefaultRetention)
		}
	}
	return nil
}

// AddRole seeds a role with a trust policy and inline policies (name →
// document) without validation or faults, visible everywhere at once, and
// returns its ARN. It replaces a role of the same name.
func (c *Cloud) AddRole(account, name, trust string, inline map[string]string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	r := c.newRoleLocked(account, name, "/", trust)
	r.visibleAt = r.created
	for k, v := range inline {
		r.inline[k] = v
	}
	return r.arn
}

// ProvisionerTrustPolicy is the trust policy of the provisioner role the
// demo seeds in each account: the service's identity in account caller may
// assume it with externalID (IAM User Guide, "How to use an external ID").
func ProvisionerTrustPolicy(caller, externalID string) string {
	return `{"Version":"2012-10-17","Statement":[{"Sid":"BucketbridgeService","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + caller +
		`:root"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"` + externalID + `"}}}]}`
}
