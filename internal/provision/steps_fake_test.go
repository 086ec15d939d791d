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
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"

	"github.com/bucketbridge/bucketbridge/internal/awsfake"
	"github.com/bucketbridge/bucketbridge/internal/policy"
	"github.com/bucketbridge/bucketbridge/internal/provision"
)

const (
	srcAcct = awsfake.DemoSourceAccount
	dstAcct = awsfake.DemoDestinationAccount
	srcRole = "bucketbridge-demo-source"
)

// fakeSessions wires Sessions to the fake exactly as cmd/server does in
// fake mode: AssumeRole through the service's own STS, clients from
// Cloud.ClientsFor.
func fakeSessions(c *awsfake.Cloud, externalID string) provision.Sessions {
	return provision.NewAssumingSessions(c.STS(awsfake.DemoServiceAccount), func(creds ststypes.Credentials, region string) (*provision.Account, error) {
		cl, err := c.ClientsFor(creds, region)
		if err != nil {
			return nil, err
		}
		return &provision.Account{ID: cl.Account, STS: cl.STS, IAM: cl.IAM, KMS: cl.KMS, S3: cl.S3}, nil
	}, awsfake.DefaultProvisionerRole, externalID)
}

// fakeEnv is a demo world and the things a run needs.
type fakeEnv struct {
	cloud    *awsfake.Cloud
	sessions provision.Sessions
	locks    *locks
}

func setup(t *testing.T) *fakeEnv {
	t.Helper()
	c := awsfake.New()
	c.SeedDemo("", "")
	return &fakeEnv{cloud: c, sessions: fakeSessions(c, awsfake.DefaultExternalID), locks: newLocks()}
}

func demoSpec() provision.Spec {
	return provision.Spec{
		Source:      provision.Side{AccountID: srcAcct, Region: awsfake.DemoSourceRegion, Bucket: awsfake.DemoSourceBucket, KMSKeyARN: awsfake.DemoSourceKey},
		Destination: provision.Side{AccountID: dstAcct, Region: awsfake.DemoDestinationRegion, Bucket: awsfake.DemoDestinationBucket, KMSKeyARN: awsfake.DemoDestinationKey},
		Rule:        provision.Rule{StorageClass: "STANDARD"},
		Verify:      true,
	}
}

func (e *fakeEnv) run(t *testing.T, id string, spec provision.Spec, facts provision.Facts) *provision.Run {
	t.Helper()
	run, err := openRun(context.Background(), e.sessions, e.locks, id, spec, facts)
	if err != nil {
		t.Fatalf("open run: %v", err)
	}
	return run
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Reading documents back as the accounts' own administrators.

func (e *fakeEnv) bucketPolicy(t *testing.T, account, region, bucket string) *policy.Document {
	t.Helper()
	out, err := e.cloud.S3(account, region).GetBucketPolicy(context.Background(), &s3.GetBucketPolicyInput{Bucket: aws.String(bucket)})
	if provision.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("get bucket policy of %s: %v", bucket, err)
	}
	d := mustParse(t, aws.ToString(out.Policy))
	return &d
}

func (e *fakeEnv) keyPolicy(t *testing.T, account, region, key string) policy.Document {
	t.Helper()
	out, err := e.cloud.KMS(account, region).GetKeyPolicy(context.Background(), &kms.GetKeyPolicyInput{KeyId: aws.String(key), PolicyName: aws.String("default")})
	if err != nil {
		t.Fatalf("get key policy of %s: %v", key, err)
	}
	return mustParse(t, aws.ToString(out.Policy))
}

// sessionKeyPolicy reads a key policy as the provisioner role, for keys
// whose policy does not let the account's administrators in.
func (e *fakeEnv) sessionKeyPolicy(t *testing.T, account, region, key string) policy.Document {
	t.Helper()
	a, err := e.sessions.Account(context.Background(), account, region)
	if err != nil {
		t.Fatal(err)
	}
	out, err := a.KMS.GetKeyPolicy(context.Background(), &kms.GetKeyPolicyInput{KeyId: aws.String(key), PolicyName: aws.String("default")})
	if err != nil {
		t.Fatalf("get key policy of %s: %v", key, err)
	}
	return mustParse(t, aws.ToString(out.Policy))
}

func (e *fakeEnv) replication(t *testing.T, account, region, bucket string) *policy.ReplicationConfiguration {
	t.Helper()
	out, err := e.cloud.S3(account, region).GetBucketReplication(context.Background(), &s3.GetBucketReplicationInput{Bucket: aws.String(bucket)})
	if provision.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("get replication of %s: %v", bucket, err)
	}
	c := fromSDK(t, out.ReplicationConfiguration)
	return &c
}

