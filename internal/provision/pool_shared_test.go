package provision_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/bucketbridge/bucketbridge/internal/awsfake"
	"github.com/bucketbridge/bucketbridge/internal/policy"
	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// These tests drive requests that share one source bucket (so one role)
// and one destination through the real pool over Postgres: whose grants a
// shared document holds is decided from the stored requests, under the
// document's lock, so concurrent removals and creations cannot misread it.

// prefixSpec is a request from demo-source into demo-destination for one
// prefix.
func prefixSpec(i int) provision.Spec {
	s := demoSpec()
	s.Rule.Prefix = fmt.Sprintf("p%d/", i)
	return s
}

// roleGrants lists the prefixes the role's bucketbridge policies let it
// replicate into the destination, read from the fake IAM (inline and
// attached managed policies).
func (e *engineEnv) roleGrants(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	iamA := e.cloud.IAM(srcAcct)
	var docs []policy.Document
	names, err := iamA.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(srcRole)})
	if provision.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names.PolicyNames {
		out, err := iamA.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(srcRole), PolicyName: aws.String(n)})
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, mustDecodeIAM(t, aws.ToString(out.PolicyDocument)))
	}
	attached, err := iamA.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(srcRole)})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range attached.AttachedPolicies {
		p, err := iamA.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: a.PolicyArn})
		if err != nil {
			t.Fatal(err)
		}
		v, err := iamA.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: a.PolicyArn, VersionId: p.Policy.DefaultVersionId})
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, mustDecodeIAM(t, aws.ToString(v.PolicyVersion.Document)))
	}
	var prefixes []string
	dst := "arn:aws:s3:::" + awsfake.DemoDestinationBucket + "/"
	for _, d := range docs {
		for _, st := range d.Statement {
			if !slices.Contains(st.Action, "s3:ReplicateObject") {
				continue
			}
			for _, r := range st.Resource {
				if p, ok := cutPrefix(r, dst); ok {
					prefixes = append(prefixes, p)
				}
			}
		}
	}
	slices.Sort(prefixes)
	return slices.Compact(prefixes)
}

func cutPrefix(resource, bucket string) (string, bool) {
	if len(resource) <= len(bucket) || resource[:len(bucket)] != bucket || resource[len(resource)-1] != '*' {
		return "", false
	}
	return resource[len(bucket) : len(resource)-1], true
}

func prefixesOf(specs []provision.Spec) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.Rule.Prefix)
	}
	slices.Sort(out)
	return out
}

// TestEngineManyPrefixesShareOneRoleAndAreAllRemovedAtOnce: 20 requests
// from one source bucket into one destination share the role; deleting
// them all at the same moment leaves no grant behind: the destination's
// documents are back to the seed, the role and its policies are gone.
func TestEngineManyPrefixesShareOneRoleAndAreAllRemovedAtOnce(t *testing.T) {
	t.Parallel()
	const n = 20
	ctx := context.Background()
	e := newEngineEnv(t)
	var specs []provision.Spec
	var ids []string
	for i := range n {
		specs = append(specs, prefixSpec(i))
		ids = append(ids, e.submit(t, specs[i]).ID)
	}
	e.startEngine(t, e.st, provision.PoolConfig{Workers: 8})
	for _, id := range ids {
		waitEnd(t, e.st, id, provision.StateSucceeded)
	}
	if got := e.roleGrants(t); !slices.Equal(got, prefixesOf(specs)) {
		t.Fatalf("the role grants prefixes %v, want %v", got, prefixesOf(specs))
	}
	dst := specs[0].Destination
	role := roleARN(srcAcct, srcRole)
	checkDoc(t, "bucket policy of demo-destination", *e.bucketPolicy(t, dstAcct, dst.Region, dst.Bucket),
		doc(append([]string{demoForeignStatement}, wantBucketStatements(dst, []string{role})...)...))

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
	e.checkDemoDestinationSeeded(t)
	if _, err := e.cloud.IAM(srcAcct).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(srcRole)}); !provision.IsNotFound(err) {
		t.Errorf("the shared role is still there after every request was deprovisioned: %v", err)
	}
	if cfg := e.replication(t, srcAcct, awsfake.DemoSourceRegion, awsfake.DemoSourceBucket); cfg != nil {
		t.Errorf("demo-source still has a replication configuration: %+v", cfg)
	}
}

