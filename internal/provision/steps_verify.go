package provision

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
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
	// firstPoll is the shortest wait between canary status reads.
	firstPoll = 10 * time.Millisecond
	// CanaryDir is where, under the rule's prefix, canary objects are put.
	CanaryDir = "bucketbridge-canary/"
	// canaryCleanupTimeout bounds deleting canary versions after the step's
	// context is done.
	canaryCleanupTimeout = 30 * time.Second
	// canaryRetention is the GOVERNANCE retention a canary gets in a source
	// bucket with Object Lock. An explicit retention overrides the bucket's
	// default (which may be COMPLIANCE, for years), and governance mode
	// yields to s3:BypassGovernanceRetention, so verify can delete the
	// canary and its replica at once; should that be denied, they are
	// deletable an hour later. S3 User Guide, "Locking objects with Object
	// Lock" (retention modes, bypassing governance mode):
	// https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html
	canaryRetention = time.Hour
	// maxCanaryRetryWait caps the wait before a canary that failed while
	// permissions may still be propagating is written again.
	maxCanaryRetryWait = 30 * time.Second
)

// canaryKind says how a canary object is written.
type canaryKind string

const (
	// canarySSEKMS is written with SSE-KMS and KA, as applications that
	// name the key write.
	canarySSEKMS canaryKind = "sse-kms"
	// canaryDefault is written without encryption headers, as most
	// applications write: X's default encryption decides what it gets.
	canaryDefault canaryKind = "default-encryption"
)

// canaryAttempt is one canary object verify wrote, and what became of it.
type canaryAttempt struct {
	Kind    canaryKind `json:"kind"`
	Attempt int        `json:"attempt"`
	Object  string     `json:"object"`
	// VersionID is the canary's version: every attempt writes a new one.
	VersionID string `json:"version_id,omitempty"`
	// Encryption and KMSKey are what the canary got in X.
	Encryption string `json:"encryption,omitempty"`
	KMSKey     string `json:"kms_key,omitempty"`
	// RetainUntil is the GOVERNANCE retention it was written with (X has
	// Object Lock).
	RetainUntil *time.Time `json:"retain_until,omitempty"`
	// Status is its last ReplicationStatus.
	Status string `json:"status"`
	// ReplicaEncryption and ReplicaKMSKey are what its replica got in Y.
	ReplicaEncryption string `json:"replica_encryption,omitempty"`
	ReplicaKMSKey     string `json:"replica_kms_key,omitempty"`
	LatencyMS         int64  `json:"latency_ms,omitempty"`
	// Outcome says what verify made of it.
	Outcome string `json:"outcome"`

	latency time.Duration
}

// leftVersion is a canary version Object Lock kept from being deleted.
type leftVersion struct {
	Bucket    string `json:"bucket"`
	Key       string `json:"key"`
	VersionID string `json:"version_id"`
}

// verifyRecord is what verify records.
type verifyRecord struct {
	// Canaries are every canary object written, in the order they ended.
	Canaries []canaryAttempt `json:"canaries"`
	// PermissionsWrittenAt is the request's last write of a document the
	// canary depends on: a canary that fails within BB_PROPAGATION_TIMEOUT
	// of it is written again.
	PermissionsWrittenAt *time.Time `json:"permissions_written_at,omitempty"`
	// LeftBehind are canary versions Object Lock kept.
	LeftBehind []leftVersion `json:"left_behind,omitempty"`
	// Skipped says why no canary was written.
	Skipped string `json:"skipped,omitempty"`
}

// CanaryKey is the key of a request's canary objects: inside the rule's
// prefix, so that the rule selects them. Each canary is a new version of it.
func CanaryKey(r Replication) string { return r.Rule.Prefix + CanaryDir + r.ID }