// TestProvisionDemo runs every step against the demo world: replication
// works, every document is as docs/ARCHITECTURE.md (The documents) describes, a second run changes nothing, and
// deprovisioning removes exactly what was added.
func TestProvisionDemo(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	spec := demoSpec()
	run := e.run(t, "req-1", spec, provision.Facts{})
	res, err := runPhase(ctx, run, provision.ProvisionSteps(), 0)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	for _, name := range []string{"ensure_replication_role", "put_role_policy", "update_destination_key_policy", "update_destination_bucket_policy", "put_replication_rule"} {
		if !res[name].Changed {
			t.Errorf("first run: %s did not change anything", name)
		}
	}
	if !res["update_source_key_policy"].Skipped {
		t.Errorf("update_source_key_policy ran, but KA delegates to A's IAM")
	}
	facts := run.Facts()
	if facts.CanaryLatency <= 0 {
		t.Errorf("canary latency not learned: %+v", facts)
	}
	b, _ := jsonMarshal(res["verify"].After)
	if !strings.Contains(b, `"latency_ms":`) || !strings.Contains(b, `"status":"COMPLETED"`) {
		t.Errorf("verify recorded %s, want a COMPLETED canary with latency_ms", b)
	}
	if facts.RoleName != srcRole || facts.RoleAdopted || facts.RoleCreatedAt == nil || !facts.DestinationOwnerEnforced || facts.SourceKeyNotDelegated {
		t.Errorf("facts = %+v", facts)
	}
	e.checkDemoDocuments(t, "req-1", []string{roleARN(srcAcct, srcRole)})

	// Canary versions are gone from both buckets.
	for _, side := range []provision.Side{spec.Source, spec.Destination} {
		out, err := e.cloud.S3(side.AccountID, side.Region).ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(side.Bucket)})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Versions)+len(out.DeleteMarkers) != 0 {
			t.Errorf("bucket %s still holds %d versions and %d delete markers", side.Bucket, len(out.Versions), len(out.DeleteMarkers))
		}
	}

	// A second run, from the stored facts, changes nothing.
	again := e.run(t, "req-1", spec, run.Facts())
	res, err = runPhase(ctx, again, provision.ProvisionSteps(), 0)
	if err != nil {
		t.Fatalf("second provision: %v", err)
	}
	for name, r := range res {
		if r.Changed {
			t.Errorf("second run: %s changed something: before %v after %v", name, r.Before, r.After)
		}
	}
	e.checkDemoDocuments(t, "req-1", []string{roleARN(srcAcct, srcRole)})

	// Deprovisioning removes exactly what was added.
	down := e.run(t, "req-1", spec, again.Facts())
	res, err = runPhase(ctx, down, provision.DeprovisionSteps(), 0)
	if err != nil {
		t.Fatalf("deprovision: %v", err)
	}
	for _, name := range []string{"remove_replication_rule", "remove_destination_bucket_policy", "remove_destination_key_policy", "delete_role_policy", "delete_role"} {
		if !res[name].Changed {
			t.Errorf("deprovision: %s did not change anything", name)
		}
	}
	e.checkDemoClean(t)
	res, err = runPhase(ctx, e.run(t, "req-1", spec, down.Facts()), provision.DeprovisionSteps(), 0)
	if err != nil {
		t.Fatalf("second deprovision: %v", err)
	}
	for name, r := range res {
		if r.Changed {
			t.Errorf("second deprovision: %s changed something", name)
		}
	}
	e.checkDemoClean(t)
}