// checkDemoDestinationSeeded checks that demo-destination's bucket policy
// and KB's key policy are exactly as seeded.
func (e *engineEnv) checkDemoDestinationSeeded(t *testing.T) {
	t.Helper()
	dst := demoSpec().Destination
	bp := e.bucketPolicy(t, dstAcct, dst.Region, dst.Bucket)
	if bp == nil {
		t.Fatal("the bucket policy of demo-destination is gone, with its foreign statement")
	}
	checkDoc(t, "bucket policy of demo-destination", *bp, awsfake.DemoDestinationPolicy)
	checkDoc(t, "key policy of KB", e.keyPolicy(t, dstAcct, dst.Region, dst.KMSKeyARN), awsfake.DefaultKeyPolicy(dstAcct))
}

// TestEngineRemovalsAndCreationsOnOneRoleAtOnce: while half of the
// requests sharing a role are deleted, as many new ones on the same role
// are created, with writes of the shared documents failing now and then
// (a request that decided what to write and then did not write it: the
// next attempt decides again). Every new request replicates, every removed
// prefix is gone from the role, and the role stays in B's statements.
func TestEngineRemovalsAndCreationsOnOneRoleAtOnce(t *testing.T) {
	t.Parallel()
	const n = 8
	e := newEngineEnv(t)
	var old []string
	for i := range n {
		old = append(old, e.submit(t, prefixSpec(i)).ID)
	}
	e.startEngine(t, e.st, provision.PoolConfig{Workers: 8})
	for _, id := range old {
		waitEnd(t, e.st, id, provision.StateSucceeded)
	}
	e.cloud.Faults(dstAcct).Fail5xxRate("s3:PutBucketPolicy,kms:PutKeyPolicy", 0.3)
	e.cloud.Faults(srcAcct).Fail5xxRate("iam:PutRolePolicy,iam:DeleteRolePolicy", 0.3)

	kept := e.churn(t, old, prefixSpec, func(i int) provision.Spec { return prefixSpec(n + i) })
	for _, a := range []string{srcAcct, dstAcct} {
		e.cloud.Faults(a).Reset()
	}
	if got := e.roleGrants(t); !slices.Equal(got, prefixesOf(kept)) {
		t.Errorf("the role grants prefixes %v, want exactly the live ones %v", got, prefixesOf(kept))
	}
	dst := demoSpec().Destination
	role := roleARN(srcAcct, srcRole)
	checkDoc(t, "bucket policy of demo-destination", *e.bucketPolicy(t, dstAcct, dst.Region, dst.Bucket),
		doc(append([]string{demoForeignStatement}, wantBucketStatements(dst, []string{role})...)...))
	checkDoc(t, "key policy of KB", e.keyPolicy(t, dstAcct, dst.Region, dst.KMSKeyARN),
		keyDoc(dstKeyAdminStatement, wantKeyStatement(dst, []string{role})))
}

// churn deletes the even-numbered requests of old (whose specs are
// oldSpec(i)) while it creates as many new ones (newSpec(i)), all at the
// same moment, waits until every one has ended, and returns the specs of
// the requests left live.
func (e *engineEnv) churn(t *testing.T, old []string, oldSpec, newSpec func(i int) provision.Spec) []provision.Spec {
	t.Helper()
	ctx := context.Background()
	var live []provision.Spec
	var created []string
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range old {
		if i%2 == 0 {
			wg.Go(func() {
				if _, err := e.st.Deprovision(ctx, old[i], "test"); err != nil {
					t.Error(err)
				}
			})
		} else {
			live = append(live, oldSpec(i))
		}
		s := newSpec(i)
		live = append(live, s)
		wg.Go(func() {
			r, _, err := e.st.Create(ctx, provision.NewReplication{Spec: s, RequestedBy: "test"})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			created = append(created, r.ID)
			mu.Unlock()
		})
	}
	wg.Wait()
	for i, id := range old {
		if i%2 == 0 {
			waitEnd(t, e.st, id, provision.StateDeprovisioned)
		}
	}
	for _, id := range created {
		waitEnd(t, e.st, id, provision.StateSucceeded)
	}
	return live
}

