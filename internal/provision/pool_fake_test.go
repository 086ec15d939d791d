package provision_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/bucketbridge/bucketbridge/internal/awsfake"
	"github.com/bucketbridge/bucketbridge/internal/policy"
	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// These tests run the real step tables through the real worker pool, over
// real Postgres and the fake AWS, under the faults a production run meets:
// throttling and 5xx storms, IAM propagation, lost responses, a process
// killed at every step boundary, many requests on one destination, cancel
// and retry. Each ends with every document read back and compared with
// the documents of docs/ARCHITECTURE.md, counting bucketbridge's statements, principals and rules.

// engineEnv is a demo world, its own database, and the pools running on it.
type engineEnv struct {
	*fakeEnv
	st *store.Store
}

func newEngineEnv(t *testing.T) *engineEnv {
	t.Helper()
	return newSeededEngineEnv(t, 0)
}

// newSeededEngineEnv seeds the fake's rate-based faults.
func newSeededEngineEnv(t *testing.T, seed uint64) *engineEnv {
	t.Helper()
	return newEngineEnvWith(t, awsfake.Config{ReplicationDelay: 5 * time.Millisecond, Seed: seed})
}

// newEngineEnvWith builds the environment on a fake configured by cfg.
func newEngineEnvWith(t *testing.T, cfg awsfake.Config) *engineEnv {
	t.Helper()
	st := storetest.New(t)
	c := awsfake.NewWithConfig(cfg)
	c.SeedDemo("", "")
	return &engineEnv{fakeEnv: &fakeEnv{cloud: c, sessions: fakeSessions(c, awsfake.DefaultExternalID), locks: newLocks()}, st: st}
}

// startEngine runs a pool with the real step tables on ws until the test
// ends, with sessions of its own (as another process would have), and
// returns its stop function.
func (e *engineEnv) startEngine(t *testing.T, ws provision.WorkStore, cfg provision.PoolConfig) (stop func()) {
	t.Helper()
	cfg.Store = ws
	cfg.Sessions = fakeSessions(e.cloud, awsfake.DefaultExternalID)
	cfg.Steps = map[provision.Phase][]provision.StepDef{
		provision.PhaseProvision:   provision.ProvisionSteps(),
		provision.PhaseDeprovision: provision.DeprovisionSteps(),
	}
	cfg.Poll = 10 * time.Millisecond
	cfg.MaxBackoff = 20 * time.Millisecond
	if cfg.StepConfig == (provision.StepConfig{}) {
		cfg.StepConfig = provision.StepConfig{PollInterval: 20 * time.Millisecond, VerifyTimeout: 10 * time.Second}
	}
	return startPool(t, cfg)
}