// checkDemoDocuments reads every document back from the demo world and
// compares it with the documents of docs/ARCHITECTURE.md, roles being the managed roles in B's statements.
func (e *fakeEnv) checkDemoDocuments(t *testing.T, id string, roles []string) {
	t.Helper()
	ctx := context.Background()
	spec := demoSpec()
	src, dst := spec.Source, spec.Destination

	got := e.bucketPolicy(t, dstAcct, dst.Region, dst.Bucket)
	if got == nil {
		t.Fatal("demo-destination has no bucket policy")
	}
	foreign := `{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::demo-destination","arn:aws:s3:::demo-destination/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}`
	checkDoc(t, "bucket policy of demo-destination", *got, doc(append([]string{foreign}, wantBucketStatements(dst, roles)...)...))

	checkDoc(t, "key policy of KB", e.keyPolicy(t, dstAcct, dst.Region, dst.KMSKeyARN),
		keyDoc(`{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":"kms:*","Resource":"*"}`, wantKeyStatement(dst, roles)))
	checkDoc(t, "key policy of KA", e.keyPolicy(t, srcAcct, src.Region, src.KMSKeyARN), awsfake.DefaultKeyPolicy(srcAcct))

	iamA := e.cloud.IAM(srcAcct)
	role, err := iamA.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(srcRole)})
	if err != nil {
		t.Fatalf("get role: %v", err)
	}
	checkDoc(t, "trust policy", mustDecodeIAM(t, aws.ToString(role.Role.AssumeRolePolicyDocument)), wantTrust)
	var tagged bool
	for _, tag := range role.Role.Tags {
		tagged = tagged || aws.ToString(tag.Key) == "managed-by" && aws.ToString(tag.Value) == "bucketbridge"
	}
	if !tagged {
		t.Errorf("role tags %v lack managed-by=bucketbridge", role.Role.Tags)
	}
	rp, err := iamA.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(srcRole), PolicyName: aws.String(policy.RoleInlinePolicyName)})
	if err != nil {
		t.Fatalf("get role policy: %v", err)
	}
	checkDoc(t, "role policy", mustDecodeIAM(t, aws.ToString(rp.PolicyDocument)), wantRolePolicy(src, dst, true))

	cfg := e.replication(t, srcAcct, src.Region, src.Bucket)
	want, err := policy.ParseReplicationConfiguration([]byte(`{"Role":"` + roleARN(srcAcct, srcRole) + `","Rules":[` + wantRule(id, 1, dst, true) + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg == nil || !policy.ReplicationEqual(*cfg, want) {
		gb, _ := jsonMarshal(cfg)
		wb, _ := jsonMarshal(want)
		t.Errorf("replication of demo-source differs from the documents of docs/ARCHITECTURE.md:\n got %s\nwant %s", gb, wb)
	}
}

// checkDemoClean checks that nothing bucketbridge added remains.
func (e *fakeEnv) checkDemoClean(t *testing.T) {
	t.Helper()
	spec := demoSpec()
	src, dst := spec.Source, spec.Destination
	got := e.bucketPolicy(t, dstAcct, dst.Region, dst.Bucket)
	if got == nil {
		t.Fatal("the foreign statement of demo-destination's policy is gone")
	}
	checkDoc(t, "bucket policy of demo-destination", *got, awsfake.DemoDestinationPolicy)
	checkDoc(t, "key policy of KB", e.keyPolicy(t, dstAcct, dst.Region, dst.KMSKeyARN), awsfake.DefaultKeyPolicy(dstAcct))
	if c := e.replication(t, srcAcct, src.Region, src.Bucket); c != nil {
		t.Errorf("demo-source still has a replication configuration: %+v", c)
	}
	_, err := e.cloud.IAM(srcAcct).GetRole(context.Background(), &iam.GetRoleInput{RoleName: aws.String(srcRole)})
	if !provision.IsNotFound(err) {
		t.Errorf("role %s: err %v, want not found", srcRole, err)
	}
}

// TestPermanentFailures: what no later step can fix fails the request with a
// detail a human can act on.
func TestPermanentFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		prep   func(e *fakeEnv, s *provision.Spec)
		step   string
		detail []string
	}{
		{"unversioned destination", func(e *fakeEnv, s *provision.Spec) { s.Destination.Bucket = awsfake.DemoUnversionedBucket },
			"inspect_destination", []string{"demo-unversioned", "put-bucket-versioning", "enable_versioning: true"}},
		{"missing bucket", func(e *fakeEnv, s *provision.Spec) { s.Source.Bucket = "demo-missing" },
			"inspect_source", []string{"demo-missing", "does not exist"}},
		{"bucket of another account", func(e *fakeEnv, s *provision.Spec) { s.Destination.Bucket = awsfake.DemoSourceBucket },
			"inspect_destination", []string{"not owned by account 222222222222"}},
		{"bucket in another region", func(e *fakeEnv, s *provision.Spec) { s.Destination.Region = "us-east-1" },
			"inspect_destination", []string{"is in region us-west-2, not us-east-1"}},
		{"disabled key", func(e *fakeEnv, s *provision.Spec) {
			if err := e.cloud.SetKeyEnabled(awsfake.DemoDestinationKey, false); err != nil {
				panic(err)
			}
		}, "inspect_destination", []string{"Disabled", "aws kms enable-key"}},
		{"AWS managed key", func(e *fakeEnv, s *provision.Spec) {
			s.Source.KMSKeyARN = e.cloud.AddKey(srcAcct, "us-east-1", awsfake.KeyOptions{AWSManaged: true, Alias: "alias/aws/s3"})
		}, "inspect_source", []string{"AWS managed key", "customer-managed key"}},
		{"key in another region", func(e *fakeEnv, s *provision.Spec) {
			s.Source.KMSKeyARN = e.cloud.AddKey(srcAcct, "us-west-2", awsfake.KeyOptions{})
		}, "inspect_source", []string{"in region us-west-2", "bucket demo-source is in us-east-1"}},
		{"missing key", func(e *fakeEnv, s *provision.Spec) {
			s.Destination.KMSKeyARN = "arn:aws:kms:us-west-2:222222222222:key/33333333-3333-4333-8333-333333333333"
		}, "inspect_destination", []string{"does not exist in account 222222222222, region us-west-2"}},
		{"asymmetric key", func(e *fakeEnv, s *provision.Spec) {
			s.Destination.KMSKeyARN = e.cloud.AddKey(dstAcct, "us-west-2", awsfake.KeyOptions{KeySpec: "RSA_2048"})
		}, "inspect_destination", []string{"RSA_2048", "SYMMETRIC_DEFAULT"}},
		{"adopted role that S3 may not assume", func(e *fakeEnv, s *provision.Spec) {
			adoptExisting(e, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)
		}, "ensure_replication_role", []string{"legacy-replication", "s3.amazonaws.com", "never rewrites"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			e := setup(t)
			spec := demoSpec()
			tt.prep(e, &spec)
			run := e.run(t, "req-fail", spec, provision.Facts{})
			res, err := runPhase(ctx, run, provision.ProvisionSteps(), 0)
			if err == nil {
				t.Fatalf("provisioning succeeded; results %v", res)
			}
			if !strings.HasPrefix(err.Error(), tt.step+":") {
				t.Errorf("failed in %v, want %s", err, tt.step)
			}
			detail := permanentDetail(t, err)
			for _, want := range tt.detail {
				if !strings.Contains(detail, want) {
					t.Errorf("detail %q does not mention %q", detail, want)
				}
			}
		})
	}
}

// adoptExisting gives demo-source a replication configuration, not
// bucketbridge's, that uses role legacy-replication with this trust policy.
func adoptExisting(e *fakeEnv, trust string) string {
	arn := e.cloud.AddRole(srcAcct, "legacy-replication", trust, nil)
	_, err := e.cloud.S3(srcAcct, "us-east-1").PutBucketReplication(context.Background(), &s3.PutBucketReplicationInput{
		Bucket: aws.String(awsfake.DemoSourceBucket),
		ReplicationConfiguration: &s3types.ReplicationConfiguration{Role: aws.String(arn), Rules: []s3types.ReplicationRule{{
			ID: aws.String("legacy-logs"), Priority: aws.Int32(7), Status: s3types.ReplicationRuleStatusEnabled,
			Filter:                  &s3types.ReplicationRuleFilter{Prefix: aws.String("logs/")},
			DeleteMarkerReplication: &s3types.DeleteMarkerReplication{Status: s3types.DeleteMarkerReplicationStatusDisabled},
			Destination:             &s3types.Destination{Bucket: aws.String("arn:aws:s3:::" + awsfake.DemoDestinationBucket)},
		}}},
	})
	if err != nil {
		panic(err)
	}
	return arn
}

