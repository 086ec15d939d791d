package provision_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/bucketbridge/bucketbridge/internal/policy"
	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// motoURL is where the tests find moto.
func motoURL() string {
	if u := os.Getenv("MOTO_URL"); u != "" {
		return u
	}
	return "http://127.0.0.1:5000"
}

// motoConfig returns the SDK configuration cmd/server builds for
// AWS_ENDPOINT_URL=moto, with static credentials passed as an option (tests
// run in parallel, so not through the environment). It fails the test,
// saying how to start moto, when moto does not answer: never a silent skip.
func motoConfig(t *testing.T) aws.Config {
	t.Helper()
	u := motoURL()
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(u + "/moto-api/")
	if err != nil {
		t.Fatalf("moto does not answer at %s (%v): start it with `python3 -m moto.server -H 127.0.0.1 -p 5000 >/tmp/moto.log 2>&1 &` (or `make test`), or point MOTO_URL at a running moto", u, err)
	}
	resp.Body.Close()
	cfg, err := config.LoadDefaultConfig(context.Background(),
		config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("testing", "testing", "")),
		config.WithBaseEndpoint(u),
		config.WithRetryMaxAttempts(3),
	)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// randomAccount returns a fresh account ID: moto's state is shared between
// tests and runs.
func randomAccount() string { return fmt.Sprintf("7%011d", rand.Int64N(1e11)) }

func randomBucket(prefix string) string { return fmt.Sprintf("%s-%08x", prefix, rand.Uint32()) }

// motoSide creates a bucket (versioned or not) and a key in an account.
func motoSide(t *testing.T, a *provision.Account, region, bucket string, versioned bool, bucketPolicy string) provision.Side {
	t.Helper()
	ctx := context.Background()
	s3c, kmsc := a.S3.(*s3.Client), a.KMS.(*kms.Client)
	in := &s3.CreateBucketInput{Bucket: aws.String(bucket)}
	if region != "us-east-1" {
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(region)}
	}
	if _, err := s3c.CreateBucket(ctx, in); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	if versioned {
		if _, err := s3c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(bucket), VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
			t.Fatal(err)
		}
	}
	if bucketPolicy != "" {
		if _, err := s3c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(bucket), Policy: aws.String(bucketPolicy)}); err != nil {
			t.Fatal(err)
		}
	}
	key, err := kmsc.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("bucketbridge moto test")})
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	return provision.Side{AccountID: a.ID, Region: region, Bucket: bucket, KMSKeyARN: aws.ToString(key.KeyMetadata.Arn)}
}

func motoKeyPolicy(t *testing.T, a *provision.Account, key string) policy.Document {
	t.Helper()
	out, err := a.KMS.GetKeyPolicy(context.Background(), &kms.GetKeyPolicyInput{KeyId: aws.String(key), PolicyName: aws.String("default")})
	if err != nil {
		t.Fatalf("get key policy: %v", err)
	}
	return mustParse(t, aws.ToString(out.Policy))
}

func motoBucketPolicy(t *testing.T, a *provision.Account, bucket string) *policy.Document {
	t.Helper()
	out, err := a.S3.GetBucketPolicy(context.Background(), &s3.GetBucketPolicyInput{Bucket: aws.String(bucket)})
	if provision.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("get bucket policy: %v", err)
	}
	d := mustParse(t, aws.ToString(out.Policy))
	return &d
}

// withStatements returns d with statements (JSON objects) appended.
func withStatements(t *testing.T, d policy.Document, stmts ...string) policy.Document {
	t.Helper()
	out := d
	out.Statement = append(append([]policy.Statement(nil), d.Statement...), mustParse(t, doc(stmts...)).Statement...)
	return out
}