func (e *engineEnv) submit(t *testing.T, s provision.Spec) provision.Replication {
	t.Helper()
	r, _, err := e.st.Create(context.Background(), provision.NewReplication{Spec: s, RequestedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *engineEnv) deprovision(t *testing.T, id string) {
	t.Helper()
	if _, err := e.st.Deprovision(context.Background(), id, "test"); err != nil {
		t.Fatalf("deprovision %s: %v", id, err)
	}
}

// waitEnd waits until the request is in state want; reaching another
// terminal state, or the deadline, fails the test at once.
func waitEnd(t *testing.T, st *store.Store, id string, want provision.State) provision.Replication {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for {
		r, err := st.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case r.State == want:
			return r
		case r.State.Terminal() || time.Now().After(deadline):
			t.Fatalf("replication %s is %s at step %q (last error %s), want %s", id, r.State, r.CurrentStep, r.LastError, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitUntil waits for cond, failing the test after a deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stepRecords returns a phase's step records by name.
func stepRecords(t *testing.T, st *store.Store, id string, phase provision.Phase) map[string]provision.Step {
	t.Helper()
	steps, err := st.Steps(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]provision.Step{}
	for _, s := range steps {
		if s.Phase == phase {
			out[s.Name] = s
		}
	}
	return out
}

// retried lists the steps of a phase that took more than one attempt.
func retried(t *testing.T, st *store.Store, id string, phase provision.Phase) []string {
	t.Helper()
	var out []string
	for name, s := range stepRecords(t, st, id, phase) {
		if s.Attempts > 1 {
			out = append(out, fmt.Sprintf("%s×%d", name, s.Attempts))
		}
	}
	slices.Sort(out)
	return out
}

// resumedAfterLostLease reports whether the timeline says another worker
// took the request over after a lease expired.
func resumedAfterLostLease(t *testing.T, st *store.Store, id string) bool {
	t.Helper()
	events, err := st.Events(context.Background(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Type == "lease" {
			return true
		}
	}
	return false
}

const (
	demoForeignStatement = `{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::demo-destination","arn:aws:s3:::demo-destination/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}`
	dstKeyAdminStatement = `{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":"kms:*","Resource":"*"}`
)

// seedBucketPolicy is the policy a destination bucket of the demo world
// starts with ("" for none), and its statements.
func seedBucketPolicy(bucket string) (string, []string) {
	if bucket == awsfake.DemoDestinationBucket {
		return awsfake.DemoDestinationPolicy, []string{demoForeignStatement}
	}
	return "", nil
}

// checkOnce fails unless exactly one statement of d carries sid and its AWS
// principals are exactly roles, each once.
func checkOnce(t *testing.T, what string, d policy.Document, sid string, roles []string) {
	t.Helper()
	p, n := principalsOf(d, sid)
	if n != 1 || !slices.Equal(sorted(p...), sorted(roles...)) {
		t.Errorf("%s: %d statements with Sid %s, principals %v; want one statement naming %v once each", what, n, sid, p, roles)
	}
}

// withoutOurs returns d without bucketbridge's statements.
func withoutOurs(d policy.Document) policy.Document {
	d.Statement = slices.DeleteFunc(slices.Clone(d.Statement), func(s policy.Statement) bool { return policy.IsOwnedSid(s.Sid) })
	return d
}

// checkConverged reads back every document of a provisioned request from
// the demo source into spec's destination and compares it with the documents of docs/ARCHITECTURE.md;
// it also counts: one statement per Sid naming the role once, the foreign
// statements once, one inline policy, one rule, no canary left behind.
func (e *engineEnv) checkConverged(t *testing.T, id string, spec provision.Spec) {
	t.Helper()
	ctx := context.Background()
	src, dst := spec.Source, spec.Destination
	roleName := policy.RoleName(src.Bucket)
	roles := []string{roleARN(src.AccountID, roleName)}
	_, foreign := seedBucketPolicy(dst.Bucket)

	bp := e.bucketPolicy(t, dst.AccountID, dst.Region, dst.Bucket)
	if bp == nil {
		t.Fatalf("%s has no bucket policy", dst.Bucket)
	}
	checkDoc(t, "bucket policy of "+dst.Bucket, *bp, doc(append(slices.Clone(foreign), wantBucketStatements(dst, roles)...)...))
	checkOnce(t, "bucket policy of "+dst.Bucket, *bp, policy.SidReplicaObjects, roles)
	checkOnce(t, "bucket policy of "+dst.Bucket, *bp, policy.SidReplicaBucket, roles)
	if len(bp.Statement) != len(foreign)+2 {
		t.Errorf("bucket policy of %s has %d statements, want %d", dst.Bucket, len(bp.Statement), len(foreign)+2)
	}
	kp := e.keyPolicy(t, dst.AccountID, dst.Region, dst.KMSKeyARN)
	checkDoc(t, "key policy of KB", kp, keyDoc(dstKeyAdminStatement, wantKeyStatement(dst, roles)))
	checkOnce(t, "key policy of KB", kp, policy.KeyStatementSid(policy.SidReplicaEncrypt, dst.Bucket), roles)
	if len(kp.Statement) != 2 {
		t.Errorf("key policy of KB has %d statements, want 2", len(kp.Statement))
	}
	checkDoc(t, "key policy of KA", e.keyPolicy(t, src.AccountID, src.Region, src.KMSKeyARN), awsfake.DefaultKeyPolicy(src.AccountID))

	iamA := e.cloud.IAM(src.AccountID)
	role, err := iamA.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(roleName)})
	if err != nil {
		t.Fatalf("get role: %v", err)
	}
	checkDoc(t, "trust policy", mustDecodeIAM(t, aws.ToString(role.Role.AssumeRolePolicyDocument)), wantTrust)
	names, err := iamA.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(roleName)})
	if want := []string{policy.RoleInlinePolicyName}; err != nil || !slices.Equal(names.PolicyNames, want) {
		t.Errorf("inline policies of %s: %v (%v), want %v", roleName, names, err, want)
	}
	rp, err := iamA.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(roleName), PolicyName: aws.String(policy.RoleInlinePolicyName)})
	if err != nil {
		t.Fatalf("get role policy: %v", err)
	}
	checkDoc(t, "role policy", mustDecodeIAM(t, aws.ToString(rp.PolicyDocument)), wantRolePolicy(src, dst, true))

	cfg := e.replication(t, src.AccountID, src.Region, src.Bucket)
	want, err := policy.ParseReplicationConfiguration([]byte(`{"Role":"` + roles[0] + `","Rules":[` + wantRule(id, 1, dst, true) + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg == nil || len(cfg.Rules) != 1 || !policy.ReplicationEqual(*cfg, want) {
		gb, _ := jsonMarshal(cfg)
		wb, _ := jsonMarshal(want)
		t.Errorf("replication of %s differs from the documents of docs/ARCHITECTURE.md:\n got %s\nwant %s", src.Bucket, gb, wb)
	}
	e.checkNoCanary(t, spec)
}

// checkNoCanary fails when a canary version is left in either bucket.
func (e *engineEnv) checkNoCanary(t *testing.T, spec provision.Spec) {
	t.Helper()
	for _, side := range []provision.Side{spec.Source, spec.Destination} {
		out, err := e.cloud.S3(side.AccountID, side.Region).ListObjectVersions(context.Background(), &s3.ListObjectVersionsInput{
			Bucket: aws.String(side.Bucket), Prefix: aws.String(provision.CanaryDir)})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Versions)+len(out.DeleteMarkers) != 0 {
			t.Errorf("bucket %s still holds %d canary versions and %d delete markers", side.Bucket, len(out.Versions), len(out.DeleteMarkers))
		}
	}
}

// checkClean checks that nothing bucketbridge added for spec remains and
// that the destination's documents are back to the seed.
func (e *engineEnv) checkClean(t *testing.T, spec provision.Spec) {
	t.Helper()
	src, dst := spec.Source, spec.Destination
	if dst.Bucket == awsfake.DemoDestinationBucket && src.Bucket == awsfake.DemoSourceBucket {
		e.checkDemoClean(t)
		return
	}
	seed, _ := seedBucketPolicy(dst.Bucket)
	switch got := e.bucketPolicy(t, dst.AccountID, dst.Region, dst.Bucket); {
	case seed == "" && got != nil:
		b, _ := jsonMarshal(got)
		t.Errorf("bucket policy of %s left behind: %s", dst.Bucket, b)
	case seed != "" && got == nil:
		t.Errorf("bucket policy of %s is gone, with its foreign statements", dst.Bucket)
	case seed != "":
		checkDoc(t, "bucket policy of "+dst.Bucket, *got, seed)
	}
	checkDoc(t, "key policy of KB", e.keyPolicy(t, dst.AccountID, dst.Region, dst.KMSKeyARN), awsfake.DefaultKeyPolicy(dst.AccountID))
	if c := e.replication(t, src.AccountID, src.Region, src.Bucket); c != nil {
		t.Errorf("%s still has a replication configuration: %+v", src.Bucket, c)
	}
	name := policy.RoleName(src.Bucket)
	if _, err := e.cloud.IAM(src.AccountID).GetRole(context.Background(), &iam.GetRoleInput{RoleName: aws.String(name)}); !provision.IsNotFound(err) {
		t.Errorf("role %s: err %v, want not found", name, err)
	}
}

// TestEngineConvergesThroughFaultStorms: with 30% of all calls in both
// accounts throttled (or failing with 5xx), provisioning and then
// deprovisioning still end in their terminal state, with documents exactly
// right; the storm really made steps retry.
func TestEngineConvergesThroughFaultStorms(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		seed  uint64
		storm func(f *awsfake.Faults)
	}{
		{"throttling", 1, func(f *awsfake.Faults) { f.ThrottleRate("*", 0.3) }},
		{"5xx", 2, func(f *awsfake.Faults) { f.Fail5xxRate("*", 0.3) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newSeededEngineEnv(t, tt.seed)
			// The test's own reads act in the accounts too: it calms the storm to read.
			storm := func(on bool) {
				for _, a := range []string{srcAcct, dstAcct} {
					e.cloud.Faults(a).Reset()
					if on {
						tt.storm(e.cloud.Faults(a))
					}
				}
			}
			storm(true)
			r := e.submit(t, demoSpec())
			e.startEngine(t, e.st, provision.PoolConfig{Workers: 2})
			waitEnd(t, e.st, r.ID, provision.StateSucceeded)
			storm(false)
			e.checkConverged(t, r.ID, demoSpec())
			again := retried(t, e.st, r.ID, provision.PhaseProvision)
			if len(again) == 0 {
				t.Error("no provisioning step was retried: the storm did not reach the steps")
			}
			t.Logf("provisioning retried %v", again)

			storm(true)
			e.deprovision(t, r.ID)
			waitEnd(t, e.st, r.ID, provision.StateDeprovisioned)
			storm(false)
			e.checkClean(t, demoSpec())
			t.Logf("deprovisioning retried %v", retried(t, e.st, r.ID, provision.PhaseDeprovision))
		})
	}
}