// TestEngineHundredPrefixesFromOneSource: one source bucket carries 100
// prefixes into one destination, each keeping least privilege, within
// IAM's limits on a role's policies.
func TestEngineHundredPrefixesFromOneSource(t *testing.T) {
	t.Parallel()
	const n = 100
	e := newEngineEnv(t)
	var specs []provision.Spec
	var ids []string
	for i := range n {
		s := prefixSpec(i + 1)
		s.Verify = i%10 == 0 // every tenth proves it with a canary
		specs = append(specs, s)
		ids = append(ids, e.submit(t, s).ID)
	}
	e.startEngine(t, e.st, provision.PoolConfig{Workers: 8})
	for _, id := range ids {
		waitEnd(t, e.st, id, provision.StateSucceeded)
	}
	if got := e.roleGrants(t); !slices.Equal(got, prefixesOf(specs)) {
		t.Errorf("the role grants %d prefixes, want the %d requested", len(got), len(specs))
	}
}

// TestStepsOfAGroupLockDifferentDocuments: the promise that lets a group's
// steps run at once. Each step declares the documents it writes, and no two
// steps of one group declare the same, in either table.
func TestStepsOfAGroupLockDifferentDocuments(t *testing.T) {
	t.Parallel()
	e := setup(t)
	run := e.run(t, "req-locks", demoSpec(), provision.Facts{})
	for _, table := range [][]provision.StepDef{provision.ProvisionSteps(), provision.DeprovisionSteps()} {
		for _, group := range provision.Groups(table) {
			seen := map[string]string{}
			for _, def := range group {
				if def.Locks == nil {
					continue
				}
				for _, k := range def.Locks(run) {
					if k == "" {
						t.Errorf("step %s locks an empty key", def.Name)
					}
					if other, dup := seen[k]; dup {
						t.Errorf("steps %s and %s of one group both lock %s", other, def.Name, k)
					}
					seen[k] = def.Name
				}
			}
		}
	}
}

// TestTheGroupRunnerHoldsAStepsLocksWhileItRuns: two runs whose steps lock
// the same document never run those steps at the same time.
func TestTheGroupRunnerHoldsAStepsLocksWhileItRuns(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	var running, most atomic.Int32
	def := provision.StepDef{Name: "edit", Group: 1,
		Locks: func(*provision.Run) []string { return []string{"arn:aws:s3:::shared"} },
		Run: func(ctx context.Context, _ *provision.Run) (provision.Result, error) {
			now := running.Add(1)
			for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
			}
			time.Sleep(5 * time.Millisecond) // long enough for an overlap to show
			running.Add(-1)
			return provision.Result{}, nil
		}}
	var wg sync.WaitGroup
	for i := range 8 {
		run := e.run(t, fmt.Sprintf("req-%d", i), demoSpec(), provision.Facts{})
		wg.Go(func() { provision.RunGroup(ctx, run, []provision.StepDef{def}, nil) })
	}
	wg.Wait()
	if m := most.Load(); m != 1 {
		t.Errorf("%d steps ran at once under one lock", m)
	}
}

// keySharerSpec is a request from source-i into destination-i, seeded by
// seedKeySharers: its own source bucket, so its own role, and its own
// destination bucket, every destination encrypted by KB.
func keySharerSpec(i int) provision.Spec {
	s := demoSpec()
	s.Source.Bucket = fmt.Sprintf("source-%d", i)
	s.Destination.Bucket = fmt.Sprintf("destination-%d", i)
	s.Verify = i%4 == 0
	return s
}