// verify proves replication works (docs/ARCHITECTURE.md, The steps):
// PutBucketReplication checks neither the role's permissions nor the keys,
// so only objects that replicate show the documents are right. Two canary
// objects are put into X, one with SSE-KMS and KA, one without encryption
// headers (which X's default encryption decides), and each must reach
// COMPLETED; a replica of an SSE-KMS canary must be encrypted with KB, and
// what the other's replica got is recorded. A canary that goes FAILED
// within the propagation timeout of the request's last write of a
// permission is written again, with backoff: S3 may not see a new role or
// policy for seconds, and never retries an object that failed. Canary
// versions are deleted from both buckets whatever happens; under Object
// Lock the canaries carry a short GOVERNANCE retention, deleted with a
// bypass (see canaryRetention).
func verify(ctx context.Context, run *Run) (Result, error) {
	if !run.Replication.Verify {
		return Result{Skipped: true}, nil
	}
	facts := run.Facts()
	src, dst := run.Replication.Source, run.Replication.Destination
	rec := verifyRecord{PermissionsWrittenAt: facts.PermissionsWrittenAt}
	if !facts.SourceObjectLock && facts.DestinationLockDefault == string(s3types.ObjectLockRetentionModeCompliance) {
		// A replica of an object without retention takes Y's default
		// retention, and nothing deletes an object under COMPLIANCE
		// retention before it ends; X has no Object Lock, so the canary
		// cannot carry a retention of its own that would override it.
		rec.Skipped = "destination bucket " + dst.Bucket + " has a COMPLIANCE default retention and source bucket " + src.Bucket + " has no Object Lock"
		return Result{Skipped: true, After: rec, Warnings: []Warning{warn(WarningCanarySkipped,
			"verify wrote no canary object: destination bucket %s has Object Lock with a COMPLIANCE default retention, which its replica would take and which nothing can lift before it ends, and source bucket %s has no Object Lock, so the canary cannot carry a shorter retention of its own. Replication is provisioned but not proven: write a test object under prefix %q yourself and check its replication status",
			dst.Bucket, src.Bucket, run.Replication.Rule.Prefix)}}, nil
	}
	v := &verifier{run: run, key: CanaryKey(run.Replication), facts: facts, first: run.firstTry(StepVerify)}
	// The two canaries replicate at once; the first to fail stops the
	// other, and its error is the step's.
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		err  error
		once sync.Once
		wg   sync.WaitGroup
	)
	for _, kind := range []canaryKind{canarySSEKMS, canaryDefault} {
		wg.Go(func() {
			if e := v.prove(pctx, kind); e != nil {
				once.Do(func() { err = e; stop() })
			}
		})
	}
	wg.Wait()
	rec.Canaries = v.attempts()

	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), canaryCleanupTimeout)
	defer cancel()
	sides := []struct {
		acct   *Account
		side   Side
		locked bool
	}{{run.Source, src, facts.SourceObjectLock}, {run.Destination, dst, facts.DestinationObjectLock}}
	// The first attempt ever, when its puts all answered, knows every
	// version there can be (a replica keeps its source's version ID);
	// after an earlier attempt (crashed ones too) or a put whose outcome
	// is unknown, a listing finds them.
	var known []string
	if v.first {
		known = v.written()
	}
	left := make([][]leftVersion, len(sides))
	errs := make([]error, len(sides))
	inParallel(len(sides), func(i int) error {
		left[i], errs[i] = deleteCanary(cctx, sides[i].acct, sides[i].side, v.key, sides[i].locked, known)
		return nil
	})
	cerr := errors.Join(errs...)
	rec.LeftBehind = append(left[0], left[1]...)
	var warnings []Warning
	for _, l := range rec.LeftBehind {
		warnings = append(warnings, warn(WarningCanaryLeft,
			"canary object s3://%s/%s version %s could not be deleted: Object Lock keeps it (deleting it needs s3:BypassGovernanceRetention, and a COMPLIANCE retention cannot be lifted). Delete that version once its retention ends (aws s3api head-object shows ObjectLockRetainUntilDate)",
			l.Bucket, l.Key, l.VersionID))
	}
	var perm *PermanentError
	switch {
	case err != nil && cerr != nil && errors.As(err, &perm):
		return Result{After: rec, Warnings: warnings}, Permanent(perm.Detail+fmt.Sprintf("; the canary versions of %s could not all be deleted (%v): delete them by hand", v.key, cerr), perm.Err)
	case err != nil:
		return Result{After: rec, Warnings: warnings}, err
	case cerr != nil:
		return Result{After: rec, Warnings: warnings}, fmt.Errorf("delete canary %s: %w", v.key, cerr)
	}
	if l := v.latency(); l > 0 {
		run.Learn(func(f *Facts) { f.CanaryLatency = l })
	}
	// Nothing the canaries wrote remains, unless Object Lock kept it.
	return Result{Changed: len(rec.LeftBehind) > 0, After: rec, Warnings: warnings}, nil
}

// verifier runs one request's canaries.
type verifier struct {
	run   *Run
	key   string
	facts Facts
	// first: no attempt of verify ran before this one.
	first bool

	mu   sync.Mutex
	done []canaryAttempt
	// versions are the canary versions put; unsure: a put failed, and may
	// have written a version nobody saw.
	versions []string
	unsure   bool
}

// wrote notes a put's outcome: the version it wrote, or "" when it failed.
func (v *verifier) wrote(version string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if version == "" {
		v.unsure = true
		return
	}
	v.versions = append(v.versions, version)
}

