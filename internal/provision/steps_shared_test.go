package provision_test

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/bucketbridge/bucketbridge/internal/awsfake"
	"github.com/bucketbridge/bucketbridge/internal/policy"
	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// TestSharedRoleAcrossPrefixes: two requests from one source bucket into one
// destination with different prefixes share the role and the destination's
// statements. Deprovisioning one must leave the other replicating.
func TestSharedRoleAcrossPrefixes(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	// The source key delegates to nobody, so the source key statement is
	// shared too.
	specA, specB := demoSpec(), demoSpec()
	specA.Rule.Prefix, specB.Rule.Prefix = "a/", "b/"
	runA := e.run(t, "req-a", specA, provision.Facts{})
	runB := e.run(t, "req-b", specB, provision.Facts{})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, r := range []*provision.Run{runA, runB} {
		wg.Go(func() { _, errs[i] = runPhase(ctx, r, provision.ProvisionSteps(), 5) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("provision: %v", err)
		}
	}

	if _, err := runPhase(ctx, e.run(t, "req-a", specA, runA.Facts()), provision.DeprovisionSteps(), 0); err != nil {
		t.Fatalf("deprovision a: %v", err)
	}
	role := roleARN(srcAcct, srcRole)
	dst := specB.Destination
	bp := e.bucketPolicy(t, dstAcct, dst.Region, dst.Bucket)
	kp := e.keyPolicy(t, dstAcct, dst.Region, dst.KMSKeyARN)
	for _, c := range []struct {
		d   policy.Document
		sid string
	}{{*bp, policy.SidReplicaObjects}, {*bp, policy.SidReplicaBucket}, {kp, policy.KeyStatementSid(policy.SidReplicaEncrypt, dst.Bucket)}} {
		if p, n := principalsOf(c.d, c.sid); n != 1 || !slices.Equal(p, []string{role}) {
			t.Errorf("after deprovisioning a, %s has principals %v in %d statements; b still needs %s", c.sid, p, n, role)
		}
	}
	cfg := e.replication(t, srcAcct, awsfake.DemoSourceRegion, awsfake.DemoSourceBucket)
	if cfg == nil || len(cfg.Rules) != 1 || cfg.Rules[0].ID != policy.RuleID("req-b") {
		t.Fatalf("after deprovisioning a, the source configuration is %+v; want b's rule alone", cfg)
	}
	if _, err := step(t, provision.ProvisionSteps(), provision.StepVerify).Run(ctx, e.run(t, "req-b", specB, runB.Facts())); err != nil {
		t.Errorf("b no longer replicates after a was deprovisioned: %v", err)
	}

	if _, err := runPhase(ctx, e.run(t, "req-b", specB, runB.Facts()), provision.DeprovisionSteps(), 0); err != nil {
		t.Fatalf("deprovision b: %v", err)
	}
	e.checkDemoClean(t)
}

// TestRoleDeletedBeforeItsPolicyIsWritten: another request's deprovisioning
// deleted the shared role between ensure_replication_role and
// put_role_policy; put_role_policy creates it again instead of failing.
func TestRoleDeletedBeforeItsPolicyIsWritten(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	spec := demoSpec()
	run := e.run(t, "req-late", spec, provision.Facts{})
	steps := provision.ProvisionSteps()
	for _, name := range []string{provision.StepResolveAccounts, provision.StepInspectSource, provision.StepInspectDestination, provision.StepEnsureReplicationRole} {
		if _, err := step(t, steps, name).Run(ctx, run); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := e.cloud.IAM(srcAcct).DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(srcRole)}); err != nil {
		t.Fatal(err)
	}
	res, err := step(t, steps, provision.StepPutRolePolicy).Run(ctx, run)
	if err != nil || !res.Changed {
		t.Fatalf("put_role_policy after the role was deleted = %+v, %v", res, err)
	}
	if _, err := runPhase(ctx, run, steps, 5); err != nil {
		t.Fatalf("the rest of provisioning: %v", err)
	}
}

// TestRolesAreCreatedWithThePermissionsBoundary: with a boundary
// configured, the role bucketbridge creates carries it, and replication
// works within it; a boundary that does not exist fails the request with
// what to fix.
func TestRolesAreCreatedWithThePermissionsBoundary(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	boundary := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*","kms:*"],"Resource":"*"}]}`
	if _, err := e.cloud.IAM(srcAcct).CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String("ReplicationBoundary"), PolicyDocument: aws.String(boundary)}); err != nil {
		t.Fatal(err)
	}
	run := e.run(t, "req-bounded", demoSpec(), provision.Facts{})
	run.Config.RoleBoundary = "ReplicationBoundary"
	if _, err := runPhase(ctx, run, provision.ProvisionSteps(), 0); err != nil {
		t.Fatalf("provision within the boundary: %v", err)
	}
	got, err := e.cloud.IAM(srcAcct).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(srcRole)})
	if err != nil {
		t.Fatal(err)
	}
	want := "arn:aws:iam::" + srcAcct + ":policy/ReplicationBoundary"
	if b := got.Role.PermissionsBoundary; b == nil || aws.ToString(b.PermissionsBoundaryArn) != want {
		t.Errorf("role boundary = %+v, want %s", b, want)
	}

	other := setup(t)
	missing := other.run(t, "req-unbounded", demoSpec(), provision.Facts{})
	missing.Config.RoleBoundary = "NoSuchBoundary"
	_, err = runPhase(ctx, missing, provision.ProvisionSteps(), 0)
	if d := permanentDetail(t, err); !strings.Contains(d, "NoSuchBoundary") {
		t.Errorf("a missing boundary fails with %q, want it named", d)
	}
}
