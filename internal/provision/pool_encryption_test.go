package provision_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/bucketbridge/bucketbridge/internal/awsfake"
	"github.com/bucketbridge/bucketbridge/internal/policy"
	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
)

// These tests run the real step tables through the real worker pool over
// Postgres and the fake AWS, with the demo world's three source buckets:
// demo-source (SSE-KMS with its key and S3 Bucket Keys), demo-source-sse-s3
// (SSE-S3, AWS's default) and demo-source-other-key (SSE-KMS with another
// key); and with Object Lock on either side.

// canaryRec is one canary attempt as verify records it.
type canaryRec struct {
	Kind              string     `json:"kind"`
	Attempt           int        `json:"attempt"`
	VersionID         string     `json:"version_id"`
	Encryption        string     `json:"encryption"`
	KMSKey            string     `json:"kms_key"`
	RetainUntil       *time.Time `json:"retain_until"`
	Status            string     `json:"status"`
	ReplicaEncryption string     `json:"replica_encryption"`
	ReplicaKMSKey     string     `json:"replica_kms_key"`
	Outcome           string     `json:"outcome"`
}

// verifyRec is verify's record.
type verifyRec struct {
	Canaries   []canaryRec `json:"canaries"`
	LeftBehind []struct {
		Bucket, Key string
	} `json:"left_behind"`
	Skipped string `json:"skipped"`
}

func verifyRecordOf(t *testing.T, st *store.Store, id string) verifyRec {
	t.Helper()
	var v verifyRec
	after := stepRecords(t, st, id, provision.PhaseProvision)[provision.StepVerify].After
	if err := json.Unmarshal(after, &v); err != nil {
		t.Fatalf("verify's record %s: %v", after, err)
	}
	return v
}

// replicated returns the canary of kind that replicated.
func (v verifyRec) replicated(t *testing.T, kind string) canaryRec {
	t.Helper()
	for _, c := range v.Canaries {
		if c.Kind == kind && c.Status == string(s3types.ReplicationStatusCompleted) {
			return c
		}
	}
	t.Fatalf("no %s canary replicated: %+v", kind, v.Canaries)
	return canaryRec{}
}

// codes lists the codes of a request's warnings.
func codes(ws []provision.Warning) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.Step+":"+w.Code)
	}
	return out
}