// seedKeySharers adds the buckets of keySharerSpec(1) … keySharerSpec(n).
func (e *engineEnv) seedKeySharers(t *testing.T, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		s := keySharerSpec(i)
		for _, b := range []struct {
			side provision.Side
			key  string
		}{{s.Source, awsfake.DemoSourceKey}, {s.Destination, awsfake.DemoDestinationKey}} {
			if err := e.cloud.AddBucket(b.side.AccountID, b.side.Region, b.side.Bucket, awsfake.BucketOptions{Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: b.key}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// checkKeyStatements checks that KB's key policy holds bucketbridge's
// statement for exactly the destinations of live, each naming its own
// request's role and nothing else.
func (e *engineEnv) checkKeyStatements(t *testing.T, live []provision.Spec) {
	t.Helper()
	dst := demoSpec().Destination
	kp := e.keyPolicy(t, dstAcct, dst.Region, dst.KMSKeyARN)
	ours := 0
	for _, st := range kp.Statement {
		if strings.HasPrefix(st.Sid, "Bucketbridge") {
			ours++
		}
	}
	if ours != len(live) {
		t.Errorf("KB's key policy has %d statements of bucketbridge, want one for each of the %d live destinations", ours, len(live))
	}
	for _, s := range live {
		role := roleARN(srcAcct, policy.RoleName(s.Source.Bucket))
		sid := policy.KeyStatementSid(policy.SidReplicaEncrypt, s.Destination.Bucket)
		if p, n := principalsOf(kp, sid); n != 1 || !slices.Equal(p, []string{role}) {
			t.Errorf("%s: %d statements naming %v, want one naming %s", sid, n, p, role)
		}
	}
}

// TestEngineManyDestinationsOnOneKeyAtOnce: requests into distinct
// destinations that KB encrypts share KB's key policy. The request holding
// KB's lock writes the statements of every holder waiting for it, and the
// others record that shared write; then half are removed while as many new
// ones are created, with key policy writes failing now and then. KB's
// policy ends with exactly one statement per live destination.
func TestEngineManyDestinationsOnOneKeyAtOnce(t *testing.T) {
	t.Parallel()
	const n = 12
	ctx := context.Background()
	e := newEngineEnv(t)
	e.seedKeySharers(t, 2*n)
	var old []string
	var specs []provision.Spec
	for i := range n {
		specs = append(specs, keySharerSpec(i+1))
		old = append(old, e.submit(t, specs[i]).ID)
	}
	e.startEngine(t, e.st, provision.PoolConfig{Workers: n})
	shared := 0
	for _, id := range old {
		waitEnd(t, e.st, id, provision.StateSucceeded)
		steps, err := e.st.Steps(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range steps {
			if s.Name == provision.StepUpdateDestinationKeyPolicy && strings.Contains(string(s.After), `"written_by"`) {
				shared++
			}
		}
	}
	t.Logf("%d of %d requests relied on another's write of KB's key policy", shared, n)
	e.checkKeyStatements(t, specs)

	e.cloud.Faults(dstAcct).Fail5xxRate("kms:PutKeyPolicy", 0.3)
	live := e.churn(t, old, func(i int) provision.Spec { return specs[i] }, func(i int) provision.Spec { return keySharerSpec(n + i + 1) })
	e.cloud.Faults(dstAcct).Reset()
	e.checkKeyStatements(t, live)
}

// TestAStepWithNothingToDoDoesNotWaitForItsDocument: while another holder
// (here the test, as a busy request of another replica would) holds the
// lock of the source key, a request whose source key delegates to its
// account's IAM is provisioned all the same: its source key step has
// nothing to write, so it does not queue behind everyone sharing the key.
func TestAStepWithNothingToDoDoesNotWaitForItsDocument(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := newEngineEnv(t)
	e.startEngine(t, e.st, provision.PoolConfig{Workers: 2})
	unlock, err := e.st.Lock(ctx, awsfake.DemoSourceKey)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	r := e.submit(t, demoSpec())
	waitEnd(t, e.st, r.ID, provision.StateSucceeded)
	if s := stepRecords(t, e.st, r.ID, provision.PhaseProvision)[provision.StepUpdateSourceKeyPolicy]; s.Status != provision.StepSkipped {
		t.Errorf("the source key step = %s, want skipped", s.Status)
	}
}