// TestAdoptRole: a source bucket whose configuration already names a role
// that S3 may assume gets bucketbridge's rule next to the existing one, with
// that role, which deprovisioning never deletes.
func TestAdoptRole(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	arn := adoptExisting(e, wantTrust)
	spec := demoSpec()
	run := e.run(t, "req-adopt", spec, provision.Facts{})
	if _, err := runPhase(ctx, run, provision.ProvisionSteps(), 0); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if f := run.Facts(); f.RoleName != "legacy-replication" || !f.RoleAdopted || f.RoleCreatedAt != nil {
		t.Errorf("facts = %+v", f)
	}
	if w := res0(t, ctx, run, provision.StepEnsureReplicationRole).Warnings; len(w) != 0 {
		t.Errorf("adopting a role only S3 may assume warns %+v", w)
	}
	// The legacy rule replicates logs/ into the same destination, which
	// bucketbridge's rule for the whole bucket now outranks.
	if w := res0(t, ctx, run, provision.StepPutReplicationRule).Warnings; len(w) != 1 || w[0].Code != provision.WarningOverlappingRule || !strings.Contains(w[0].Message, `"legacy-logs"`) {
		t.Errorf("put_replication_rule warns %+v, want the overlap with legacy-logs", w)
	}
	cfg := e.replication(t, srcAcct, "us-east-1", awsfake.DemoSourceBucket)
	if cfg == nil || cfg.Role != arn || len(cfg.Rules) != 2 || *cfg.Rules[1].Priority != 8 {
		t.Errorf("configuration after adoption: %+v", cfg)
	}
	down := e.run(t, "req-adopt", spec, run.Facts())
	res, err := runPhase(ctx, down, provision.DeprovisionSteps(), 0)
	if err != nil {
		t.Fatalf("deprovision: %v", err)
	}
	if !res["delete_role"].Skipped {
		t.Errorf("delete_role = %+v, want skipped for an adopted role", res["delete_role"])
	}
	if _, err := e.cloud.IAM(srcAcct).GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String("legacy-replication")}); err != nil {
		t.Errorf("adopted role gone: %v", err)
	}
	names, err := e.cloud.IAM(srcAcct).ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String("legacy-replication")})
	if err != nil || len(names.PolicyNames) != 0 {
		t.Errorf("adopted role keeps inline policies %v (%v)", names, err)
	}
	cfg = e.replication(t, srcAcct, "us-east-1", awsfake.DemoSourceBucket)
	if cfg == nil || len(cfg.Rules) != 1 || cfg.Rules[0].ID != "legacy-logs" {
		t.Errorf("configuration after deprovisioning: %+v", cfg)
	}
}

// res0 runs one step again (every step is idempotent) and returns its result.
func res0(t *testing.T, ctx context.Context, run *provision.Run, name string) provision.Result {
	t.Helper()
	res, err := step(t, provision.ProvisionSteps(), name).Run(ctx, run)
	if err != nil {
		t.Fatalf("%s again: %v", name, err)
	}
	return res
}

// TestAdoptedRoleTrustedByOthersIsReported: adopting a role that principals
// other than S3 may assume goes on, with a warning naming them, since they
// get the replication permissions bucketbridge adds to it.
func TestAdoptedRoleTrustedByOthersIsReported(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	adoptExisting(e, `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Principal":{"Service":["s3.amazonaws.com","ec2.amazonaws.com"]},"Action":"sts:AssumeRole"},
		{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::333333333333:root"},"Action":["sts:AssumeRole","sts:TagSession"]},
		{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444444444444:root"},"Action":"s3:GetObject"}]}`)
	run := e.run(t, "req-adopt-wide", demoSpec(), provision.Facts{})
	res, err := runPhase(ctx, run, through(t, provision.ProvisionSteps(), provision.StepEnsureReplicationRole), 0)
	if err != nil {
		t.Fatal(err)
	}
	w := res[provision.StepEnsureReplicationRole].Warnings
	if len(w) != 1 || w[0].Code != provision.WarningAdoptedRoleTrust {
		t.Fatalf("warnings %+v, want one about the role's trust", w)
	}
	for _, want := range []string{"Service:ec2.amazonaws.com", "AWS:arn:aws:iam::333333333333:root", "legacy-replication"} {
		if !strings.Contains(w[0].Message, want) {
			t.Errorf("warning %q does not name %q", w[0].Message, want)
		}
	}
	if strings.Contains(w[0].Message, "444444444444") {
		t.Errorf("warning %q names a principal that may not assume the role", w[0].Message)
	}
}

// TestEnableVersioning: with enable_versioning an unversioned destination is
// versioned and replication works.
func TestEnableVersioning(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	spec := demoSpec()
	spec.Destination.Bucket = awsfake.DemoUnversionedBucket
	spec.EnableVersioning = true
	run := e.run(t, "req-ver", spec, provision.Facts{})
	res, err := runPhase(ctx, run, provision.ProvisionSteps(), 0)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	if !res["enable_versioning_destination"].Changed || res["enable_versioning_source"].Changed {
		t.Errorf("versioning steps: source %+v destination %+v", res["enable_versioning_source"], res["enable_versioning_destination"])
	}
	if run.Facts().VersioningEnabledAt == nil || run.Facts().CanaryLatency <= 0 {
		t.Errorf("facts = %+v", run.Facts())
	}
	// Deprovisioning deletes the bucket policy it created; versioning stays on.
	if _, err := runPhase(ctx, e.run(t, "req-ver", spec, run.Facts()), provision.DeprovisionSteps(), 0); err != nil {
		t.Fatalf("deprovision: %v", err)
	}
	if p := e.bucketPolicy(t, dstAcct, "us-west-2", awsfake.DemoUnversionedBucket); p != nil {
		t.Errorf("bucket policy left behind: %+v", p)
	}
	v, err := e.cloud.S3(dstAcct, "us-west-2").GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(awsfake.DemoUnversionedBucket)})
	if err != nil || v.Status != s3types.BucketVersioningStatusEnabled {
		t.Errorf("versioning after deprovisioning: %v %v", v, err)
	}
}