// defaultEncryption reads a bucket's default encryption.
func (e *engineEnv) defaultEncryption(t *testing.T, side provision.Side) policy.DefaultEncryption {
	t.Helper()
	out, err := e.cloud.S3(side.AccountID, side.Region).GetBucketEncryption(context.Background(), &s3.GetBucketEncryptionInput{Bucket: aws.String(side.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	r := out.ServerSideEncryptionConfiguration.Rules[0]
	d := policy.DefaultEncryption{Algorithm: string(r.ApplyServerSideEncryptionByDefault.SSEAlgorithm), BucketKey: aws.ToBool(r.BucketKeyEnabled)}
	d.KMSKeyID = aws.ToString(r.ApplyServerSideEncryptionByDefault.KMSMasterKeyID)
	return d
}

// TestEngineComparesTheSourceDefaultEncryption: what objects written
// without encryption headers get decides the request: SSE-KMS with the
// source key replicates under the destination key with no warning; SSE-S3
// succeeds with a warning that such objects replicate as SSE-S3 (their
// canary's replica says so), unless the request sets the default, which
// deprovisioning restores; SSE-KMS with another key fails at inspection,
// naming both keys and both fixes, and deprovisions without touching AWS.
func TestEngineComparesTheSourceDefaultEncryption(t *testing.T) {
	t.Parallel()
	sseS3 := policy.DefaultEncryption{Algorithm: policy.SSES3}
	for _, tt := range []struct {
		name         string
		bucket       string
		set          bool
		wantState    provision.State
		wantWarnings []string
		// wantDefaultReplica is what the replica of the canary written
		// without encryption headers gets.
		wantDefaultReplica string
		// wantDuring and wantAfter are X's default encryption while the
		// request holds it and after its removal.
		wantDuring, wantAfter policy.DefaultEncryption
	}{
		{name: "SSE-KMS with the source key", bucket: awsfake.DemoSourceBucket, wantState: provision.StateSucceeded,
			wantDefaultReplica: "aws:kms",
			wantDuring:         policy.DefaultEncryption{Algorithm: policy.SSEKMS, KMSKeyID: awsfake.DemoSourceKey, BucketKey: true},
			wantAfter:          policy.DefaultEncryption{Algorithm: policy.SSEKMS, KMSKeyID: awsfake.DemoSourceKey, BucketKey: true}},
		{name: "SSE-S3", bucket: awsfake.DemoSourceSSES3Bucket, wantState: provision.StateSucceeded,
			wantWarnings:       []string{provision.StepInspectSource + ":" + provision.WarningSourceDefaultSSES3},
			wantDefaultReplica: "AES256", wantDuring: sseS3, wantAfter: sseS3},
		{name: "SSE-S3 set to SSE-KMS with the source key", bucket: awsfake.DemoSourceSSES3Bucket, set: true, wantState: provision.StateSucceeded,
			wantDefaultReplica: "aws:kms",
			wantDuring:         policy.DefaultEncryption{Algorithm: policy.SSEKMS, KMSKeyID: awsfake.DemoSourceKey, BucketKey: true},
			wantAfter:          sseS3},
		{name: "SSE-KMS with another key", bucket: awsfake.DemoSourceOtherKeyBucket, wantState: provision.StateFailed,
			wantDuring: policy.DefaultEncryption{Algorithm: policy.SSEKMS, KMSKeyID: awsfake.DemoSourceOtherKey},
			wantAfter:  policy.DefaultEncryption{Algorithm: policy.SSEKMS, KMSKeyID: awsfake.DemoSourceOtherKey}},
		{name: "SSE-KMS with another key, even when asked to set the default", bucket: awsfake.DemoSourceOtherKeyBucket, set: true, wantState: provision.StateFailed,
			wantDuring: policy.DefaultEncryption{Algorithm: policy.SSEKMS, KMSKeyID: awsfake.DemoSourceOtherKey},
			wantAfter:  policy.DefaultEncryption{Algorithm: policy.SSEKMS, KMSKeyID: awsfake.DemoSourceOtherKey}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEngineEnv(t)
			spec := demoSpec()
			spec.Source.Bucket, spec.SetSourceDefaultEncryption = tt.bucket, tt.set
			r := e.submit(t, spec)
			e.startEngine(t, e.st, provision.PoolConfig{Workers: 2})
			got := waitEnd(t, e.st, r.ID, tt.wantState)
			if diff := cmpStrings(tt.wantWarnings, codes(got.Warnings)); diff != "" {
				t.Errorf("warnings %+v (-want +got):\n%s", got.Warnings, diff)
			}
			for _, w := range got.Warnings {
				if w.Phase != provision.PhaseProvision || !strings.Contains(w.Message, "SSE-S3") || !strings.Contains(w.Message, "set_source_default_encryption") {
					t.Errorf("warning %+v does not say the objects replicate as SSE-S3 and how to change it", w)
				}
			}
			if d := e.defaultEncryption(t, spec.Source); d != tt.wantDuring {
				t.Errorf("default encryption of %s while provisioned: %+v, want %+v", spec.Source.Bucket, d, tt.wantDuring)
			}
			if tt.wantState == provision.StateFailed {
				var problem struct{ Detail, Step string }
				if err := json.Unmarshal(got.LastError, &problem); err != nil {
					t.Fatal(err)
				}
				for _, want := range []string{provision.StepInspectSource, awsfake.DemoSourceOtherKey, awsfake.DemoSourceKey, "put-bucket-encryption", "source.kms_key_arn"} {
					if !strings.Contains(problem.Step+" "+problem.Detail, want) {
						t.Errorf("last_error %s does not mention %q", got.LastError, want)
					}
				}
			} else {
				e.checkNoCanaryUnder(t, spec)
				v := verifyRecordOf(t, e.st, r.ID)
				if c := v.replicated(t, "sse-kms"); c.ReplicaEncryption != "aws:kms" || c.ReplicaKMSKey != awsfake.DemoDestinationKey {
					t.Errorf("replica of the SSE-KMS canary: %s %s, want aws:kms %s", c.ReplicaEncryption, c.ReplicaKMSKey, awsfake.DemoDestinationKey)
				}
				c := v.replicated(t, "default-encryption")
				if c.ReplicaEncryption != tt.wantDefaultReplica {
					t.Errorf("replica of the canary written without encryption headers: %q (source %q), want %q", c.ReplicaEncryption, c.Encryption, tt.wantDefaultReplica)
				}
			}

			e.deprovision(t, r.ID)
			waitEnd(t, e.st, r.ID, provision.StateDeprovisioned)
			if d := e.defaultEncryption(t, spec.Source); d != tt.wantAfter {
				t.Errorf("default encryption of %s after deprovisioning: %+v, want %+v", spec.Source.Bucket, d, tt.wantAfter)
			}
			e.checkClean(t, spec)
		})
	}
}

// cmpStrings compares two lists of strings, nil and empty alike.
func cmpStrings(want, got []string) string {
	if len(want) == 0 && len(got) == 0 {
		return ""
	}
	if slices.Equal(want, got) {
		return ""
	}
	b, _ := json.Marshal(map[string][]string{"want": want, "got": got})
	return string(b)
}

// TestEngineSharesTheSourceDefaultEncryption: several requests from one
// SSE-S3 bucket that ask for the source key as its default set it once
// between them, and it is restored to SSE-S3 only when the last of them is
// deprovisioned, whether they leave one by one or all at once.
func TestEngineSharesTheSourceDefaultEncryption(t *testing.T) {
	t.Parallel()
	for _, atOnce := range []bool{false, true} {
		name := "one by one"
		if atOnce {
			name = "all at once"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEngineEnv(t)
			var ids []string
			var specs []provision.Spec
			for _, p := range []string{"a/", "b/", "c/"} {
				s := demoSpec()
				s.Source.Bucket, s.SetSourceDefaultEncryption, s.Rule.Prefix = awsfake.DemoSourceSSES3Bucket, true, p
				specs = append(specs, s)
				ids = append(ids, e.submit(t, s).ID)
			}
			e.startEngine(t, e.st, provision.PoolConfig{Workers: 3})
			set := 0
			for _, id := range ids {
				r := waitEnd(t, e.st, id, provision.StateSucceeded)
				if len(r.Warnings) != 0 {
					t.Errorf("%s warns %+v", id, r.Warnings)
				}
				if stepRecords(t, e.st, id, provision.PhaseProvision)[provision.StepSetSourceDefaultEncryption].Changed {
					set++
				}
			}
			if set != 1 {
				t.Errorf("%d requests changed the default encryption, want exactly one", set)
			}
			src := specs[0].Source
			kmsKA := policy.DefaultEncryption{Algorithm: policy.SSEKMS, KMSKeyID: awsfake.DemoSourceKey, BucketKey: true}
			if d := e.defaultEncryption(t, src); d != kmsKA {
				t.Fatalf("default encryption while provisioned: %+v", d)
			}
			if atOnce {
				var wg sync.WaitGroup
				errs := make([]error, len(ids))
				for i, id := range ids {
					wg.Go(func() { _, errs[i] = e.st.Deprovision(context.Background(), id, "test") })
				}
				wg.Wait()
				if err := errors.Join(errs...); err != nil {
					t.Fatal(err)
				}
				for _, id := range ids {
					waitEnd(t, e.st, id, provision.StateDeprovisioned)
				}
			} else {
				for i, id := range ids {
					e.deprovision(t, id)
					waitEnd(t, e.st, id, provision.StateDeprovisioned)
					if i < len(ids)-1 {
						if d := e.defaultEncryption(t, src); d != kmsKA {
							t.Errorf("after deprovisioning %d of %d requests the default encryption is %+v, want it kept for the others", i+1, len(ids), d)
						}
					}
				}
			}
			restored := 0
			for _, id := range ids {
				if stepRecords(t, e.st, id, provision.PhaseDeprovision)[provision.StepRestoreSourceDefaultEncryption].Changed {
					restored++
				}
			}
			if d := e.defaultEncryption(t, src); d != (policy.DefaultEncryption{Algorithm: policy.SSES3}) || restored != 1 {
				t.Errorf("after deprovisioning every request: default encryption %+v, restored by %d requests; want SSE-S3, restored once", d, restored)
			}
			for _, s := range specs {
				e.checkNoCanaryUnder(t, s)
			}
			e.checkClean(t, specs[0])
		})
	}
}

// TestEngineWritesTheCanaryAgainWhilePermissionsPropagate: canaries S3
// fails right after the request wrote the role's and B's documents are
// written again, every attempt is recorded, and the request succeeds;
// after the propagation window, a FAILED canary fails the request.
func TestEngineWritesTheCanaryAgainWhilePermissionsPropagate(t *testing.T) {
	t.Parallel()
	t.Run("within the window", func(t *testing.T) {
		t.Parallel()
		e := newEngineEnv(t)
		e.cloud.Faults(srcAcct).FailReplication(3)
		r := e.submit(t, demoSpec())
		e.startEngine(t, e.st, provision.PoolConfig{Workers: 2})
		waitEnd(t, e.st, r.ID, provision.StateSucceeded)
		e.checkConverged(t, r.ID, demoSpec())
		if a := stepRecords(t, e.st, r.ID, provision.PhaseProvision)[provision.StepVerify].Attempts; a != 1 {
			t.Errorf("verify ran %d times, want once: the canary is written again within the step", a)
		}
		v := verifyRecordOf(t, e.st, r.ID)
		var failed, replicated int
		versions := map[string]bool{}
		for _, c := range v.Canaries {
			versions[c.VersionID] = true
			switch {
			case c.Status == "FAILED" && strings.Contains(c.Outcome, "written again"):
				failed++
			case c.Status == "COMPLETED":
				replicated++
			}
		}
		if failed != 3 || replicated != 2 || len(versions) != 5 {
			t.Errorf("verify recorded %+v: want 3 FAILED canaries written again and 2 that replicated, each a version of its own", v.Canaries)
		}
	})
	t.Run("after the window", func(t *testing.T) {
		t.Parallel()
		e := newEngineEnv(t)
		e.cloud.Faults(srcAcct).FailReplication(1)
		r := e.submit(t, demoSpec())
		e.startEngine(t, e.st, provision.PoolConfig{Workers: 2, StepConfig: provision.StepConfig{
			PollInterval: 20 * time.Millisecond, VerifyTimeout: 10 * time.Second, PropagationTimeout: time.Nanosecond}})
		got := waitEnd(t, e.st, r.ID, provision.StateFailed)
		if got.CurrentStep != provision.StepVerify || !strings.Contains(string(got.LastError), "FAILED") {
			t.Errorf("failed at %s with %s, want verify saying the canary FAILED", got.CurrentStep, got.LastError)
		}
		v := verifyRecordOf(t, e.st, r.ID)
		if n := len(slices.DeleteFunc(slices.Clone(v.Canaries), func(c canaryRec) bool { return c.Status != "FAILED" })); n != 1 {
			t.Errorf("verify recorded %+v, want the one FAILED canary, not written again", v.Canaries)
		}
		e.checkNoCanaryUnder(t, demoSpec())
	})
}

// TestEngineCanaryUnderObjectLock: with Object Lock on both sides (COMPLIANCE
// default retention, which nothing lifts), verify's canaries carry a short
// GOVERNANCE retention, replicate, and are deleted with a bypass, leaving
// nothing; into a destination whose GOVERNANCE default the replica takes, the
// replica is deleted with a bypass too; into a COMPLIANCE default from a
// source without Object Lock, verify writes no canary and warns.
func TestEngineCanaryUnderObjectLock(t *testing.T) {
	t.Parallel()
	lock := func(mode s3types.ObjectLockRetentionMode) *s3types.ObjectLockConfiguration {
		return &s3types.ObjectLockConfiguration{ObjectLockEnabled: s3types.ObjectLockEnabledEnabled,
			Rule: &s3types.ObjectLockRule{DefaultRetention: &s3types.DefaultRetention{Mode: mode, Days: aws.Int32(1)}}}
	}
	for _, tt := range []struct {
		name                  string
		sourceLock, destLock  *s3types.ObjectLockConfiguration
		wantSkipped           bool
		wantWarnings          []string
		wantSourceRetainUntil bool
	}{
		{name: "both locked, COMPLIANCE defaults", sourceLock: lock(s3types.ObjectLockRetentionModeCompliance),
			destLock: lock(s3types.ObjectLockRetentionModeCompliance), wantSourceRetainUntil: true},
		{name: "destination locked, GOVERNANCE default", destLock: lock(s3types.ObjectLockRetentionModeGovernance)},
		{name: "destination locked, COMPLIANCE default", destLock: lock(s3types.ObjectLockRetentionModeCompliance), wantSkipped: true,
			wantWarnings: []string{provision.StepVerify + ":" + provision.WarningCanarySkipped}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEngineEnv(t)
			spec := demoSpec()
			if tt.sourceLock != nil {
				spec.Source.Bucket = "locked-source"
				if err := e.cloud.AddBucket(srcAcct, spec.Source.Region, spec.Source.Bucket, awsfake.BucketOptions{Versioning: s3types.BucketVersioningStatusEnabled,
					KMSKey: spec.Source.KMSKeyARN, BucketKey: true, ObjectLock: tt.sourceLock}); err != nil {
					t.Fatal(err)
				}
			}
			spec.Destination.Bucket = "locked-destination"
			if err := e.cloud.AddBucket(dstAcct, spec.Destination.Region, spec.Destination.Bucket, awsfake.BucketOptions{Versioning: s3types.BucketVersioningStatusEnabled,
				KMSKey: spec.Destination.KMSKeyARN, ObjectLock: tt.destLock}); err != nil {
				t.Fatal(err)
			}
			r := e.submit(t, spec)
			e.startEngine(t, e.st, provision.PoolConfig{Workers: 2})
			got := waitEnd(t, e.st, r.ID, provision.StateSucceeded)
			if diff := cmpStrings(tt.wantWarnings, codes(got.Warnings)); diff != "" {
				t.Errorf("warnings %+v (-want +got):\n%s", got.Warnings, diff)
			}
			e.checkNoCanaryUnder(t, spec)
			v := verifyRecordOf(t, e.st, r.ID)
			rec := stepRecords(t, e.st, r.ID, provision.PhaseProvision)[provision.StepVerify]
			if tt.wantSkipped {
				if rec.Status != provision.StepSkipped || v.Skipped == "" || len(v.Canaries) != 0 {
					t.Errorf("verify %s with %+v, want skipped, saying why, with no canary", rec.Status, v)
				}
			} else {
				for _, kind := range []string{"sse-kms", "default-encryption"} {
					c := v.replicated(t, kind)
					if (c.RetainUntil != nil) != tt.wantSourceRetainUntil {
						t.Errorf("%s canary retain_until %v, want one exactly when the source has Object Lock", kind, c.RetainUntil)
					}
				}
				if len(v.LeftBehind) != 0 || rec.Changed {
					t.Errorf("verify left %+v behind (changed %v)", v.LeftBehind, rec.Changed)
				}
			}
			e.deprovision(t, r.ID)
			waitEnd(t, e.st, r.ID, provision.StateDeprovisioned)
			e.checkNoCanaryUnder(t, spec)
		})
	}
}

