package provision

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// The source bucket's default encryption decides what an object written
// without encryption headers gets, and so whether it replicates under the
// destination key (S3 User Guide, "Replicating encrypted objects"):
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-config-for-kms-objects.html
//
//   - SSE-KMS with KA: it replicates like an object written with KA;
//   - SSE-KMS with another key: the role may decrypt only with KA, so it
//     fails to replicate, silently; inspection fails the request;
//   - SSE-S3 (every bucket's default since January 2023) or none: it
//     replicates as it is, SSE-S3, not under KB; the request goes on with a
//     warning, unless it asks for set_source_default_encryption, which makes
//     X's default SSE-KMS with KA and Bucket Keys.

// defaultOf is what an object written without encryption headers gets,
// from inspection's finding.
func defaultOf(f *encryptionFinding) policy.DefaultEncryption {
	if f == nil {
		return policy.DefaultEncryption{}
	}
	return policy.DefaultEncryption{Algorithm: f.Algorithm, KMSKeyID: f.KMSKeyID, BucketKey: f.BucketKeys}
}

// checkSourceEncryption compares X's default encryption (inspection's
// finding f) with the request's source key. It resolves an alias (or the
// AWS managed key aws/s3, which an SSE-KMS default without a key means)
// with DescribeKey, recording the key's ARN in f.
func checkSourceEncryption(ctx context.Context, run *Run, f *encryptionFinding) ([]Warning, error) {
	side, dst := run.Replication.Source, run.Replication.Destination
	def := defaultOf(f)
	if !def.IsKMS() {
		if run.Replication.SetSourceDefaultEncryption {
			return nil, nil
		}
		what := "SSE-S3"
		if def.Algorithm == "" {
			what = "no encryption (no default encryption)"
		}
		return []Warning{warn(WarningSourceDefaultSSES3,
			"source bucket %s gives objects written without encryption headers %s, not SSE-KMS with the source key %s: S3 replicates such objects as they are, so their replicas in %s are SSE-S3, not encrypted with the destination key %s (objects written with SSE-KMS and %s replicate under %s). To have them replicate under %s, make %s's default encryption SSE-KMS with %s: deprovision this request (DELETE it) and resubmit it with set_source_default_encryption: true, or run aws s3api put-bucket-encryption --bucket %s --server-side-encryption-configuration '%s'",
			side.Bucket, what, side.KMSKeyARN, dst.Bucket, dst.KMSKeyARN, side.KMSKeyARN, dst.KMSKeyARN, dst.KMSKeyARN, side.Bucket, side.KMSKeyARN, side.Bucket, mustJSON(policy.SourceDefaultEncryption(side.KMSKeyARN)))}, nil
	}
	uses, known := def.UsesKey(side.KMSKeyARN)
	resolved := def.KMSKeyID
	if !known {
		id := cmp.Or(def.KMSKeyID, "alias/aws/s3")
		out, err := run.Source.KMS.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(id)})
		switch {
		case IsNotFound(err):
			resolved = id
		case err != nil:
			return nil, classify(err, call{Account: side.AccountID, Action: "kms:DescribeKey", Resource: id})
		case out.KeyMetadata != nil:
			resolved = aws.ToString(out.KeyMetadata.Arn)
			uses = resolved == side.KMSKeyARN
		}
		if def.KMSKeyID == "" {
			resolved += " (the AWS managed key aws/s3, which an SSE-KMS default without a key means)"
		}
		f.KMSKeyARN = resolved
	}
	if uses {
		return nil, nil
	}
	return nil, Permanent(fmt.Sprintf("source bucket %s encrypts objects written without encryption headers with SSE-KMS and key %s, not with the request's source key %s: the replication role may decrypt only with %s, so those objects would fail to replicate. Either make %s the bucket's default key (aws s3api put-bucket-encryption --bucket %s --server-side-encryption-configuration '%s') and retry this request (POST .../retry), or, when %s is a customer-managed key of account %s that every object of the bucket is encrypted with, deprovision this request (DELETE it) and resubmit it with source.kms_key_arn %s",
		side.Bucket, resolved, side.KMSKeyARN, side.KMSKeyARN, side.KMSKeyARN, side.Bucket, mustJSON(policy.SourceDefaultEncryption(side.KMSKeyARN)), resolved, side.AccountID, resolved), nil)
}

// sourceEncryptionLock is X's default encryption, a document of its own.
func sourceEncryptionLock(run *Run) []string {
	return []string{bucketARN(run.Replication.Source) + "#default-encryption"}
}

