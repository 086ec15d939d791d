package awsfake

import (
	"context"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// S3 Object Lock, as the fake models it: a bucket has Object Lock enabled
// (at creation, with ObjectLockEnabledForBucket, or later on a versioned
// bucket with PutObjectLockConfiguration) and optionally a default
// retention that every new version gets; a version under a retention
// period or a legal hold cannot be deleted; versioning of such a bucket
// cannot be suspended; replication from it needs Object Lock on the
// destination and s3:GetObjectRetention and s3:GetObjectLegalHold on the
// role. Event holds are not modelled.
// See https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html

func noLockConfiguration() error {
	return newErr(http.StatusNotFound, "ObjectLockConfigurationNotFoundError", "Object Lock configuration does not exist for this bucket")
}

// PutObjectLockConfiguration enables Object Lock on a versioned bucket and
// sets or clears its default retention (Days or Years, not both).
func (s *S3) PutObjectLockConfiguration(ctx context.Context, in *s3.PutObjectLockConfigurationInput, _ ...func(*s3.Options)) (*s3.PutObjectLockConfigurationOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "PutObjectLockConfiguration", func() (*s3.PutObjectLockConfigurationOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:PutBucketObjectLockConfiguration", "", false)
		if err != nil {
			return nil, err
		}
		cfg := in.ObjectLockConfiguration
		if cfg == nil || cfg.ObjectLockEnabled != s3types.ObjectLockEnabledEnabled {
			return nil, malformedXML()
		}
		if b.versioning != s3types.BucketVersioningStatusEnabled {
			return nil, newErr(http.StatusConflict, "InvalidBucketState", "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration")
		}
		var def *s3types.DefaultRetention
		if cfg.Rule != nil && cfg.Rule.DefaultRetention != nil {
			def = cfg.Rule.DefaultRetention
			days, years := aws.ToInt32(def.Days), aws.ToInt32(def.Years)
			switch {
			case def.Mode != s3types.ObjectLockRetentionModeGovernance && def.Mode != s3types.ObjectLockRetentionModeCompliance:
				return nil, malformedXML()
			case (days > 0) == (years > 0) || days < 0 || years < 0:
				return nil, malformedXML()
			}
			def = clone(def)
		}
		b.objectLock, b.lockDefault = true, def
		return &s3.PutObjectLockConfigurationOutput{}, nil
	})
}

// GetObjectLockConfiguration returns the bucket's Object Lock
// configuration; ObjectLockConfigurationNotFoundError when it has none.
func (s *S3) GetObjectLockConfiguration(ctx context.Context, in *s3.GetObjectLockConfigurationInput, _ ...func(*s3.Options)) (*s3.GetObjectLockConfigurationOutput, error) {
	return do(ctx, s.c, s.caller, svcS3, "GetObjectLockConfiguration", func() (*s3.GetObjectLockConfigurationOutput, error) {
		b, err := s.bucketLocked(aws.ToString(in.Bucket), in.ExpectedBucketOwner, "s3:GetBucketObjectLockConfiguration", "", false)
		if err != nil {
			return nil, err
		}
		if !b.objectLock {
			return nil, noLockConfiguration()
		}
		return &s3.GetObjectLockConfigurationOutput{ObjectLockConfiguration: b.lockConfiguration()}, nil
	})
}

func (b *bucket) lockConfiguration() *s3types.ObjectLockConfiguration {
	out := &s3types.ObjectLockConfiguration{ObjectLockEnabled: s3types.ObjectLockEnabledEnabled}
	if b.lockDefault != nil {
		out.Rule = &s3types.ObjectLockRule{DefaultRetention: clone(b.lockDefault)}
	}
	return out
}

// lockNewVersionLocked gives a new version the retention and legal hold its
// PutObject asks for, or the bucket's default retention.
func (c *Cloud) lockNewVersionLocked(b *bucket, o *object, in *s3.PutObjectInput) error {
	explicit := in.ObjectLockMode != "" || in.ObjectLockRetainUntilDate != nil || in.ObjectLockLegalHoldStatus != ""
	if !b.objectLock {
		if explicit {
			return invalidRequest("Bucket is missing Object Lock Configuration")
		}
		return nil
	}
	switch {
	case in.ObjectLockMode != "" && in.ObjectLockRetainUntilDate != nil:
		o.lockMode, o.retainUntil = in.ObjectLockMode, *in.ObjectLockRetainUntilDate
	case in.ObjectLockMode != "" || in.ObjectLockRetainUntilDate != nil:
		return invalidRequest("x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied")
	default:
		o.lockMode, o.retainUntil = b.defaultRetention(c.now())
	}
	o.legalHold = in.ObjectLockLegalHoldStatus == s3types.ObjectLockLegalHoldStatusOn
	return nil
}