// TestEngineWaitsForIAMPropagation: a new role that S3 and KMS do not see
// for a while is retried within the propagation window, and the request
// succeeds. The steps ask to be retried after propagationRetryDelay (5s),
// so this test takes about that long.
func TestEngineWaitsForIAMPropagation(t *testing.T) {
	t.Parallel()
	e := newEngineEnv(t)
	e.cloud.Faults(srcAcct).RoleInvisibleFor(500 * time.Millisecond)
	r := e.submit(t, demoSpec())
	e.startEngine(t, e.st, provision.PoolConfig{Workers: 2})
	waitEnd(t, e.st, r.ID, provision.StateSucceeded)
	e.checkConverged(t, r.ID, demoSpec())
	steps := stepRecords(t, e.st, r.ID, provision.PhaseProvision)
	var waited []string
	for _, name := range []string{provision.StepUpdateDestinationKeyPolicy, provision.StepUpdateDestinationBucketPolicy, provision.StepPutReplicationRule} {
		if steps[name].Attempts > 1 {
			waited = append(waited, name)
		}
	}
	if len(waited) == 0 {
		t.Errorf("no step naming the role was retried (attempts %v): the role was never invisible to them", retried(t, e.st, r.ID, provision.PhaseProvision))
	}
	if a := steps[provision.StepEnsureReplicationRole].Attempts; a != 1 {
		t.Errorf("ensure_replication_role ran %d times, want 1", a)
	}
}

