package provision

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

const (
	// DefaultVerifyTimeout bounds the canary's replication when
	// StepConfig.VerifyTimeout is zero: S3 replicates most objects within 15
	// minutes (S3 User Guide, "Meeting compliance requirements with S3
	// Replication Time Control": 99.99% within 15 minutes with RTC).
	// https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-time-control.html
	DefaultVerifyTimeout = 15 * time.Minute
	// defaultPollInterval is how often the canary's status is read when
	// StepConfig.PollInterval is zero.
	defaultPollInterval = 5 * time.Second
	// firstPoll is the first wait between canary status reads; it doubles
	// up to the poll interval.
	firstPoll = 10 * time.Millisecond
	// CanaryDir is where, under the rule's prefix, canary objects are put.
	CanaryDir = "bucketbridge-canary/"
	// canaryCleanupTimeout bounds deleting canary versions after the step's
	// context is done.
	canaryCleanupTimeout = 30 * time.Second
)

// canaryResult is what verify records.
type canaryResult struct {
	Object        string `json:"object"`
	VersionID     string `json:"version_id,omitempty"`
	Status        string `json:"status"`
	LatencyMS     int64  `json:"latency_ms"`
	ReplicaKMSKey string `json:"replica_kms_key,omitempty"`

	latency time.Duration
}

// CanaryKey is the key of a request's canary object: inside the rule's
// prefix, so that the rule selects it.
func CanaryKey(r Replication) string { return r.Rule.Prefix + CanaryDir + r.ID }

// verify proves replication works (docs/ARCHITECTURE.md, The steps): a canary object put
// into X with SSE-KMS KA must reach COMPLETED, and its replica in Y must be
// encrypted with KB. PutBucketReplication checks neither the role's
// permissions nor the keys, so only this shows the documents are right.
// Canary versions are deleted from both buckets whatever happens.
func verify(ctx context.Context, run *Run) (Result, error) {
	if !run.Replication.Verify {
		return Result{Skipped: true}, nil
	}
	key := CanaryKey(run.Replication)
	res, err := canary(ctx, run, key)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), canaryCleanupTimeout)
	defer cancel()
	cerr := errors.Join(
		deleteCanary(cctx, run.Source, run.Replication.Source, key),
		deleteCanary(cctx, run.Destination, run.Replication.Destination, key),
	)
	var perm *PermanentError
	switch {
	case err != nil && cerr != nil && errors.As(err, &perm):
		return Result{}, Permanent(perm.Detail+fmt.Sprintf("; the canary versions of %s could not all be deleted (%v): delete them by hand", key, cerr), perm.Err)
	case err != nil:
		return Result{}, err
	case cerr != nil:
		return Result{}, fmt.Errorf("delete canary %s: %w", key, cerr)
	}
	run.Learn(func(f *Facts) { f.CanaryLatency = res.latency })
	// Nothing the canary wrote remains: the step changes nothing.
	return Result{After: res}, nil
}