// encryptionState is how the default encryption steps record X's setting;
// Configuration is null when the bucket has none.
type encryptionState struct {
	Bucket        string                   `json:"bucket"`
	Configuration *policy.BucketEncryption `json:"configuration"`
	// Kept says why the step left the setting as it is.
	Kept string `json:"kept,omitempty"`
	// Requests are the other requests from the bucket that ask for it.
	Requests []string `json:"requests,omitempty"`
}

// readBucketEncryption reads a side's default encryption; nil when it has
// none.
func readBucketEncryption(ctx context.Context, acct *Account, side Side) (*policy.BucketEncryption, error) {
	out, err := acct.S3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(side.Bucket), ExpectedBucketOwner: aws.String(side.AccountID)})
	switch {
	case IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, classify(err, call{Account: side.AccountID, Action: "s3:GetEncryptionConfiguration", Resource: side.Bucket})
	case out.ServerSideEncryptionConfiguration == nil:
		return nil, nil
	}
	// policy's JSON names are the SDK's field names.
	b, err := json.Marshal(out.ServerSideEncryptionConfiguration)
	if err != nil {
		return nil, fmt.Errorf("encode default encryption of %s: %w", side.Bucket, err)
	}
	var c policy.BucketEncryption
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("convert default encryption of %s: %w", side.Bucket, err)
	}
	return &c, nil
}

// putBucketEncryption writes a side's default encryption.
func putBucketEncryption(ctx context.Context, acct *Account, side Side, c policy.BucketEncryption) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode default encryption: %w", err)
	}
	var sdk s3types.ServerSideEncryptionConfiguration
	if err := json.Unmarshal(b, &sdk); err != nil {
		return fmt.Errorf("convert default encryption: %w", err)
	}
	_, err = acct.S3.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String(side.Bucket), ExpectedBucketOwner: aws.String(side.AccountID),
		ServerSideEncryptionConfiguration: &sdk})
	if err != nil {
		return classify(err, call{Account: side.AccountID, Action: "s3:PutEncryptionConfiguration", Resource: side.Bucket})
	}
	return nil
}

// usesSourceKey reports whether a default encryption is SSE-KMS with key
// (by ID or ARN; an alias is not resolved and does not count).
func usesSourceKey(c *policy.BucketEncryption, key string) bool {
	if c == nil {
		return false
	}
	uses, known := c.Default().UsesKey(key)
	return uses && known
}

// leavesSourceEncryption skips the default encryption steps of a request
// that did not ask for set_source_default_encryption: only those set X's
// setting (to SSE-KMS with KA and S3 Bucket Keys) and give it back the one
// it had before, once no request from X asks for it any more.
func leavesSourceEncryption(run *Run) bool { return !run.Replication.SetSourceDefaultEncryption }