// lostResponse is a mutating call whose change is applied and whose answer
// is lost once, and the step that makes it.
type lostResponse struct {
	account, op, step string
}

// TestEngineSurvivesLostResponses: every mutating call of both phases, once
// applied with its answer lost, makes its step retry, and the request still
// converges with one of each statement, principal, rule and role, then
// deprovisions to exactly what was there before. Each case loses one
// provisioning answer and one deprovisioning answer.
func TestEngineSurvivesLostResponses(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		provision, deprovision *lostResponse
		unversioned            bool // into demo-unversioned with enable_versioning (no bucket policy there)
	}{
		{&lostResponse{srcAcct, "iam:CreateRole", provision.StepEnsureReplicationRole},
			&lostResponse{srcAcct, "iam:DeleteRole", provision.StepDeleteRole}, false},
		{&lostResponse{srcAcct, "iam:PutRolePolicy", provision.StepPutRolePolicy},
			&lostResponse{srcAcct, "iam:DeleteRolePolicy", provision.StepDeleteRolePolicy}, false},
		{&lostResponse{dstAcct, "kms:PutKeyPolicy", provision.StepUpdateDestinationKeyPolicy},
			&lostResponse{dstAcct, "kms:PutKeyPolicy", provision.StepRemoveDestinationKeyPolicy}, false},
		{&lostResponse{dstAcct, "s3:PutBucketPolicy", provision.StepUpdateDestinationBucketPolicy},
			&lostResponse{dstAcct, "s3:PutBucketPolicy", provision.StepRemoveDestinationBucketPolicy}, false},
		{&lostResponse{srcAcct, "s3:PutBucketReplication", provision.StepPutReplicationRule},
			&lostResponse{srcAcct, "s3:DeleteBucketReplication", provision.StepRemoveReplicationRule}, false},
		{&lostResponse{dstAcct, "s3:PutBucketVersioning", provision.StepEnableVersioningDestination},
			&lostResponse{dstAcct, "s3:DeleteBucketPolicy", provision.StepRemoveDestinationBucketPolicy}, true},
		{&lostResponse{srcAcct, "s3:PutObject", provision.StepVerify}, nil, false},
		{&lostResponse{dstAcct, "s3:DeleteObject", provision.StepVerify}, nil, false},
	} {
		name := tt.provision.op
		if tt.deprovision != nil {
			name += " then " + tt.deprovision.op
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEngineEnv(t)
			spec := demoSpec()
			if tt.unversioned {
				spec.Destination.Bucket, spec.EnableVersioning = awsfake.DemoUnversionedBucket, true
			}
			e.cloud.Faults(tt.provision.account).LoseResponse(tt.provision.op, 1)
			r := e.submit(t, spec)
			e.startEngine(t, e.st, provision.PoolConfig{Workers: 2})
			waitEnd(t, e.st, r.ID, provision.StateSucceeded)
			e.checkConverged(t, r.ID, spec)
			if a := stepRecords(t, e.st, r.ID, provision.PhaseProvision)[tt.provision.step].Attempts; a < 2 {
				t.Errorf("%s ran %d time(s): the lost answer of %s did not make it retry", tt.provision.step, a, tt.provision.op)
			}

			if tt.deprovision != nil {
				e.cloud.Faults(tt.deprovision.account).LoseResponse(tt.deprovision.op, 1)
			}
			e.deprovision(t, r.ID)
			waitEnd(t, e.st, r.ID, provision.StateDeprovisioned)
			e.checkClean(t, spec)
			e.checkNoCanary(t, spec)
			if tt.deprovision == nil {
				return
			}
			if a := stepRecords(t, e.st, r.ID, provision.PhaseDeprovision)[tt.deprovision.step].Attempts; a < 2 {
				t.Errorf("%s ran %d time(s): the lost answer of %s did not make it retry", tt.deprovision.step, a, tt.deprovision.op)
			}
		})
	}
}