// canary puts the canary object and waits for its replication.
func canary(ctx context.Context, run *Run, key string) (canaryResult, error) {
	src, dst := run.Replication.Source, run.Replication.Destination
	object := "s3://" + src.Bucket + "/" + key
	res := canaryResult{Object: object}
	start := run.now()
	put, err := run.Source.S3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:               aws.String(src.Bucket),
		Key:                  aws.String(key),
		ExpectedBucketOwner:  aws.String(src.AccountID),
		Body:                 bytes.NewReader([]byte("bucketbridge replication canary for request " + run.Replication.ID + "\n")),
		ContentType:          aws.String("text/plain"),
		ServerSideEncryption: s3types.ServerSideEncryptionAwsKms,
		SSEKMSKeyId:          aws.String(src.KMSKeyARN),
	})
	if err != nil {
		return res, classify(err, call{Account: src.AccountID, Action: "s3:PutObject (and kms:GenerateDataKey with " + src.KMSKeyARN + ")", Resource: object})
	}
	res.VersionID = aws.ToString(put.VersionId)
	cfg := run.Config.withDefaults()
	timeout, interval := cfg.VerifyTimeout, cfg.PollInterval
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Polls start fast and slow down to interval, so the recorded latency
	// is close to the real one whether replication takes 50 ms or minutes.
	wait := min(firstPoll, interval)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var lastErr error
	for {
		head, err := run.Source.S3.HeadObject(wctx, &s3.HeadObjectInput{
			Bucket: aws.String(src.Bucket), Key: aws.String(key), VersionId: put.VersionId, ExpectedBucketOwner: aws.String(src.AccountID),
		})
		switch {
		case err != nil && wctx.Err() == nil:
			if c := classify(err, call{Account: src.AccountID, Action: "s3:GetObject", Resource: object}); IsPermanent(c) {
				return res, c
			}
			lastErr = err
		case err == nil:
			res.Status = string(head.ReplicationStatus)
			switch head.ReplicationStatus {
			case s3types.ReplicationStatusFailed:
				return res, Permanent(fmt.Sprintf("the canary object %s (version %s) did not replicate to bucket %s in account %s: S3 marked it FAILED. Check, in this order: that role %s trusts s3.amazonaws.com and holds bucketbridge's policies (%s and any %s… managed policies); that KB's key policy (%s) lets the role kms:Encrypt and kms:GenerateDataKey; that %s's bucket policy lets the role s3:ReplicateObject and s3:ObjectOwnerOverrideToBucketOwner; that KA's key policy lets the role kms:Decrypt; that versioning is Enabled on both buckets and both keys are enabled. S3's replication failure events (s3:Replication:OperationFailedReplication) name the exact reason",
					object, res.VersionID, dst.Bucket, dst.AccountID, input(run).RoleARN(), policy.RoleInlinePolicyName, policy.PolicyNamePrefix, dst.KMSKeyARN, dst.Bucket), nil)
			case s3types.ReplicationStatusCompleted:
				done, err := checkReplica(wctx, run, key, put.VersionId, &res)
				if err != nil {
					return res, err
				}
				if done {
					res.latency = run.now().Sub(start)
					res.LatencyMS = res.latency.Milliseconds()
					return res, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-wctx.Done():
			status := cmp.Or(res.Status, "unknown")
			return res, Permanent(fmt.Sprintf("the canary object %s did not replicate to bucket %s within %s (last status %s): S3 may be slow (raise BB_VERIFY_TIMEOUT), or an object written before every permission was in place may be stuck; check the role's inline policy, KB's and %s's policies, and S3 replication metrics", object, dst.Bucket, timeout, status, dst.Bucket), lastErr)
		case <-timer.C:
			wait = min(2*wait, interval)
			timer.Reset(wait)
		}
	}
}

// checkReplica reads the replica in Y with B's session; false when it is not
// visible yet.
func checkReplica(ctx context.Context, run *Run, key string, versionID *string, res *canaryResult) (bool, error) {
	dst := run.Replication.Destination
	object := "s3://" + dst.Bucket + "/" + key
	head, err := run.Destination.S3.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(dst.Bucket), Key: aws.String(key), VersionId: versionID, ExpectedBucketOwner: aws.String(dst.AccountID),
	})
	switch {
	case IsNotFound(err):
		return false, nil
	case err != nil:
		if c := classify(err, call{Account: dst.AccountID, Action: "s3:GetObject", Resource: object}); IsPermanent(c) {
			return false, c
		}
		return false, nil
	}
	res.ReplicaKMSKey = aws.ToString(head.SSEKMSKeyId)
	if head.ServerSideEncryption != s3types.ServerSideEncryptionAwsKms || !sameKey(res.ReplicaKMSKey, dst.KMSKeyARN) {
		return false, Permanent(fmt.Sprintf("the replica %s is encrypted with %s %s, not with the destination key %s: check the rule's ReplicaKmsKeyID and %s's default encryption",
			object, cmp.Or(string(head.ServerSideEncryption), "no SSE"), res.ReplicaKMSKey, dst.KMSKeyARN, dst.Bucket), nil)
	}
	return true, nil
}

// sameKey compares a key ID or ARN with a key ARN.
func sameKey(got, arn string) bool {
	return got == arn || got != "" && strings.HasSuffix(arn, "/"+got)
}

// deleteCanary deletes every version and delete marker of the canary key.
func deleteCanary(ctx context.Context, acct *Account, side Side, key string) error {
	owner := aws.String(side.AccountID)
	in := &s3.ListObjectVersionsInput{Bucket: aws.String(side.Bucket), Prefix: aws.String(key), ExpectedBucketOwner: owner}
	for {
		out, err := acct.S3.ListObjectVersions(ctx, in)
		if IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list canary versions in %s: %w", side.Bucket, err)
		}
		var ids []*string
		for _, v := range out.Versions {
			if aws.ToString(v.Key) == key {
				ids = append(ids, v.VersionId)
			}
		}
		for _, m := range out.DeleteMarkers {
			if aws.ToString(m.Key) == key {
				ids = append(ids, m.VersionId)
			}
		}
		for _, id := range ids {
			_, err := acct.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(side.Bucket), Key: aws.String(key), VersionId: id, ExpectedBucketOwner: owner})
			if err != nil && !IsNotFound(err) {
				return fmt.Errorf("delete canary version %s in %s: %w", aws.ToString(id), side.Bucket, err)
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		in.KeyMarker, in.VersionIdMarker = out.NextKeyMarker, out.NextVersionIdMarker
	}
}

// verifyTimeout gives verify the time the canary may take to replicate on
// top of the time its calls take.
func verifyTimeout(c StepConfig) time.Duration { return c.StepTimeout + c.VerifyTimeout }