// TestNonDelegatedSourceKey: when KA's policy does not delegate to A's IAM,
// the role is added to it, and removed again.
func TestNonDelegatedSourceKey(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	provisioner := roleARN(srcAcct, awsfake.DefaultProvisionerRole)
	keyPolicy := doc(`{"Sid":"Admins","Effect":"Allow","Principal":{"AWS":"` + provisioner + `"},"Action":"kms:*","Resource":"*"}`)
	key := e.cloud.AddKey(srcAcct, "us-east-1", awsfake.KeyOptions{Policy: keyPolicy})
	if err := e.cloud.AddBucket(srcAcct, "us-east-1", "demo-source-strict", awsfake.BucketOptions{Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: key}); err != nil {
		t.Fatal(err)
	}
	spec := demoSpec()
	spec.Source.Bucket, spec.Source.KMSKeyARN = "demo-source-strict", key
	run := e.run(t, "req-strict", spec, provision.Facts{})
	res, err := runPhase(ctx, run, provision.ProvisionSteps(), 0)
	if err != nil {
		t.Fatalf("provision: %v", err)
	}
	if !run.Facts().SourceKeyNotDelegated || !res["update_source_key_policy"].Changed {
		t.Errorf("facts %+v, update_source_key_policy %+v", run.Facts(), res["update_source_key_policy"])
	}
	role := roleARN(srcAcct, policy.RoleName("demo-source-strict"))
	sid := policy.KeyStatementSid(policy.SidReplicaDecrypt, "demo-source-strict")
	if p, n := principalsOf(e.sessionKeyPolicy(t, srcAcct, "us-east-1", key), sid); n != 1 || !slices.Equal(p, []string{role}) {
		t.Errorf("KA statement %s: %d statements, principals %v", sid, n, p)
	}
	if _, err := runPhase(ctx, e.run(t, "req-strict", spec, run.Facts()), provision.DeprovisionSteps(), 0); err != nil {
		t.Fatalf("deprovision: %v", err)
	}
	checkDoc(t, "KA after deprovisioning", e.sessionKeyPolicy(t, srcAcct, "us-east-1", key), keyPolicy)
}

// TestWrongExternalID: a session with another ExternalId is refused, for good.
func TestWrongExternalID(t *testing.T) {
	t.Parallel()
	e := setup(t)
	s := fakeSessions(e.cloud, "not-the-external-id")
	_, err := s.Account(testCtx(t), srcAcct, "us-east-1")
	detail := permanentDetail(t, err)
	for _, want := range []string{"arn:aws:iam::111111111111:role/BucketbridgeProvisioner", "ExternalId"} {
		if !strings.Contains(detail, want) {
			t.Errorf("detail %q does not mention %q", detail, want)
		}
	}
}

// TestResolveAccountsMismatch: a session acting in another account than the
// request's fails resolve_accounts.
func TestResolveAccountsMismatch(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	run := e.run(t, "req-x", demoSpec(), provision.Facts{})
	run.Destination = run.Source
	_, err := step(t, provision.ProvisionSteps(), "resolve_accounts").Run(ctx, run)
	if d := permanentDetail(t, err); !strings.Contains(d, "acts in account 111111111111") {
		t.Errorf("detail %q", d)
	}
}

// TestTransientErrorsAreRetryable: throttling and 5xx are neither permanent
// nor final.
func TestTransientErrorsAreRetryable(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		fault func(f *awsfake.Faults)
	}{
		{"throttled S3", func(f *awsfake.Faults) { f.Throttle("s3:GetBucketPolicy", 1) }},
		{"throttled KMS", func(f *awsfake.Faults) { f.Throttle("kms:DescribeKey", 1) }},
		{"S3 5xx", func(f *awsfake.Faults) { f.Fail5xx("s3:HeadBucket", 1) }},
		{"KMS 5xx", func(f *awsfake.Faults) { f.Fail5xx("kms:GetKeyPolicy", 1) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			e := setup(t)
			run := e.run(t, "req-t", demoSpec(), provision.Facts{})
			tt.fault(e.cloud.Faults(dstAcct))
			inspect := step(t, provision.ProvisionSteps(), "inspect_destination")
			_, err := inspect.Run(ctx, run)
			if err == nil || provision.IsPermanent(err) {
				t.Fatalf("error %v: want a retryable one", err)
			}
			if _, err := inspect.Run(ctx, run); err != nil {
				t.Errorf("second attempt: %v", err)
			}
		})
	}
	t.Run("IAM 5xx", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		e := setup(t)
		run := e.run(t, "req-t", demoSpec(), provision.Facts{})
		e.cloud.Faults(srcAcct).Fail5xx("iam:CreateRole", 1)
		_, err := step(t, provision.ProvisionSteps(), "ensure_replication_role").Run(ctx, run)
		if err == nil || provision.IsPermanent(err) {
			t.Fatalf("error %v: want a retryable one", err)
		}
	})
}