// crashStore is a worker process that is killed (as deadStore) at the end
// of step after of phase: right after its record is written, or, with
// beforeRecord, once its AWS effects are in place but before its record is
// (the record write is lost with the process).
type crashStore struct {
	deadStore
	phase        provision.Phase
	after        string
	beforeRecord bool
}

func (c *crashStore) FinishStep(ctx context.Context, cl *provision.Claim, rec provision.StepRecord, f provision.Facts) (bool, error) {
	if err := c.check(); err != nil {
		return false, err
	}
	hit := rec.Phase == c.phase && rec.Name == c.after && rec.Status != "failed"
	if hit && c.beforeRecord {
		c.dead.Store(true)
		return false, errDead
	}
	cancel, err := c.Store.FinishStep(ctx, cl, rec, f)
	if err == nil && hit {
		c.dead.Store(true)
	}
	return cancel, err
}

// Lock fails once dead: a killed process takes no more locks.
func (c *crashStore) Lock(ctx context.Context, keys ...string) (func(), error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return c.Store.Lock(ctx, keys...)
}

// TestEngineResumesAfterACrashAtEveryStepBoundary kills the worker process
// right after each provisioning step is recorded, and, for the steps that
// write to AWS, also after the step's writes but before its record; and
// likewise at several deprovisioning steps. A second process on the same
// database takes the request over when the lease expires, resumes it
// without repeating recorded steps, and converges: one statement per Sid,
// the role once, one rule, one role (or, deprovisioning, nothing left).
func TestEngineResumesAfterACrashAtEveryStepBoundary(t *testing.T) {
	t.Parallel()
	const lease = 300 * time.Millisecond
	type boundary struct {
		phase        provision.Phase
		steps        []provision.StepDef
		index        int
		beforeRecord bool
	}
	// Every provisioning step, after its record and (when it writes) before
	// it; deprovisioning steps, some after their record, some before.
	writers := map[string]bool{
		provision.StepEnsureReplicationRole: true, provision.StepPutRolePolicy: true,
		provision.StepUpdateDestinationKeyPolicy: true, provision.StepUpdateDestinationBucketPolicy: true,
		provision.StepPutReplicationRule: true, provision.StepVerify: true,
	}
	var cases []boundary
	up, down := provision.ProvisionSteps(), provision.DeprovisionSteps()
	for i, s := range up {
		cases = append(cases, boundary{provision.PhaseProvision, up, i, false})
		if writers[s.Name] {
			cases = append(cases, boundary{provision.PhaseProvision, up, i, true})
		}
	}
	for i, s := range down {
		switch s.Name {
		case provision.StepRemoveReplicationRule, provision.StepRemoveDestinationBucketPolicy, provision.StepDeleteRolePolicy:
			cases = append(cases, boundary{provision.PhaseDeprovision, down, i, false})
		case provision.StepRemoveDestinationKeyPolicy, provision.StepDeleteRole:
			cases = append(cases, boundary{provision.PhaseDeprovision, down, i, true})
		}
	}
	for _, tt := range cases {
		after := tt.steps[tt.index]
		name := string(tt.phase) + "/after " + after.Name
		if tt.beforeRecord {
			name = string(tt.phase) + "/during " + after.Name
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEngineEnv(t)
			victim := &crashStore{phase: tt.phase, after: after.Name, beforeRecord: tt.beforeRecord}
			victim.Store = e.st
			r := e.submit(t, demoSpec())
			stopVictim := e.startEngine(t, victim, provision.PoolConfig{Workers: 2, Lease: lease, Owner: "victim"})
			if tt.phase == provision.PhaseDeprovision {
				waitEnd(t, e.st, r.ID, provision.StateSucceeded)
				e.deprovision(t, r.ID)
			}
			waitUntil(t, "the victim dies at "+after.Name, victim.dead.Load)
			// Steps of the same group still running finish their AWS calls
			// (as if the process died a moment later) but record nothing.
			stopVictim()
			if got, _ := e.st.Get(context.Background(), r.ID); got.State.Terminal() {
				t.Fatalf("the killed worker moved the request to %s", got.State)
			}
			status := stepRecords(t, e.st, r.ID, tt.phase)[after.Name].Status
			if crashed := status == "running"; crashed != tt.beforeRecord {
				t.Fatalf("at the crash %s is recorded %q", after.Name, status)
			}

			e.startEngine(t, e.st, provision.PoolConfig{Workers: 2, Lease: lease, Owner: "rescuer"})
			if tt.phase == provision.PhaseProvision {
				waitEnd(t, e.st, r.ID, provision.StateSucceeded)
				e.checkConverged(t, r.ID, demoSpec())
			} else {
				waitEnd(t, e.st, r.ID, provision.StateDeprovisioned)
				e.checkClean(t, demoSpec())
			}
			if !resumedAfterLostLease(t, e.st, r.ID) {
				t.Error("the timeline does not say the request was resumed after the lease expired")
			}
			// What was recorded before the crash is not run again; the step
			// whose record was lost is.
			recs := stepRecords(t, e.st, r.ID, tt.phase)
			for _, s := range tt.steps {
				want := 1
				switch {
				case s.Name == after.Name && tt.beforeRecord:
					want = 2
				case s.Group >= after.Group && s.Name != after.Name:
					continue
				}
				if recs[s.Name].Attempts != want {
					t.Errorf("%s ran %d times, want %d", s.Name, recs[s.Name].Attempts, want)
				}
			}
		})
	}
}