// written returns the canary versions put, or nil when a put failed and
// there may be others.
func (v *verifier) written() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.unsure {
		return nil
	}
	return append([]string{}, v.versions...)
}

func (v *verifier) record(a canaryAttempt) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.done = append(v.done, a)
}

func (v *verifier) attempts() []canaryAttempt {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]canaryAttempt{}, v.done...)
}

// latency is how long the SSE-KMS canary that replicated took.
func (v *verifier) latency() time.Duration {
	for _, a := range v.attempts() {
		if a.Kind == canarySSEKMS && a.Status == string(s3types.ReplicationStatusCompleted) {
			return a.latency
		}
	}
	return 0
}

// canaryFailed is a canary S3 marked FAILED; Detail says what to check.
type canaryFailed struct{ Detail string }

func (e *canaryFailed) Error() string { return e.Detail }

// prove writes canaries of one kind until one replicates, or one fails
// once the propagation window of the request's last permission write is
// over, or one does not replicate in time.
func (v *verifier) prove(ctx context.Context, kind canaryKind) error {
	cfg := v.run.Config.withDefaults()
	wait := cfg.PollInterval
	for n := 1; ; n++ {
		a, err := v.once(ctx, kind, n)
		var failed *canaryFailed
		if errors.As(err, &failed) && v.run.propagating(v.facts.PermissionsWrittenAt) {
			a.Outcome = fmt.Sprintf("FAILED within %s (BB_PROPAGATION_TIMEOUT) of the last write of a permission: written again", cfg.PropagationTimeout)
			v.record(a)
			if err := sleepCtx(ctx, wait); err != nil {
				return err
			}
			wait = min(2*wait, maxCanaryRetryWait)
			continue
		}
		switch {
		case err == nil:
			a.Outcome = "replicated"
		case failed != nil:
			a.Outcome = "FAILED"
		default:
			a.Outcome = "error: " + err.Error()
		}
		v.record(a)
		if failed != nil {
			detail := failed.Detail
			if n > 1 {
				detail = fmt.Sprintf("%s (the %s canary failed %d times; the last failure came more than %s, BB_PROPAGATION_TIMEOUT, after the last permission was written, so it is not waiting for IAM)", detail, kind, n, cfg.PropagationTimeout)
			}
			return Permanent(detail, nil)
		}
		return err
	}
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// once puts one canary object of kind and waits for its replication.
func (v *verifier) once(ctx context.Context, kind canaryKind, n int) (canaryAttempt, error) {
	run := v.run
	src, dst := run.Replication.Source, run.Replication.Destination
	object := "s3://" + src.Bucket + "/" + v.key
	a := canaryAttempt{Kind: kind, Attempt: n, Object: object}
	in := &s3.PutObjectInput{
		Bucket:              aws.String(src.Bucket),
		Key:                 aws.String(v.key),
		ExpectedBucketOwner: aws.String(src.AccountID),
		Body:                bytes.NewReader([]byte("bucketbridge replication canary (" + string(kind) + ") for request " + run.Replication.ID + "\n")),
		ContentType:         aws.String("text/plain"),
		// S3 wants a checksum of every object put with Object Lock
		// parameters (S3 API Reference, PutObject); one always is harmless.
		ChecksumAlgorithm: s3types.ChecksumAlgorithmCrc32,
	}
	action := "s3:PutObject"
	if kind == canarySSEKMS {
		in.ServerSideEncryption, in.SSEKMSKeyId = s3types.ServerSideEncryptionAwsKms, aws.String(src.KMSKeyARN)
		action += " (and kms:GenerateDataKey with " + src.KMSKeyARN + ")"
	}
	if v.facts.SourceObjectLock {
		until := run.now().Add(canaryRetention).UTC().Truncate(time.Second)
		in.ObjectLockMode, in.ObjectLockRetainUntilDate = s3types.ObjectLockModeGovernance, aws.Time(until)
		a.RetainUntil = &until
		action += " and s3:PutObjectRetention"
	}
	start := run.now()
	put, err := run.Source.S3.PutObject(ctx, in)
	if err != nil {
		v.wrote("")
		return a, classify(err, call{Account: src.AccountID, Action: action, Resource: object})
	}
	v.wrote(aws.ToString(put.VersionId))
	a.VersionID, a.Encryption, a.KMSKey = aws.ToString(put.VersionId), string(put.ServerSideEncryption), aws.ToString(put.SSEKMSKeyId)
	cfg := run.Config.withDefaults()
	timeout, interval := cfg.VerifyTimeout, cfg.PollInterval
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Each wait between reads is a quarter of the time spent polling so far
	// (at least firstPoll, at most interval): the recorded latency is at
	// most a quarter above the real one whether replication takes 50 ms or
	// minutes, and reads thin out as it takes longer.
	polling := time.Now()
	timer := time.NewTimer(min(firstPoll, interval))
	defer timer.Stop()
	var lastErr error
	for {
		// The replica is looked for at the same time as the canary's
		// status, so a canary that replicated is proven in one round trip.
		replica := prefetch(func() (*s3.HeadObjectOutput, error) { return v.headReplica(wctx, put.VersionId) })
		head, err := run.Source.S3.HeadObject(wctx, &s3.HeadObjectInput{
			Bucket: aws.String(src.Bucket), Key: aws.String(v.key), VersionId: put.VersionId, ExpectedBucketOwner: aws.String(src.AccountID),
		})
		switch {
		case err != nil && wctx.Err() == nil:
			if c := classify(err, call{Account: src.AccountID, Action: "s3:GetObject", Resource: object}); IsPermanent(c) {
				return a, c
			}
			lastErr = err
		case err == nil:
			a.Status = string(head.ReplicationStatus)
			switch head.ReplicationStatus {
			case s3types.ReplicationStatusFailed:
				return a, &canaryFailed{Detail: v.failedDetail(kind, a)}
			case s3types.ReplicationStatusCompleted:
				done, err := v.checkReplica(replica, &a)
				if err != nil {
					return a, err
				}
				if done {
					a.latency = run.now().Sub(start)
					a.LatencyMS = a.latency.Milliseconds()
					return a, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return a, ctx.Err()
		case <-wctx.Done():
			status := cmp.Or(a.Status, "unknown")
			return a, Permanent(fmt.Sprintf("the canary object %s (%s, version %s) did not replicate to bucket %s within %s (last status %s): S3 may be slow (raise BB_VERIFY_TIMEOUT), or an object written before every permission was in place may be stuck; check the role's policies, KB's and %s's policies, and S3 replication metrics", object, kind, a.VersionID, dst.Bucket, timeout, status, dst.Bucket), lastErr)
		case <-timer.C:
			timer.Reset(min(max(firstPoll, time.Since(polling)/4), interval))
		}
	}
}

// failedDetail tells a human what to check when S3 marked a canary FAILED.
func (v *verifier) failedDetail(kind canaryKind, a canaryAttempt) string {
	src, dst := v.run.Replication.Source, v.run.Replication.Destination
	what := "written with SSE-KMS and the source key"
	if kind == canaryDefault {
		what = "written without encryption headers, so with " + src.Bucket + "'s default encryption (" + cmp.Or(a.Encryption, "none") + " " + a.KMSKey + ")"
	}
	return fmt.Sprintf("the canary object %s (%s, version %s) did not replicate to bucket %s in account %s: S3 marked it FAILED. Check, in this order: that role %s trusts s3.amazonaws.com and holds bucketbridge's policies (%s and any %s… managed policies); that KB's key policy (%s) lets the role kms:Encrypt and kms:GenerateDataKey; that %s's bucket policy lets the role s3:ReplicateObject and s3:ObjectOwnerOverrideToBucketOwner; that KA's key policy lets the role kms:Decrypt; that versioning is Enabled on both buckets and both keys are enabled. S3's replication failure events (s3:Replication:OperationFailedReplication) name the exact reason",
		a.Object, what, a.VersionID, dst.Bucket, dst.AccountID, input(v.run).RoleARN(), policy.RoleInlinePolicyName, policy.PolicyNamePrefix, dst.KMSKeyARN, dst.Bucket)
}

// headReplica reads the replica of a canary version in Y with B's session.
func (v *verifier) headReplica(ctx context.Context, versionID *string) (*s3.HeadObjectOutput, error) {
	dst := v.run.Replication.Destination
	return v.run.Destination.S3.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(dst.Bucket), Key: aws.String(v.key), VersionId: versionID, ExpectedBucketOwner: aws.String(dst.AccountID),
	})
}

// checkReplica judges the replica read in Y; false when it is not visible
// yet. The replica of an SSE-KMS canary must be encrypted with KB; what
// another canary's replica got is recorded (S3 replicates an SSE-S3 object
// as SSE-S3).
func (v *verifier) checkReplica(replica *pending[*s3.HeadObjectOutput], a *canaryAttempt) (bool, error) {
	dst := v.run.Replication.Destination
	object := "s3://" + dst.Bucket + "/" + v.key
	head, err := replica.get()
	switch {
	case IsNotFound(err):
		return false, nil
	case err != nil:
		if c := classify(err, call{Account: dst.AccountID, Action: "s3:GetObject", Resource: object}); IsPermanent(c) {
			return false, c
		}
		return false, nil
	}
	a.ReplicaEncryption, a.ReplicaKMSKey = string(head.ServerSideEncryption), aws.ToString(head.SSEKMSKeyId)
	kmsSource := a.Encryption == string(s3types.ServerSideEncryptionAwsKms) || a.Encryption == string(s3types.ServerSideEncryptionAwsKmsDsse)
	if kmsSource && (!strings.HasPrefix(a.ReplicaEncryption, string(s3types.ServerSideEncryptionAwsKms)) || !sameKey(a.ReplicaKMSKey, dst.KMSKeyARN)) {
		return false, Permanent(fmt.Sprintf("the replica %s of the %s canary (version %s) is encrypted with %s %s, not with the destination key %s: check the rule's ReplicaKmsKeyID and %s's default encryption",
			object, a.Kind, a.VersionID, cmp.Or(a.ReplicaEncryption, "no SSE"), a.ReplicaKMSKey, dst.KMSKeyARN, dst.Bucket), nil)
	}
	return true, nil
}

// sameKey compares a key ID or ARN with a key ARN.
func sameKey(got, arn string) bool {
	return got == arn || got != "" && strings.HasSuffix(arn, "/"+got)
}

// deleteCanary deletes the versions of the canary key: those in known
// when the caller knows every one there can be, else every version and
// delete marker a listing finds. Versions are deleted all at once.
// In a bucket with Object Lock it bypasses governance retention; a version
// Object Lock still keeps (a COMPLIANCE retention, a legal hold, or a
// bypass that is denied) is returned as left behind, not as an error.
func deleteCanary(ctx context.Context, acct *Account, side Side, key string, objectLock bool, known []string) ([]leftVersion, error) {
	if known != nil {
		return deleteVersions(ctx, acct, side, key, objectLock, known)
	}
	var left []leftVersion
	in := &s3.ListObjectVersionsInput{Bucket: aws.String(side.Bucket), Prefix: aws.String(key), ExpectedBucketOwner: aws.String(side.AccountID)}
	for {
		out, err := acct.S3.ListObjectVersions(ctx, in)
		if IsNotFound(err) {
			return left, nil
		}
		if err != nil {
			return left, fmt.Errorf("list canary versions in %s: %w", side.Bucket, err)
		}
		var ids []string
		for _, v := range out.Versions {
			if aws.ToString(v.Key) == key {
				ids = append(ids, aws.ToString(v.VersionId))
			}
		}
		for _, m := range out.DeleteMarkers {
			if aws.ToString(m.Key) == key {
				ids = append(ids, aws.ToString(m.VersionId))
			}
		}
		kept, err := deleteVersions(ctx, acct, side, key, objectLock, ids)
		left = append(left, kept...)
		if err != nil {
			return left, err
		}
		if !aws.ToBool(out.IsTruncated) {
			return left, nil
		}
		in.KeyMarker, in.VersionIdMarker = out.NextKeyMarker, out.NextVersionIdMarker
	}
}

// deleteVersions deletes versions of key at once; one already gone is
// fine. It returns the versions Object Lock kept.
func deleteVersions(ctx context.Context, acct *Account, side Side, key string, objectLock bool, ids []string) ([]leftVersion, error) {
	kept := make([]bool, len(ids))
	err := inParallel(len(ids), func(i int) error {
		del := &s3.DeleteObjectInput{Bucket: aws.String(side.Bucket), Key: aws.String(key), VersionId: aws.String(ids[i]), ExpectedBucketOwner: aws.String(side.AccountID)}
		if objectLock {
			del.BypassGovernanceRetention = aws.Bool(true)
		}
		_, err := acct.S3.DeleteObject(ctx, del)
		switch {
		case err == nil || IsNotFound(err):
		case objectLock && (errorCode(err) == "AccessDenied" || httpStatus(err) == http.StatusForbidden):
			kept[i] = true
		default:
			return fmt.Errorf("delete canary version %s in %s: %w", ids[i], side.Bucket, err)
		}
		return nil
	})
	var left []leftVersion
	for i, k := range kept {
		if k {
			left = append(left, leftVersion{Bucket: side.Bucket, Key: key, VersionID: ids[i]})
		}
	}
	return left, err
}

// verifyTimeout gives verify the time the canaries may take to replicate,
// and to be written again while permissions propagate, on top of the time
// its calls take.
func verifyTimeout(c StepConfig) time.Duration {
	return c.StepTimeout + c.VerifyTimeout + c.PropagationTimeout + maxCanaryRetryWait
}