// TestRoleInvisible: right after bucketbridge created the role, S3 and KMS
// reject it for a while; within the propagation timeout that is Retry, later it is
// permanent.
func TestRoleInvisible(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	e.cloud.Faults(srcAcct).RoleInvisibleFor(500 * time.Millisecond)
	steps := provision.ProvisionSteps()
	run := e.run(t, "req-inv", demoSpec(), provision.Facts{})
	if _, err := runPhase(ctx, run, through(t, steps, provision.StepEnsureReplicationRole), 0); err != nil {
		t.Fatalf("steps up to ensure_replication_role: %v", err)
	}
	for _, name := range []string{"update_destination_key_policy", "update_destination_bucket_policy"} {
		_, err := step(t, steps, name).Run(ctx, run)
		var re *provision.RetryError
		if !errors.As(err, &re) || re.After <= 0 {
			t.Errorf("%s while the role is invisible: %v, want Retry", name, err)
		}
		// The same answer long after the role was created is permanent.
		old := run.Facts()
		stale := time.Now().Add(-provision.DefaultPropagationTimeout - time.Second)
		old.RoleCreatedAt = &stale
		late := e.run(t, "req-inv", demoSpec(), old)
		if _, err := step(t, steps, name).Run(ctx, late); !provision.IsPermanent(err) {
			t.Errorf("%s outside the window: %v, want permanent", name, err)
		}
	}
	// Waiting as Retry asks (shortened) converges.
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range steps[len(through(t, steps, provision.StepEnsureReplicationRole)):len(through(t, steps, provision.StepPutReplicationRule))] {
		for {
			_, err := s.Run(ctx, run)
			var re *provision.RetryError
			if err == nil {
				break
			}
			if !errors.As(err, &re) || time.Now().After(deadline) {
				t.Fatalf("%s: %v", s.Name, err)
			}
			waitFor(ctx, 20*time.Millisecond)
		}
	}
	if _, err := step(t, steps, "verify").Run(ctx, run); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func waitFor(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// TestLostResponses: a mutating call that took effect but whose answer was
// lost is retried; the rerun converges without a duplicate statement or rule.
func TestLostResponses(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		account, op string
		unversioned bool
	}{
		{srcAcct, "iam:CreateRole", false},
		{srcAcct, "iam:PutRolePolicy", false},
		{dstAcct, "kms:PutKeyPolicy", false},
		{dstAcct, "s3:PutBucketPolicy", false},
		{srcAcct, "s3:PutBucketReplication", false},
		{dstAcct, "s3:PutBucketVersioning", true},
	} {
		t.Run(tt.op, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			e := setup(t)
			spec := demoSpec()
			if tt.unversioned {
				spec.Destination.Bucket, spec.EnableVersioning = awsfake.DemoUnversionedBucket, true
			}
			e.cloud.Faults(tt.account).LoseResponse(tt.op, 1)
			run := e.run(t, "req-lost", spec, provision.Facts{})
			if _, err := runPhase(ctx, run, provision.ProvisionSteps(), 3); err != nil {
				t.Fatalf("provision: %v", err)
			}
			if !tt.unversioned {
				e.checkDemoDocuments(t, "req-lost", []string{roleARN(srcAcct, srcRole)})
			}
		})
	}
	for _, tt := range []struct{ account, op string }{
		{srcAcct, "s3:DeleteBucketReplication"},
		{dstAcct, "s3:PutBucketPolicy"},
		{dstAcct, "kms:PutKeyPolicy"},
		{srcAcct, "iam:DeleteRolePolicy"},
		{srcAcct, "iam:DeleteRole"},
	} {
		t.Run("deprovision "+tt.op, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			e := setup(t)
			run := e.run(t, "req-lost", demoSpec(), provision.Facts{})
			if _, err := runPhase(ctx, run, provision.ProvisionSteps(), 0); err != nil {
				t.Fatalf("provision: %v", err)
			}
			e.cloud.Faults(tt.account).LoseResponse(tt.op, 1)
			if _, err := runPhase(ctx, e.run(t, "req-lost", demoSpec(), run.Facts()), provision.DeprovisionSteps(), 3); err != nil {
				t.Fatalf("deprovision: %v", err)
			}
			e.checkDemoClean(t)
		})
	}
}

// TestSharedDestination: two sources provisioned concurrently into one
// destination share B's statements, each role exactly once; deprovisioning
// one leaves the other working.
// otherSourceSpec adds a source bucket, demo-source-3, in a third account
// and returns a request from it into demo-destination.
func (e *fakeEnv) otherSourceSpec(t *testing.T) provision.Spec {
	t.Helper()
	const other = "333333333333"
	e.cloud.AddRole(other, awsfake.DefaultProvisionerRole, awsfake.ProvisionerTrustPolicy(awsfake.DemoServiceAccount, awsfake.DefaultExternalID), nil)
	key := e.cloud.AddKey(other, "us-east-1", awsfake.KeyOptions{})
	if err := e.cloud.AddBucket(other, "us-east-1", "demo-source-3", awsfake.BucketOptions{Versioning: s3types.BucketVersioningStatusEnabled, KMSKey: key}); err != nil {
		t.Fatal(err)
	}
	s := demoSpec()
	s.Source = provision.Side{AccountID: other, Region: "us-east-1", Bucket: "demo-source-3", KMSKeyARN: key}
	return s
}