// TestEngineManyRequestsIntoOneDestination: 20 requests from 20 source
// buckets into one destination, run by 8 workers at once, each get their
// role into B's shared statements exactly once; deprovisioning all of them
// at once leaves B's documents exactly as they were seeded.
func TestEngineManyRequestsIntoOneDestination(t *testing.T) {
	t.Parallel()
	const n = 20
	ctx := context.Background()
	e := newEngineEnv(t)
	specs := make([]provision.Spec, n)
	var roles []string
	for i := range specs {
		s := demoSpec()
		s.Source.Bucket = fmt.Sprintf("fan-in-source-%02d", i)
		if err := e.cloud.AddBucket(srcAcct, s.Source.Region, s.Source.Bucket, awsfake.BucketOptions{
			Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: s.Source.KMSKeyARN}); err != nil {
			t.Fatal(err)
		}
		specs[i] = s
		roles = append(roles, roleARN(srcAcct, policy.RoleName(s.Source.Bucket)))
	}
	ids := make([]string, n)
	for i, s := range specs {
		ids[i] = e.submit(t, s).ID
	}
	e.startEngine(t, e.st, provision.PoolConfig{Workers: 8})
	for _, id := range ids {
		waitEnd(t, e.st, id, provision.StateSucceeded)
	}

	dst := specs[0].Destination
	bp := e.bucketPolicy(t, dstAcct, dst.Region, dst.Bucket)
	if bp == nil {
		t.Fatal("demo-destination has no bucket policy")
	}
	checkDoc(t, "bucket policy of demo-destination", *bp, doc(append([]string{demoForeignStatement}, wantBucketStatements(dst, sorted(roles...))...)...))
	checkOnce(t, "bucket policy", *bp, policy.SidReplicaObjects, roles)
	checkOnce(t, "bucket policy", *bp, policy.SidReplicaBucket, roles)
	if _, n := principalsOf(*bp, awsfake.DemoForeignSid); n != 1 || len(bp.Statement) != 3 {
		t.Errorf("bucket policy: %d statements, %d with Sid %s; want 3 and 1", len(bp.Statement), n, awsfake.DemoForeignSid)
	}
	kp := e.keyPolicy(t, dstAcct, dst.Region, dst.KMSKeyARN)
	checkDoc(t, "key policy of KB", kp, keyDoc(dstKeyAdminStatement, wantKeyStatement(dst, sorted(roles...))))
	checkOnce(t, "key policy", kp, policy.KeyStatementSid(policy.SidReplicaEncrypt, dst.Bucket), roles)
	for i, s := range specs {
		cfg := e.replication(t, srcAcct, s.Source.Region, s.Source.Bucket)
		if cfg == nil || len(cfg.Rules) != 1 || cfg.Rules[0].ID != policy.RuleID(ids[i]) || cfg.Role != roles[i] {
			b, _ := jsonMarshal(cfg)
			t.Errorf("replication of %s: %s, want one rule %s with role %s", s.Source.Bucket, b, policy.RuleID(ids[i]), roles[i])
		}
	}

	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, id := range ids {
		wg.Go(func() { _, errs[i] = e.st.Deprovision(ctx, id, "test") })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		waitEnd(t, e.st, id, provision.StateDeprovisioned)
	}
	bp = e.bucketPolicy(t, dstAcct, dst.Region, dst.Bucket)
	if bp == nil {
		t.Fatal("the bucket policy of demo-destination is gone, with its foreign statement")
	}
	checkDoc(t, "bucket policy after deprovisioning all", *bp, awsfake.DemoDestinationPolicy)
	checkDoc(t, "key policy after deprovisioning all", e.keyPolicy(t, dstAcct, dst.Region, dst.KMSKeyARN), awsfake.DefaultKeyPolicy(dstAcct))
	for _, s := range specs {
		e.checkClean(t, s)
	}
}