// TestMoto runs the provisioning steps (without verify: moto does not
// replicate) through NewAWSSessions against moto, reads every document back
// with the SDK, and deprovisions.
func TestMoto(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sessions := provision.NewAWSSessions(motoConfig(t), "BucketbridgeProvisioner", "moto-external-id")
	acctA, acctB := randomAccount(), randomAccount()
	a, err := sessions.Account(ctx, acctA, "us-east-1")
	if err != nil {
		t.Fatalf("session in A: %v", err)
	}
	b, err := sessions.Account(ctx, acctB, "us-west-2")
	if err != nil {
		t.Fatalf("session in B: %v", err)
	}
	y := randomBucket("bb-moto-dst")
	foreign := `{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::` + y + `","arn:aws:s3:::` + y + `/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}`
	spec := provision.Spec{
		Source:           motoSide(t, a, "us-east-1", randomBucket("bb-moto-src"), true, ""),
		Destination:      motoSide(t, b, "us-west-2", y, false, doc(foreign)),
		Rule:             provision.Rule{StorageClass: "STANDARD"},
		EnableVersioning: true,
	}
	keyA, keyB := motoKeyPolicy(t, a, spec.Source.KMSKeyARN), motoKeyPolicy(t, b, spec.Destination.KMSKeyARN)

	id := fmt.Sprintf("moto-%08x", rand.Uint32())
	l := newLocks()
	run, err := openRun(ctx, sessions, l, id, spec, provision.Facts{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := runPhase(ctx, run, provision.ProvisionSteps(), 0)
	if err != nil {
		t.Fatalf("provision against moto: %v", err)
	}
	if !res["verify"].Skipped || !res["enable_versioning_destination"].Changed {
		t.Errorf("verify %+v, enable_versioning_destination %+v", res["verify"], res["enable_versioning_destination"])
	}
	facts := run.Facts()
	enforced := facts.DestinationOwnerEnforced
	roleName := policy.RoleName(spec.Source.Bucket)
	role := roleARN(acctA, roleName)
	if facts.RoleName != roleName || facts.RoleAdopted || facts.SourceKeyNotDelegated {
		t.Errorf("facts = %+v", facts)
	}

	// Every document, read back with the SDK, is as docs/ARCHITECTURE.md (The documents) describes.
	bp := motoBucketPolicy(t, b, y)
	if bp == nil {
		t.Fatal("no bucket policy on the destination")
	}
	checkDoc(t, "destination bucket policy", *bp, doc(append([]string{foreign}, wantBucketStatements(spec.Destination, []string{role})...)...))
	if got, want := motoKeyPolicy(t, b, spec.Destination.KMSKeyARN), withStatements(t, keyB, wantKeyStatement(spec.Destination, []string{role})); !policy.Equal(got, want) {
		t.Errorf("KB's key policy:\n got %+v\nwant %+v", got, want)
	}
	if got := motoKeyPolicy(t, a, spec.Source.KMSKeyARN); !policy.Equal(got, keyA) {
		t.Errorf("KA's key policy changed: %+v", got)
	}
	r, err := a.IAM.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(roleName)})
	if err != nil {
		t.Fatalf("get role: %v", err)
	}
	checkDoc(t, "trust policy", mustDecodeIAM(t, aws.ToString(r.Role.AssumeRolePolicyDocument)), wantTrust)
	rp, err := a.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(roleName), PolicyName: aws.String(policy.RoleInlinePolicyName)})
	if err != nil {
		t.Fatalf("get role policy: %v", err)
	}
	checkDoc(t, "role policy", mustDecodeIAM(t, aws.ToString(rp.PolicyDocument)), wantRolePolicy(spec.Source, spec.Destination, enforced))
	rc, err := a.S3.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(spec.Source.Bucket)})
	if err != nil {
		t.Fatalf("get replication: %v", err)
	}
	cfg := fromSDK(t, rc.ReplicationConfiguration)
	want, err := policy.ParseReplicationConfiguration([]byte(`{"Role":"` + role + `","Rules":[` + wantRule(id, 1, spec.Destination, enforced) + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	// moto reads back the rule's identity and destination as written, not
	// its filter, delete marker or selection criteria (docs/ARCHITECTURE.md, Where moto differs from AWS).
	if cfg.Role != want.Role || len(cfg.Rules) != 1 {
		t.Fatalf("replication configuration: %+v", cfg)
	}
	g, w := cfg.Rules[0], want.Rules[0]
	gd, _ := jsonMarshal(g.Destination)
	wd, _ := jsonMarshal(w.Destination)
	if g.ID != w.ID || *g.Priority != *w.Priority || g.Status != w.Status || gd != wd {
		t.Errorf("replication rule:\n got %s %d %s %s\nwant %s %d %s %s", g.ID, *g.Priority, g.Status, gd, w.ID, *w.Priority, w.Status, wd)
	}
	v, err := b.S3.GetBucketVersioning(ctx, &s3.GetBucketVersioningInput{Bucket: aws.String(y)})
	if err != nil || v.Status != s3types.BucketVersioningStatusEnabled {
		t.Errorf("destination versioning %v %v", v, err)
	}

	// Deprovisioning removes exactly what was added.
	down, err := openRun(ctx, sessions, l, id, spec, run.Facts())
	if err != nil {
		t.Fatal(err)
	}
	res, err = runPhase(ctx, down, provision.DeprovisionSteps(), 0)
	if err != nil {
		t.Fatalf("deprovision against moto: %v", err)
	}
	for _, name := range []string{"remove_replication_rule", "remove_destination_bucket_policy", "remove_destination_key_policy", "delete_role_policy", "delete_role"} {
		if !res[name].Changed {
			t.Errorf("deprovision: %s changed nothing: %+v", name, res[name])
		}
	}
	if bp := motoBucketPolicy(t, b, y); bp == nil {
		t.Error("the foreign statement is gone")
	} else {
		checkDoc(t, "destination bucket policy after deprovisioning", *bp, doc(foreign))
	}
	if got := motoKeyPolicy(t, b, spec.Destination.KMSKeyARN); !policy.Equal(got, keyB) {
		t.Errorf("KB's key policy after deprovisioning: %+v", got)
	}
	if _, err := a.S3.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(spec.Source.Bucket)}); !provision.IsNotFound(err) {
		t.Errorf("replication configuration after deprovisioning: %v", err)
	}
	if _, err := a.IAM.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(roleName)}); !provision.IsNotFound(err) {
		t.Errorf("role after deprovisioning: %v", err)
	}
}