// TestEngineWarnsOfOverlappingForeignRules: a request whose rule selects
// keys that enabled rules of someone else's on the source bucket select too
// succeeds with a warning naming each of them, saying whether bucketbridge's
// rule now outranks it (same destination) or both replicate (another one);
// disjoint and disabled rules go unmentioned, and every foreign rule
// outlives the request.
func TestEngineWarnsOfOverlappingForeignRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEngineEnv(t)
	first := demoSpec()
	first.Rule.Prefix = "other/"
	r1 := e.submit(t, first)
	e.startEngine(t, e.st, provision.PoolConfig{Workers: 2})
	if got := waitEnd(t, e.st, r1.ID, provision.StateSucceeded); len(got.Warnings) != 0 {
		t.Errorf("the first request warns %+v", got.Warnings)
	}
	if err := e.cloud.AddBucket(dstAcct, first.Destination.Region, "foreign-archive", awsfake.BucketOptions{Versioning: s3types.BucketVersioningStatusEnabled}); err != nil {
		t.Fatal(err)
	}
	s3A := e.cloud.S3(srcAcct, first.Source.Region)
	cfg, err := s3A.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(first.Source.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	foreign := func(id, prefix, dst string, prio int32, status s3types.ReplicationRuleStatus) s3types.ReplicationRule {
		return s3types.ReplicationRule{ID: aws.String(id), Priority: aws.Int32(prio), Status: status,
			Filter:                  &s3types.ReplicationRuleFilter{Prefix: aws.String(prefix)},
			DeleteMarkerReplication: &s3types.DeleteMarkerReplication{Status: s3types.DeleteMarkerReplicationStatusDisabled},
			Destination:             &s3types.Destination{Bucket: aws.String("arn:aws:s3:::" + dst), Account: aws.String(dstAcct)}}
	}
	rc := cfg.ReplicationConfiguration
	rc.Rules = append(rc.Rules,
		foreign("team-logs", "logs/", first.Destination.Bucket, 7, s3types.ReplicationRuleStatusEnabled),
		foreign("archive-all", "", "foreign-archive", 3, s3types.ReplicationRuleStatusEnabled),
		foreign("paused-logs", "logs/", first.Destination.Bucket, 2, s3types.ReplicationRuleStatusDisabled),
		foreign("images", "images/", first.Destination.Bucket, 4, s3types.ReplicationRuleStatusEnabled))
	if _, err := s3A.PutBucketReplication(ctx, &s3.PutBucketReplicationInput{Bucket: aws.String(first.Source.Bucket), ReplicationConfiguration: rc}); err != nil {
		t.Fatal(err)
	}

	second := demoSpec()
	second.Rule.Prefix = "logs/2024/"
	r2 := e.submit(t, second)
	got := waitEnd(t, e.st, r2.ID, provision.StateSucceeded)
	want := []string{provision.StepPutReplicationRule + ":" + provision.WarningOverlappingRule, provision.StepPutReplicationRule + ":" + provision.WarningOverlappingRule}
	if diff := cmpStrings(want, codes(got.Warnings)); diff != "" {
		t.Fatalf("warnings %+v (-want +got):\n%s", got.Warnings, diff)
	}
	byRule := map[string]string{}
	for _, w := range got.Warnings {
		for _, id := range []string{"team-logs", "archive-all", "paused-logs", "images"} {
			if strings.Contains(w.Message, `"`+id+`"`) {
				byRule[id] = w.Message
			}
		}
	}
	if m := byRule["team-logs"]; !strings.Contains(m, "instead of rule") || !strings.Contains(m, `"logs/2024/"`) || !strings.Contains(m, policy.RuleID(r2.ID)) {
		t.Errorf("the warning about team-logs, same destination, says %q: want that bucketbridge's rule now applies instead, for keys under logs/2024/", m)
	}
	if m := byRule["archive-all"]; !strings.Contains(m, "both destinations") || !strings.Contains(m, "foreign-archive") {
		t.Errorf("the warning about archive-all, another destination, says %q: want that both replicate", m)
	}
	if _, ok := byRule["paused-logs"]; ok {
		t.Error("a disabled rule is warned about")
	}
	if _, ok := byRule["images"]; ok {
		t.Error("a rule of disjoint keys is warned about")
	}

	for _, id := range []string{r2.ID, r1.ID} {
		e.deprovision(t, id)
		waitEnd(t, e.st, id, provision.StateDeprovisioned)
	}
	left := e.replication(t, srcAcct, first.Source.Region, first.Source.Bucket)
	var ids []string
	for _, r := range left.Rules {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	if diff := cmpStrings([]string{"archive-all", "images", "paused-logs", "team-logs"}, ids); diff != "" {
		t.Errorf("rules left after deprovisioning both requests: %s", diff)
	}
}