// TestEngineCancelsARunningRequest: a request cancelled mid-way stops
// before its next group, leaves every foreign statement as it was, and a
// deprovisioning afterwards removes what it had added.
func TestEngineCancelsARunningRequest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEngineEnv(t)
	for _, a := range []string{srcAcct, dstAcct} {
		e.cloud.Faults(a).Latency("*", 40*time.Millisecond, 0)
	}
	r := e.submit(t, demoSpec())
	e.startEngine(t, e.st, provision.PoolConfig{Workers: 1})
	waitUntil(t, "put_role_policy is recorded", func() bool {
		return stepRecords(t, e.st, r.ID, provision.PhaseProvision)[provision.StepPutRolePolicy].Status == "succeeded"
	})
	if _, err := e.st.Cancel(ctx, r.ID, "test"); err != nil {
		t.Fatal(err)
	}
	got := waitEnd(t, e.st, r.ID, provision.StateCancelled)
	if got.FinishedAt == nil || got.CancelRequested {
		t.Errorf("cancelled request: finished %v, cancel_requested %v", got.FinishedAt, got.CancelRequested)
	}
	recs := stepRecords(t, e.st, r.ID, provision.PhaseProvision)
	if _, ran := recs[provision.StepVerify]; ran {
		t.Errorf("verify ran after the cancel: steps %v", stepStatuses(t, e.st, r.ID))
	}
	for _, a := range []string{srcAcct, dstAcct} {
		e.cloud.Faults(a).Reset()
	}
	dst := demoSpec().Destination
	bp := e.bucketPolicy(t, dstAcct, dst.Region, dst.Bucket)
	if bp == nil {
		t.Fatal("the bucket policy of demo-destination is gone, with its foreign statement")
	}
	checkDoc(t, "foreign statements of demo-destination's policy", withoutOurs(*bp), awsfake.DemoDestinationPolicy)
	checkDoc(t, "foreign statements of KB's policy", withoutOurs(e.keyPolicy(t, dstAcct, dst.Region, dst.KMSKeyARN)), awsfake.DefaultKeyPolicy(dstAcct))

	e.deprovision(t, r.ID)
	waitEnd(t, e.st, r.ID, provision.StateDeprovisioned)
	e.checkClean(t, demoSpec())
}

// TestEngineCancelInterruptsAWaitingCanary: a caller's cancel stops verify
// while it waits for a canary that will not replicate for an hour, long
// before verify's own time limit, and verify still deletes its canary.
func TestEngineCancelInterruptsAWaitingCanary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEngineEnvWith(t, awsfake.Config{ReplicationDelay: time.Hour})
	spec := demoSpec()
	r := e.submit(t, spec)
	e.startEngine(t, e.st, provision.PoolConfig{Workers: 1,
		StepConfig: provision.StepConfig{PollInterval: 20 * time.Millisecond, VerifyTimeout: time.Hour}})
	waitUntil(t, "verify is running", func() bool {
		return stepRecords(t, e.st, r.ID, provision.PhaseProvision)[provision.StepVerify].Status == provision.StepRunning
	})
	if _, err := e.st.Cancel(ctx, r.ID, "test"); err != nil {
		t.Fatal(err)
	}
	got := waitEnd(t, e.st, r.ID, provision.StateCancelled)
	if got.CancelRequested || got.FinishedAt == nil {
		t.Errorf("cancelled request: cancel_requested %v, finished %v", got.CancelRequested, got.FinishedAt)
	}
	events, err := e.st.Events(ctx, r.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if last := events[len(events)-1]; last.State != provision.StateCancelled || !strings.Contains(last.Message, "during step verify") {
		t.Errorf("last event = %+v, want the cancel during verify", last)
	}
	if v := stepRecords(t, e.st, r.ID, provision.PhaseProvision)[provision.StepVerify]; v.Status != provision.StepFailed {
		t.Errorf("the interrupted verify is recorded as %s, want failed", v.Status)
	}
	e.checkNoCanaryUnder(t, spec)
}