func TestSharedDestination(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	spec1, spec2 := demoSpec(), e.otherSourceSpec(t)
	other := spec2.Source.AccountID
	run1 := e.run(t, "req-one", spec1, provision.Facts{})
	run2 := e.run(t, "req-two", spec2, provision.Facts{})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, r := range []*provision.Run{run1, run2} {
		wg.Go(func() { _, errs[i] = runPhase(ctx, r, provision.ProvisionSteps(), 0) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("provision: %v", err)
	}
	role1, role2 := roleARN(srcAcct, srcRole), roleARN(other, policy.RoleName("demo-source-3"))
	both := sorted(role1, role2)
	e.checkDemoDocuments(t, "req-one", both)
	dst := spec1.Destination
	bp := e.bucketPolicy(t, dstAcct, dst.Region, dst.Bucket)
	kp := e.keyPolicy(t, dstAcct, dst.Region, dst.KMSKeyARN)
	for _, c := range []struct {
		d   policy.Document
		sid string
	}{{*bp, policy.SidReplicaObjects}, {*bp, policy.SidReplicaBucket}, {kp, policy.KeyStatementSid(policy.SidReplicaEncrypt, dst.Bucket)}} {
		if p, n := principalsOf(c.d, c.sid); n != 1 || !slices.Equal(p, both) {
			t.Errorf("%s: %d statements, principals %v, want one with %v", c.sid, n, p, both)
		}
	}

	if _, err := runPhase(ctx, e.run(t, "req-one", spec1, run1.Facts()), provision.DeprovisionSteps(), 0); err != nil {
		t.Fatalf("deprovision one: %v", err)
	}
	bp = e.bucketPolicy(t, dstAcct, dst.Region, dst.Bucket)
	kp = e.keyPolicy(t, dstAcct, dst.Region, dst.KMSKeyARN)
	checkDoc(t, "bucket policy after deprovisioning one", *bp, doc(append([]string{`{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::demo-destination","arn:aws:s3:::demo-destination/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}`}, wantBucketStatements(dst, []string{role2})...)...))
	checkDoc(t, "key policy after deprovisioning one", kp, keyDoc(`{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":"kms:*","Resource":"*"}`, wantKeyStatement(dst, []string{role2})))
	// The other still replicates.
	if _, err := step(t, provision.ProvisionSteps(), "verify").Run(ctx, e.run(t, "req-two", spec2, run2.Facts())); err != nil {
		t.Errorf("verify of the remaining request: %v", err)
	}
}

// TestSharedWrite: a request whose role the last write of a shared
// document already named records that write instead of writing again, and
// the documents are still exact. A retried step, or a record older than
// the bound, writes again and so repairs a statement edited by hand.
func TestSharedWrite(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	spec1, spec2 := demoSpec(), e.otherSourceSpec(t)
	run1 := e.run(t, "req-one", spec1, provision.Facts{})
	run2 := e.run(t, "req-two", spec2, provision.Facts{})
	steps := provision.ProvisionSteps()
	untilRole := steps[:slices.IndexFunc(steps, func(d provision.StepDef) bool { return d.Name == provision.StepEnsureReplicationRole })+1]
	// req-two holds the destination and has its role when req-one writes.
	if _, err := runPhase(ctx, run2, untilRole, 0); err != nil {
		t.Fatalf("provision req-two up to its role: %v", err)
	}
	if _, err := runPhase(ctx, run1, steps, 0); err != nil {
		t.Fatalf("provision req-one: %v", err)
	}
	res, err := runPhase(ctx, run2, steps, 0)
	if err != nil {
		t.Fatalf("provision req-two: %v", err)
	}
	for _, name := range []string{provision.StepUpdateDestinationBucketPolicy, provision.StepUpdateDestinationKeyPolicy} {
		r := res[name]
		after, _ := json.Marshal(r.After)
		if r.Changed || !strings.Contains(string(after), `"written_by":"req-one"`) {
			t.Errorf("%s of req-two: changed %v, after %s; want the shared write of req-one", name, r.Changed, after)
		}
	}
	both := sorted(roleARN(srcAcct, srcRole), roleARN(spec2.Source.AccountID, policy.RoleName("demo-source-3")))
	e.checkDemoDocuments(t, "req-one", both)

	// Someone puts the destination's policy back as it was before.
	dst := spec1.Destination
	if _, err := run1.Destination.S3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(dst.Bucket), Policy: aws.String(awsfake.DemoDestinationPolicy)}); err != nil {
		t.Fatal(err)
	}
	write := step(t, steps, provision.StepUpdateDestinationBucketPolicy)
	fresh := e.run(t, "req-two", spec2, run2.Facts())
	if r, err := write.Run(ctx, fresh); err != nil || r.Changed {
		t.Fatalf("first attempt: changed %v, err %v; want the shared write relied on", r.Changed, err)
	}
	for _, c := range []struct {
		name  string
		tweak func(*provision.Run)
	}{
		{"a retried step", func(r *provision.Run) { r.Replication.Attempt = 1 }},
		{"an old record", func(r *provision.Run) { r.Now = func() time.Time { return time.Now().Add(time.Hour) } }},
	} {
		if _, err := run1.Destination.S3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(dst.Bucket), Policy: aws.String(awsfake.DemoDestinationPolicy)}); err != nil {
			t.Fatal(err)
		}
		r := e.run(t, "req-two", spec2, run2.Facts())
		c.tweak(r)
		if res, err := write.Run(ctx, r); err != nil || !res.Changed {
			t.Errorf("%s: changed %v, err %v; want the policy written again", c.name, res.Changed, err)
		}
		e.checkDemoDocuments(t, "req-one", both)
	}
}

// TestCanaryFailure: when a document is missing, verify writes the canary
// again while the request's last permission write may still be
// propagating, then says replication failed and what to check.
func TestCanaryFailure(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	spec := demoSpec()
	steps := provision.ProvisionSteps()
	run := e.run(t, "req-canary", spec, provision.Facts{})
	if _, err := runPhase(ctx, run, through(t, steps, provision.StepPutReplicationRule), 0); err != nil {
		t.Fatalf("provision: %v", err)
	}
	// Someone puts KB's default policy back, behind bucketbridge's back.
	dst := spec.Destination
	if _, err := e.cloud.KMS(dst.AccountID, dst.Region).PutKeyPolicy(ctx, &kms.PutKeyPolicyInput{KeyId: aws.String(dst.KMSKeyARN),
		PolicyName: aws.String("default"), Policy: aws.String(awsfake.DefaultKeyPolicy(dst.AccountID))}); err != nil {
		t.Fatal(err)
	}
	run.Config.PropagationTimeout = 300 * time.Millisecond
	res, err := step(t, steps, "verify").Run(ctx, run)
	d := permanentDetail(t, err)
	for _, want := range []string{"FAILED", "key policy", "bucket policy", "BB_PROPAGATION_TIMEOUT"} {
		if !strings.Contains(d, want) {
			t.Errorf("detail %q does not mention %q", d, want)
		}
	}
	b, _ := json.Marshal(res.After)
	if n := strings.Count(string(b), `"kind":"sse-kms"`); n < 2 || !strings.Contains(string(b), "written again") {
		t.Errorf("verify recorded %s: want every attempt of the SSE-KMS canary, the first ones written again", b)
	}
	out, lerr := e.cloud.S3(srcAcct, "us-east-1").ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(spec.Source.Bucket)})
	if lerr != nil || len(out.Versions) != 0 {
		t.Errorf("canary left behind: %v %v", out, lerr)
	}
}