// TestMotoPermanentFailures: inspection fails for good, with a detail, on
// what moto can show.
func TestMotoPermanentFailures(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sessions := provision.NewAWSSessions(motoConfig(t), "BucketbridgeProvisioner", "moto-external-id")
	a, err := sessions.Account(ctx, randomAccount(), "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := sessions.Account(ctx, randomAccount(), "us-west-2")
	if err != nil {
		t.Fatal(err)
	}
	src := motoSide(t, a, "us-east-1", randomBucket("bb-moto-src"), true, "")
	dst := motoSide(t, b, "us-west-2", randomBucket("bb-moto-dst"), false, "")
	for _, tt := range []struct {
		name   string
		spec   provision.Spec
		detail string
	}{
		{"unversioned destination", provision.Spec{Source: src, Destination: dst, Rule: provision.Rule{StorageClass: "STANDARD"}}, "enable_versioning: true"},
		{"missing bucket", provision.Spec{Source: provision.Side{AccountID: src.AccountID, Region: src.Region, Bucket: randomBucket("bb-moto-none"), KMSKeyARN: src.KMSKeyARN}, Destination: dst, EnableVersioning: true}, "does not exist"},
	} {
		run, err := openRun(ctx, sessions, newLocks(), "moto-fail", tt.spec, provision.Facts{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = runPhase(ctx, run, provision.ProvisionSteps()[:3], 0)
		if err == nil {
			t.Errorf("%s: inspection passed", tt.name)
			continue
		}
		if d := permanentDetail(t, err); !strings.Contains(d, tt.detail) {
			t.Errorf("%s: detail %q does not mention %q", tt.name, d, tt.detail)
		}
	}
}

// TestMotoSourceDefaultEncryption: against moto, a source bucket without
// SSE-KMS default encryption warns, or, with set_source_default_encryption,
// gets SSE-KMS with its key and S3 Bucket Keys, given back on deprovisioning;
// a default of another key fails inspection naming both keys.
func TestMotoSourceDefaultEncryption(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sessions := provision.NewAWSSessions(motoConfig(t), "BucketbridgeProvisioner", "moto-external-id")
	a, err := sessions.Account(ctx, randomAccount(), "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := sessions.Account(ctx, randomAccount(), "us-west-2")
	if err != nil {
		t.Fatal(err)
	}
	defaultOf := func(bucket string) string {
		t.Helper()
		out, err := a.S3.GetBucketEncryption(ctx, &s3.GetBucketEncryptionInput{Bucket: aws.String(bucket)})
		switch {
		case provision.IsNotFound(err):
			return "none"
		case err != nil:
			t.Fatal(err)
		}
		r := out.ServerSideEncryptionConfiguration.Rules[0]
		return fmt.Sprintf("%s %s %v", r.ApplyServerSideEncryptionByDefault.SSEAlgorithm, aws.ToString(r.ApplyServerSideEncryptionByDefault.KMSMasterKeyID), aws.ToBool(r.BucketKeyEnabled))
	}
	for _, tt := range []struct {
		name    string
		set     bool
		other   bool
		warning bool
	}{
		{name: "no default, warned", warning: true},
		{name: "no default, set and restored", set: true},
		{name: "another key", other: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spec := provision.Spec{
				Source:      motoSide(t, a, "us-east-1", randomBucket("bb-moto-enc"), true, ""),
				Destination: motoSide(t, b, "us-west-2", randomBucket("bb-moto-enc-dst"), true, ""),
				Rule:        provision.Rule{StorageClass: "STANDARD"}, SetSourceDefaultEncryption: tt.set,
			}
			var otherKey string
			if tt.other {
				otherKey = motoSide(t, a, "us-east-1", randomBucket("bb-moto-enc-key"), false, "").KMSKeyARN
				if _, err := a.S3.PutBucketEncryption(ctx, &s3.PutBucketEncryptionInput{Bucket: aws.String(spec.Source.Bucket), ServerSideEncryptionConfiguration: &s3types.ServerSideEncryptionConfiguration{
					Rules: []s3types.ServerSideEncryptionRule{{ApplyServerSideEncryptionByDefault: &s3types.ServerSideEncryptionByDefault{SSEAlgorithm: s3types.ServerSideEncryptionAwsKms, KMSMasterKeyID: aws.String(otherKey)}}},
				}}); err != nil {
					t.Fatal(err)
				}
			}
			before := defaultOf(spec.Source.Bucket)
			run, err := openRun(ctx, sessions, newLocks(), fmt.Sprintf("moto-enc-%08x", rand.Uint32()), spec, provision.Facts{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := runPhase(ctx, run, provision.ProvisionSteps(), 0)
			if tt.other {
				d := permanentDetail(t, err)
				if !strings.Contains(d, otherKey) || !strings.Contains(d, spec.Source.KMSKeyARN) {
					t.Errorf("detail %q does not name both keys", d)
				}
				return
			}
			if err != nil {
				t.Fatalf("provision: %v", err)
			}
			if w := res[provision.StepInspectSource].Warnings; (len(w) == 1 && w[0].Code == provision.WarningSourceDefaultSSES3) != tt.warning {
				t.Errorf("inspect_source warnings %+v, want one about SSE-S3: %v", w, tt.warning)
			}
			during := defaultOf(spec.Source.Bucket)
			if want := fmt.Sprintf("aws:kms %s true", spec.Source.KMSKeyARN); tt.set != (during == want) {
				t.Errorf("default encryption while provisioned: %s (before %s)", during, before)
			}
			down, err := openRun(ctx, sessions, newLocks(), run.Replication.ID, spec, run.Facts())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := runPhase(ctx, down, provision.DeprovisionSteps(), 0); err != nil {
				t.Fatalf("deprovision: %v", err)
			}
			if after := defaultOf(spec.Source.Bucket); after != before {
				t.Errorf("default encryption after deprovisioning: %s, want %s as before", after, before)
			}
		})
	}
}