// syncSourceEncryption decides X's default encryption from the requests
// that hold documents on X and ask for set_source_default_encryption with
// the same key (Run.peers), under the setting's lock, as the policy steps
// decide their documents: while any asks, it is SSE-KMS with KA; when none
// is left, what it was before is restored, unless someone changed it
// meanwhile.
//
// What it was before is remembered in the facts of the request that set it,
// and of every request that asks for it afterwards: a request that finds it
// set copies the memory from another asker, or from a request being
// deprovisioned whose removal has not reached the setting yet (whose removal
// then sees this request asking and leaves the setting). A request counts
// as asking once its own step has decided (SourceEncryptionDecided), so that
// a removal never leaves the setting to a request that could not know what
// it was: one that has not decided yet sets it again itself, after the
// removal restored it, and remembers that.
func syncSourceEncryption(ctx context.Context, run *Run) (Result, error) {
	src := run.Replication.Source
	peers, err := run.peers(ctx, PeerFilter{SourceBucket: src.Bucket, Leaving: run.Replication.Phase == PhaseProvision})
	if err != nil {
		return Result{}, err
	}
	var askers, leaving []Peer
	for _, p := range peers {
		if !p.SetSourceDefaultEncryption || p.Source.KMSKeyARN != src.KMSKeyARN {
			continue
		}
		switch {
		case slices.Contains(LeavingStates, p.State) && p.ID != run.Replication.ID:
			leaving = append(leaving, p)
		case p.ID == run.Replication.ID || p.Facts.SourceEncryptionDecided:
			askers = append(askers, p)
		}
	}
	current, err := readBucketEncryption(ctx, run.Source, src)
	if err != nil {
		return Result{}, err
	}
	before := encryptionState{Bucket: src.Bucket, Configuration: current}
	facts := run.Facts()
	decided := func() { run.Learn(func(f *Facts) { f.SourceEncryptionDecided = true }) }
	switch {
	case len(askers) > 0 && run.Replication.Phase == PhaseDeprovision:
		kept := before
		kept.Kept = "other requests from " + src.Bucket + " ask for it"
		for _, p := range askers {
			kept.Requests = append(kept.Requests, p.ID)
		}
		return Result{Before: before, After: kept}, nil
	case len(askers) > 0 && usesSourceKey(current, src.KMSKeyARN):
		// Already SSE-KMS with KA: set by another request (whose memory
		// of the previous setting this one shares), or by the bucket's owner.
		if !facts.SourceEncryptionSet {
			for _, p := range append(askers, leaving...) {
				if p.ID != run.Replication.ID && p.Facts.SourceEncryptionSet {
					prev := p.Facts.SourceEncryptionBefore
					run.Learn(func(f *Facts) { f.SourceEncryptionSet, f.SourceEncryptionBefore = true, prev })
					break
				}
			}
		}
		decided()
		return Result{Before: before, After: before}, nil
	case len(askers) > 0 && current != nil && current.Default().IsKMS():
		return Result{}, Permanent(fmt.Sprintf("source bucket %s's default encryption is SSE-KMS with key %s, not the source key %s, which it was not at inspection: bucketbridge replaces only SSE-S3 (or no) default encryption; make %s the default key or deprovision this request", src.Bucket, current.Default().KMSKeyID, src.KMSKeyARN, src.KMSKeyARN), nil)
	case len(askers) > 0:
		want := policy.SourceDefaultEncryption(src.KMSKeyARN)
		if !facts.SourceEncryptionSet {
			// Remembered before the write: if its answer is lost, the
			// retry finds the setting made and the restore still knows
			// what it was.
			run.Learn(func(f *Facts) { f.SourceEncryptionSet, f.SourceEncryptionBefore = true, current })
		}
		decided()
		if err := putBucketEncryption(ctx, run.Source, src, want); err != nil {
			return Result{}, err
		}
		got, err := readBucketEncryption(ctx, run.Source, src)
		if err != nil {
			return Result{}, err
		}
		if !usesSourceKey(got, src.KMSKeyARN) {
			return Result{}, fmt.Errorf("confirm default encryption of %s: it reads back differently", src.Bucket)
		}
		return Result{Changed: true, Before: before, After: encryptionState{Bucket: src.Bucket, Configuration: &want}}, nil
	case !facts.SourceEncryptionSet:
		kept := before
		kept.Kept = "bucketbridge did not set it: it was SSE-KMS with the source key already"
		return Result{Before: before, After: kept}, nil
	}
	// The last request that asked for the setting is leaving.
	if current == nil || !usesSourceKey(current, src.KMSKeyARN) || !current.Default().BucketKey {
		kept := before
		kept.Kept = "changed since bucketbridge set it"
		return Result{Before: before, After: kept, Warnings: []Warning{warn(WarningDefaultEncryptionChanged,
			"source bucket %s's default encryption is no longer the SSE-KMS with %s and S3 Bucket Keys that bucketbridge set, so it was left as it is now (%s), not restored to what it was before (%s)",
			src.Bucket, src.KMSKeyARN, describeEncryption(current), describeEncryption(facts.SourceEncryptionBefore))}}, nil
	}
	prev := facts.SourceEncryptionBefore
	if prev == nil {
		_, err := run.Source.S3.DeleteBucketEncryption(ctx, &s3.DeleteBucketEncryptionInput{Bucket: aws.String(src.Bucket), ExpectedBucketOwner: aws.String(src.AccountID)})
		if err != nil && !IsNotFound(err) {
			return Result{}, classify(err, call{Account: src.AccountID, Action: "s3:PutEncryptionConfiguration", Resource: src.Bucket})
		}
	} else if err := putBucketEncryption(ctx, run.Source, src, *prev); err != nil {
		return Result{}, err
	}
	got, err := readBucketEncryption(ctx, run.Source, src)
	if err != nil {
		return Result{}, err
	}
	if usesSourceKey(got, src.KMSKeyARN) {
		return Result{}, fmt.Errorf("confirm default encryption of %s: it still reads SSE-KMS with %s", src.Bucket, src.KMSKeyARN)
	}
	return Result{Changed: true, Before: before, After: encryptionState{Bucket: src.Bucket, Configuration: got}}, nil
}

// describeEncryption names a default encryption for a human.
func describeEncryption(c *policy.BucketEncryption) string {
	if c == nil {
		return "none"
	}
	d := c.Default()
	switch {
	case d.IsKMS():
		return fmt.Sprintf("%s with key %s, Bucket Keys %v", d.Algorithm, cmp.Or(d.KMSKeyID, "aws/s3"), d.BucketKey)
	case d.Algorithm == policy.SSES3:
		return "SSE-S3"
	}
	return cmp.Or(d.Algorithm, "none")
}