// TestSourceDefaultEncryptionIsHandedOverBetweenRequests: two requests from
// one SSE-S3 bucket ask for the source key as its default, and the first is
// deprovisioned while the second is being provisioned. Whether the second
// decides before the first's removal reaches the setting (it then learns
// from the leaving request what the setting was, and the removal leaves it)
// or after (the removal restores it and the second sets it again), the
// setting stays while the second holds it, and the second's removal
// restores SSE-S3.
func TestSourceDefaultEncryptionIsHandedOverBetweenRequests(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		newFirst bool
	}{
		{"the new request decides while the old one is leaving", true},
		{"the old one restores before the new request decides", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			e := setup(t)
			spec := func(prefix string) provision.Spec {
				s := demoSpec()
				s.Source.Bucket, s.SetSourceDefaultEncryption, s.Rule.Prefix, s.Verify = awsfake.DemoSourceSSES3Bucket, true, prefix, false
				return s
			}
			defaultOf := func() string {
				t.Helper()
				out, err := e.cloud.S3(srcAcct, "us-east-1").GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(awsfake.DemoSourceSSES3Bucket)})
				if err != nil {
					t.Fatal(err)
				}
				d := out.ServerSideEncryptionConfiguration.Rules[0].ApplyServerSideEncryptionByDefault
				return string(d.SSEAlgorithm) + " " + aws.ToString(d.KMSMasterKeyID)
			}
			kmsKA, sseS3 := "aws:kms "+awsfake.DemoSourceKey, "AES256 "
			up, down := provision.ProvisionSteps(), provision.DeprovisionSteps()
			inspected := len(through(t, up, provision.StepInspectDestination))

			one := e.run(t, "req-one", spec("one/"), provision.Facts{})
			if _, err := runPhase(ctx, one, up, 0); err != nil {
				t.Fatal(err)
			}
			two := e.run(t, "req-two", spec("two/"), provision.Facts{})
			if _, err := runPhase(ctx, two, up[:inspected], 0); err != nil {
				t.Fatal(err)
			}
			leaving := e.run(t, "req-one", spec("one/"), one.Facts())
			if _, err := runPhase(ctx, leaving, through(t, down, provision.StepRemoveReplicationRule), 0); err != nil {
				t.Fatal(err)
			}
			rest := down[len(through(t, down, provision.StepRemoveReplicationRule)):]
			var removal map[string]provision.Result
			var err error
			if tt.newFirst {
				if _, err := runPhase(ctx, two, up[inspected:], 0); err != nil {
					t.Fatal(err)
				}
				removal, err = runPhase(ctx, leaving, rest, 0)
			} else {
				removal, err = runPhase(ctx, leaving, rest, 0)
				if got := defaultOf(); got != sseS3 {
					t.Errorf("after the only decided request left, the default is %q, want SSE-S3 restored", got)
				}
				if err == nil {
					_, err = runPhase(ctx, two, up[inspected:], 0)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			e.locks.done("req-one")
			if got := defaultOf(); got != kmsKA {
				t.Errorf("while the second request holds it, the default is %q, want %q", got, kmsKA)
			}
			if restored := removal[provision.StepRestoreSourceDefaultEncryption].Changed; restored == tt.newFirst {
				t.Errorf("the first request's removal restored the setting: %v, want %v", restored, !tt.newFirst)
			}
			if f := two.Facts(); !f.SourceEncryptionSet || f.SourceEncryptionBefore == nil || f.SourceEncryptionBefore.Default().Algorithm != policy.SSES3 {
				t.Errorf("the second request remembers %+v, want that it was SSE-S3", f.SourceEncryptionBefore)
			}
			if _, err := runPhase(ctx, e.run(t, "req-two", spec("two/"), two.Facts()), down, 0); err != nil {
				t.Fatal(err)
			}
			if got := defaultOf(); got != sseS3 {
				t.Errorf("after both left, the default is %q, want SSE-S3", got)
			}
		})
	}
}

// TestVerifyAgainDeletesWhatAnEarlierAttemptLeft: a verify that ran before
// for the request (here in the same run; after a crash, in an earlier one)
// may have left canary versions it never saw answered, so the next one
// deletes every version of the canary key, not only those it wrote.
func TestVerifyAgainDeletesWhatAnEarlierAttemptLeft(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	e := setup(t)
	spec := demoSpec()
	run := e.run(t, "req-1", spec, provision.Facts{})
	if _, err := runPhase(ctx, run, provision.ProvisionSteps(), 0); err != nil {
		t.Fatalf("provision: %v", err)
	}
	// What an attempt interrupted after its put leaves behind.
	key := provision.CanaryKey(run.Replication)
	if _, err := run.Source.S3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(spec.Source.Bucket), Key: aws.String(key),
		Body: strings.NewReader("left by an interrupted attempt")}); err != nil {
		t.Fatal(err)
	}
	if _, err := step(t, provision.ProvisionSteps(), provision.StepVerify).Run(ctx, run); err != nil {
		t.Fatalf("verify again: %v", err)
	}
	for _, side := range []provision.Side{spec.Source, spec.Destination} {
		out, err := e.cloud.S3(side.AccountID, side.Region).ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(side.Bucket), Prefix: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(out.Versions) + len(out.DeleteMarkers); n > 0 {
			t.Errorf("%s still holds %d versions of the canary", side.Bucket, n)
		}
	}
}