// TestShutdownInterruptsAWaitingCanaryAndLeavesItToBeResumed: shutting the
// pool down does not wait out verify (nor the grace period) while its
// canary waits; the request is released with no canary left, and another
// pool runs verify again from the start (here with a short verify timeout,
// since the fake's replication still takes an hour).
func TestShutdownInterruptsAWaitingCanaryAndLeavesItToBeResumed(t *testing.T) {
	t.Parallel()
	e := newEngineEnvWith(t, awsfake.Config{ReplicationDelay: time.Hour})
	spec := demoSpec()
	r := e.submit(t, spec)
	slow := provision.StepConfig{PollInterval: 20 * time.Millisecond, VerifyTimeout: time.Hour}
	stop := e.startEngine(t, e.st, provision.PoolConfig{Workers: 1, StepConfig: slow, ShutdownGrace: time.Hour})
	waitUntil(t, "verify is running", func() bool {
		return stepRecords(t, e.st, r.ID, provision.PhaseProvision)[provision.StepVerify].Status == provision.StepRunning
	})
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Fatal("the pool is still waiting for verify 30s after shutdown began")
	}
	got, err := e.st.Get(context.Background(), r.ID)
	if err != nil || got.State != provision.StateRunning {
		t.Fatalf("after shutdown the request is %s (%v), want still running, to be resumed", got.State, err)
	}
	e.checkNoCanaryUnder(t, spec)

	e.startEngine(t, e.st, provision.PoolConfig{Workers: 1,
		StepConfig: provision.StepConfig{PollInterval: 20 * time.Millisecond, VerifyTimeout: 200 * time.Millisecond}})
	failed := waitEnd(t, e.st, r.ID, provision.StateFailed)
	if failed.CurrentStep != provision.StepVerify {
		t.Errorf("the resumed request failed at %s, want verify", failed.CurrentStep)
	}
	recs := stepRecords(t, e.st, r.ID, provision.PhaseProvision)
	if v := recs[provision.StepVerify]; v.Attempts != 2 {
		t.Errorf("verify ran %d times, want 2 (interrupted, then resumed)", v.Attempts)
	}
	if p := recs[provision.StepPutReplicationRule]; p.Attempts != 1 {
		t.Errorf("put_replication_rule ran %d times, want once: the resumed run starts at verify", p.Attempts)
	}
	e.checkNoCanaryUnder(t, spec)
}

// checkNoCanaryUnder fails when a canary version of spec's rule is left in
// either bucket.
func (e *engineEnv) checkNoCanaryUnder(t *testing.T, spec provision.Spec) {
	t.Helper()
	for _, side := range []provision.Side{spec.Source, spec.Destination} {
		out, err := e.cloud.S3(side.AccountID, side.Region).ListObjectVersions(context.Background(), &s3.ListObjectVersionsInput{
			Bucket: aws.String(side.Bucket), Prefix: aws.String(spec.Rule.Prefix + provision.CanaryDir)})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(out.Versions) + len(out.DeleteMarkers); n != 0 {
			t.Errorf("bucket %s still holds %d canary versions and delete markers", side.Bucket, n)
		}
	}
}

// TestEngineRetriesAfterAPermanentFailure: a disabled destination key fails
// the request for good; once the key is enabled again, a retry resumes at
// the failed step and succeeds; deprovisioning then leaves only the
// foreign statements.
func TestEngineRetriesAfterAPermanentFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEngineEnv(t)
	if err := e.cloud.SetKeyEnabled(awsfake.DemoDestinationKey, false); err != nil {
		t.Fatal(err)
	}
	r := e.submit(t, demoSpec())
	e.startEngine(t, e.st, provision.PoolConfig{Workers: 2})
	failed := waitEnd(t, e.st, r.ID, provision.StateFailed)
	var problem struct {
		Detail, Step string
		Retryable    bool
	}
	if err := json.Unmarshal(failed.LastError, &problem); err != nil {
		t.Fatalf("last_error %s: %v", failed.LastError, err)
	}
	if problem.Step != provision.StepInspectDestination || problem.Retryable || !strings.Contains(problem.Detail, "enable-key") {
		t.Errorf("last_error = %s, want a permanent failure of inspect_destination saying how to enable the key", failed.LastError)
	}

	if err := e.cloud.SetKeyEnabled(awsfake.DemoDestinationKey, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Retry(ctx, r.ID, "test"); err != nil {
		t.Fatal(err)
	}
	waitEnd(t, e.st, r.ID, provision.StateSucceeded)
	e.checkConverged(t, r.ID, demoSpec())
	recs := stepRecords(t, e.st, r.ID, provision.PhaseProvision)
	for name, want := range map[string]int{provision.StepResolveAccounts: 1, provision.StepInspectSource: 1, provision.StepInspectDestination: 2} {
		if recs[name].Attempts != want {
			t.Errorf("%s ran %d times, want %d", name, recs[name].Attempts, want)
		}
	}

	e.deprovision(t, r.ID)
	waitEnd(t, e.st, r.ID, provision.StateDeprovisioned)
	e.checkClean(t, demoSpec())
}
