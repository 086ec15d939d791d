package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/bucketbridge/bucketbridge/internal/policy"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// motoE2EToken is the API token of the moto end-to-end test.
const motoE2EToken = "e2e-moto-0123456789abcdef"

// motoAccount holds SDK clients acting in one moto account through an
// AssumeRole session, as the provisioner's own would.
type motoAccount struct {
	id  string
	iam *iam.Client
	kms *kms.Client
	s3  *s3.Client
}

// TestMotoEndToEnd runs the real product — run() with BB_CLOUD=aws, the HTTP
// API, the worker pool and AssumeRole sessions — against moto: it provisions
// a cross-account replication (verify off: moto does not replicate), reads
// every document back with the SDK and compares it with the documents of docs/ARCHITECTURE.md, then
// deprovisions and checks that exactly what was added is gone.
//
// Not parallel: run() loads the AWS configuration from the process
// environment (config.LoadDefaultConfig), which the test sets with t.Setenv.
func TestMotoEndToEnd(t *testing.T) {
	endpoint := cmp.Or(os.Getenv("MOTO_URL"), "http://127.0.0.1:5000")
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(endpoint + "/moto-api/")
	if err != nil {
		t.Fatalf("moto does not answer at %s (%v): start it with scripts/ensure-moto.sh (or run `make test`, which starts it), or point MOTO_URL at a running moto", endpoint, err)
	}
	resp.Body.Close()
	motoEnv(t, endpoint)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	acctA, acctB := fmt.Sprintf("6%011d", rand.Int64N(1e11)), fmt.Sprintf("6%011d", rand.Int64N(1e11))
	a := assumeMoto(t, ctx, base, acctA, "us-east-1")
	b := assumeMoto(t, ctx, base, acctB, "us-west-2")

	// The world: X and KA in A (us-east-1), Y and KB in B (us-west-2), and
	// a statement of B's own in Y's policy that must survive.
	x, y := fmt.Sprintf("bb-e2e-src-%08x", rand.Uint32()), fmt.Sprintf("bb-e2e-dst-%08x", rand.Uint32())
	const prefix = "reports/daily/"
	ka := motoBucketAndKey(t, ctx, a, "us-east-1", x)
	kb := motoBucketAndKey(t, ctx, b, "us-west-2", y)
	foreign := `{"Sid":"DenyInsecureTransport","Effect":"Deny","Principal":"*","Action":"s3:*",
		"Resource":["arn:aws:s3:::` + y + `","arn:aws:s3:::` + y + `/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}`
	if _, err := b.s3.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(y), Policy: aws.String(policyDoc(foreign))}); err != nil {
		t.Fatalf("put Y's bucket policy: %v", err)
	}
	keyA, keyB := motoGetKeyPolicy(t, ctx, a, ka), motoGetKeyPolicy(t, ctx, b, kb)
	// The documents drop the owner override when Y's Object Ownership is
	// "bucket owner enforced"; read what moto reports instead of assuming.
	ownerEnforced := false
	if oc, err := b.s3.GetBucketOwnershipControls(ctx, &s3.GetBucketOwnershipControlsInput{Bucket: aws.String(y)}); err == nil {
		for _, r := range oc.OwnershipControls.Rules {
			ownerEnforced = ownerEnforced || r.ObjectOwnership == s3types.ObjectOwnershipBucketOwnerEnforced
		}
	}

	apiURL := motoServer(t, acctA, acctB)
	body := fmt.Sprintf(`{"source":{"account_id":%q,"region":"us-east-1","bucket":%q,"kms_key_arn":%q},
		"destination":{"account_id":%q,"region":"us-west-2","bucket":%q,"kms_key_arn":%q},
		"rule":{"prefix":%q},"verify":false}`, acctA, x, ka, acctB, y, kb, prefix)
	status, created := call(t, motoE2EToken, "POST", apiURL+"/v1/replications", body)
	if status != http.StatusAccepted || created["cloud"] != "aws" {
		t.Fatalf("create = %d %v; want 202 with \"cloud\": \"aws\"", status, created)
	}
	id, _ := created["id"].(string)
	self := apiURL + "/v1/replications/" + id
	if done := waitForState(t, motoE2EToken, self); done["state"] != "succeeded" {
		t.Fatalf("request %s ended %v at %v: %v", id, done["state"], done["current_step"], done["last_error"])
	}
	_, steps := call(t, motoE2EToken, "GET", self+"/steps", "")
	stepStatus := map[string]any{}
	for _, s := range steps["items"].([]any) {
		if step := s.(map[string]any); step["phase"] == "provision" {
			stepStatus[step["name"].(string)] = step["status"]
		}
	}
	for _, name := range []string{"resolve_accounts", "inspect_source", "inspect_destination", "ensure_replication_role",
		"put_role_policy", "update_destination_key_policy", "update_destination_bucket_policy", "put_replication_rule"} {
		if stepStatus[name] != "succeeded" {
			t.Errorf("step %s = %v, want succeeded (all steps: %v)", name, stepStatus[name], stepStatus)
		}
	}

	// Every document, read back from moto, is as docs/ARCHITECTURE.md (The documents) describes.
	roleName := policy.RoleName(x)
	role := "arn:aws:iam::" + acctA + ":role/" + roleName
	r, err := a.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(roleName)})
	if err != nil {
		t.Fatalf("get role %s: %v", roleName, err)
	}
	if got := aws.ToString(r.Role.Arn); got != role {
		t.Errorf("role ARN = %s, want %s", got, role)
	}
	checkIAMDoc(t, "trust policy", aws.ToString(r.Role.AssumeRolePolicyDocument), policyDoc(
		`{"Sid":"S3ReplicationAssume","Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"sts:AssumeRole"}`))
	names, err := a.iam.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(roleName)})
	if err != nil {
		t.Fatalf("list role policies: %v", err)
	}
	if want := policy.RoleInlinePolicyName; len(names.PolicyNames) != 1 || names.PolicyNames[0] != want {
		t.Errorf("inline policies = %v, want [%s]", names.PolicyNames, want)
	}
	for _, name := range names.PolicyNames {
		rp, err := a.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(roleName), PolicyName: aws.String(name)})
		if err != nil {
			t.Fatalf("get role policy %s: %v", name, err)
		}
		checkIAMDoc(t, "inline role policy", aws.ToString(rp.PolicyDocument), wantE2ERolePolicy(x, y, prefix, ka, kb, ownerEnforced))
	}
	checkPolicy(t, "Y's bucket policy", motoGetBucketPolicy(t, ctx, b, y), policyDoc(foreign,
		`{"Sid":"BucketbridgeReplicaObjects","Effect":"Allow","Principal":{"AWS":"`+role+`"},
		  "Action":["s3:ReplicateObject","s3:ReplicateDelete","s3:ReplicateTags","s3:ObjectOwnerOverrideToBucketOwner"],
		  "Resource":"arn:aws:s3:::`+y+`/*"}`,
		`{"Sid":"BucketbridgeReplicaBucket","Effect":"Allow","Principal":{"AWS":"`+role+`"},
		  "Action":"s3:GetBucketVersioning","Resource":"arn:aws:s3:::`+y+`"}`))
	wantKB := keyB
	wantKB.Statement = append(append([]policy.Statement(nil), keyB.Statement...), mustPolicy(t, policyDoc(
		`{"Sid":"`+policy.KeyStatementSid(policy.SidReplicaEncrypt, y)+`","Effect":"Allow","Principal":{"AWS":"`+role+`"},
		  "Action":["kms:Encrypt","kms:GenerateDataKey","kms:Decrypt"],"Resource":"*",
		  "Condition":{"StringEquals":{"kms:ViaService":"s3.us-west-2.amazonaws.com"},
		               "StringLike":{"kms:EncryptionContext:aws:s3:arn":["arn:aws:s3:::`+y+`","arn:aws:s3:::`+y+`/*"]}}}`)).Statement...)
	checkDocument(t, "KB's key policy", motoGetKeyPolicy(t, ctx, b, kb), wantKB)
	checkDocument(t, "KA's key policy (delegates to A's IAM, so untouched)", motoGetKeyPolicy(t, ctx, a, ka), keyA)

	rc, err := a.s3.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(x)})
	if err != nil {
		t.Fatalf("get X's replication configuration: %v", err)
	}
	// moto reads back the rule's identity and destination as written, not
	// its filter, delete-marker setting or selection criteria (docs/ARCHITECTURE.md, Where moto differs from AWS).
	cfg := rc.ReplicationConfiguration
	if got := aws.ToString(cfg.Role); got != role || len(cfg.Rules) != 1 {
		t.Fatalf("X's replication configuration has role %s and %d rules, want %s and 1", got, len(cfg.Rules), role)
	}
	rule := cfg.Rules[0]
	if got, want := aws.ToString(rule.ID), "bucketbridge-"+id; got != want || rule.Status != s3types.ReplicationRuleStatusEnabled {
		t.Errorf("rule = %s %s, want %s Enabled", got, rule.Status, want)
	}
	d := rule.Destination
	var gotKey string
	if d != nil && d.EncryptionConfiguration != nil {
		gotKey = aws.ToString(d.EncryptionConfiguration.ReplicaKmsKeyID)
	}
	if d == nil || aws.ToString(d.Bucket) != "arn:aws:s3:::"+y || aws.ToString(d.Account) != acctB || gotKey != kb || d.StorageClass != s3types.StorageClassStandard {
		got, _ := json.Marshal(d)
		t.Errorf("rule destination = %s, want bucket arn:aws:s3:::%s, account %s, ReplicaKmsKeyID %s, STANDARD", got, y, acctB, kb)
	}
	if d != nil && !ownerEnforced && (d.AccessControlTranslation == nil || d.AccessControlTranslation.Owner != s3types.OwnerOverrideDestination) {
		t.Errorf("rule destination lacks AccessControlTranslation {Owner: Destination}")
	}

	// Deprovisioning removes exactly what was added.
	if status, out := call(t, motoE2EToken, "DELETE", self, ""); status != http.StatusAccepted {
		t.Fatalf("DELETE = %d %v", status, out)
	}
	if gone := waitForState(t, motoE2EToken, self); gone["state"] != "deprovisioned" {
		t.Fatalf("deprovisioning ended %v at %v: %v", gone["state"], gone["current_step"], gone["last_error"])
	}
	if _, err := a.s3.GetBucketReplication(ctx, &s3.GetBucketReplicationInput{Bucket: aws.String(x)}); apiCode(err) != "ReplicationConfigurationNotFoundError" {
		t.Errorf("X's replication configuration after deprovisioning: %v, want ReplicationConfigurationNotFoundError", err)
	}
	if _, err := a.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(roleName)}); apiCode(err) != "NoSuchEntity" {
		t.Errorf("role %s after deprovisioning: %v, want NoSuchEntity", roleName, err)
	}
	checkPolicy(t, "Y's bucket policy after deprovisioning", motoGetBucketPolicy(t, ctx, b, y), policyDoc(foreign))
	checkDocument(t, "KB's key policy after deprovisioning", motoGetKeyPolicy(t, ctx, b, kb), keyB)
}

// motoEnv points the SDK's default chain, which run() uses, at moto with
// moto's test credentials, and keeps anything of the machine's own AWS
// configuration out.
func motoEnv(t *testing.T, endpoint string) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"config", "credentials"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL":            endpoint,
		"AWS_ACCESS_KEY_ID":           "testing",
		"AWS_SECRET_ACCESS_KEY":       "testing",
		"AWS_REGION":                  "us-east-1",
		"AWS_CONFIG_FILE":             filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
		"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
		"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_IAM", "AWS_ENDPOINT_URL_KMS"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// motoServer runs the whole server with BB_CLOUD=aws on a fresh database
// until the test ends, and returns its base URL. Its grants make the test's
// caller requester on the source account and approver on the destination,
// so its requests need no one else's consent.
func motoServer(t *testing.T, source, destination string) string {
	t.Helper()
	return startServer(t, map[string]string{
		"DATABASE_URL":   storetest.NewDatabase(t),
		"BB_CLOUD":       "aws",
		"BB_API_TOKENS":  "e2e:" + motoE2EToken,
		"BB_EXTERNAL_ID": "bucketbridge-e2e-moto",
		"BB_AUTHZ_FILE": writeGrants(t, `grants:
  - {who: ["token:e2e"], accounts: ["`+source+`"], role: requester}
  - {who: ["token:e2e"], accounts: ["`+destination+`"], role: approver}
`),
	}).base
}

// assumeMoto returns clients acting in account through AssumeRole, which
// moto grants into any account.
func assumeMoto(t *testing.T, ctx context.Context, base aws.Config, account, region string) motoAccount {
	t.Helper()
	out, err := sts.NewFromConfig(base).AssumeRole(ctx, &sts.AssumeRoleInput{
		RoleArn:         aws.String("arn:aws:iam::" + account + ":role/bb-e2e-setup"),
		RoleSessionName: aws.String("bb-e2e-setup"),
	})
	if err != nil {
		t.Fatalf("assume a role in %s: %v", account, err)
	}
	c := out.Credentials
	cfg := base.Copy()
	cfg.Region = region
	cfg.Credentials = credentials.NewStaticCredentialsProvider(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
	return motoAccount{
		id:  account,
		iam: iam.NewFromConfig(cfg),
		kms: kms.NewFromConfig(cfg),
		s3:  s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }),
	}
}

// motoBucketAndKey creates a versioned bucket and a customer-managed key in
// the account's region, and returns the key's ARN.
func motoBucketAndKey(t *testing.T, ctx context.Context, a motoAccount, region, bucket string) string {
	t.Helper()
	in := &s3.CreateBucketInput{Bucket: aws.String(bucket)}
	if region != "us-east-1" {
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(region)}
	}
	if _, err := a.s3.CreateBucket(ctx, in); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
	if _, err := a.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(bucket),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatalf("enable versioning on %s: %v", bucket, err)
	}
	key, err := a.kms.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("bucketbridge e2e " + bucket)})
	if err != nil {
		t.Fatalf("create key in %s: %v", a.id, err)
	}
	return aws.ToString(key.KeyMetadata.Arn)
}

func motoGetKeyPolicy(t *testing.T, ctx context.Context, a motoAccount, key string) policy.Document {
	t.Helper()
	out, err := a.kms.GetKeyPolicy(ctx, &kms.GetKeyPolicyInput{KeyId: aws.String(key), PolicyName: aws.String("default")})
	if err != nil {
		t.Fatalf("get key policy of %s: %v", key, err)
	}
	return mustPolicy(t, aws.ToString(out.Policy))
}

func motoGetBucketPolicy(t *testing.T, ctx context.Context, a motoAccount, bucket string) policy.Document {
	t.Helper()
	out, err := a.s3.GetBucketPolicy(ctx, &s3.GetBucketPolicyInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("get bucket policy of %s: %v", bucket, err)
	}
	return mustPolicy(t, aws.ToString(out.Policy))
}

// wantE2ERolePolicy is as docs/ARCHITECTURE.md (The documents) describes inline policy for replicating X/P* into
// Y/P*.
func wantE2ERolePolicy(x, y, prefix, ka, kb string, ownerEnforced bool) string {
	dstSid, dstActions := "DestinationObjects", `"s3:ReplicateObject","s3:ReplicateDelete","s3:ReplicateTags","s3:ObjectOwnerOverrideToBucketOwner"`
	if ownerEnforced {
		dstSid, dstActions = "DestinationObjectsOwnerEnforced", `"s3:ReplicateObject","s3:ReplicateDelete","s3:ReplicateTags"`
	}
	xa, ya := "arn:aws:s3:::"+x, "arn:aws:s3:::"+y
	xp, yp := xa+"/"+prefix+"*", ya+"/"+prefix+"*"
	return policyDoc(
		`{"Sid":"SourceBucket","Effect":"Allow","Action":["s3:ListBucket","s3:GetReplicationConfiguration"],"Resource":"`+xa+`"}`,
		`{"Sid":"SourceObjects","Effect":"Allow",
		  "Action":["s3:GetObjectVersionForReplication","s3:GetObjectVersionAcl","s3:GetObjectVersionTagging"],"Resource":"`+xp+`"}`,
		`{"Sid":"`+dstSid+`","Effect":"Allow","Action":[`+dstActions+`],"Resource":"`+yp+`"}`,
		`{"Sid":"DecryptSource","Effect":"Allow","Action":"kms:Decrypt","Resource":"`+ka+`",
		  "Condition":{"StringEquals":{"kms:ViaService":"s3.us-east-1.amazonaws.com"},
		               "StringLike":{"kms:EncryptionContext:aws:s3:arn":["`+xa+`","`+xp+`"]}}}`,
		`{"Sid":"EncryptDestination","Effect":"Allow","Action":["kms:Encrypt","kms:GenerateDataKey","kms:Decrypt"],"Resource":"`+kb+`",
		  "Condition":{"StringEquals":{"kms:ViaService":"s3.us-west-2.amazonaws.com"},
		               "StringLike":{"kms:EncryptionContext:aws:s3:arn":["`+ya+`","`+yp+`"]}}}`)
}

func policyDoc(stmts ...string) string {
	return `{"Version":"2012-10-17","Statement":[` + strings.Join(stmts, ",") + `]}`
}

func mustPolicy(t *testing.T, s string) policy.Document {
	t.Helper()
	d, err := policy.Parse([]byte(s))
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return d
}

// checkIAMDoc compares a URL-encoded document read from IAM with want.
func checkIAMDoc(t *testing.T, what, encoded, want string) {
	t.Helper()
	got, err := policy.DecodeIAM(encoded)
	if err != nil {
		t.Fatalf("%s: decode %s: %v", what, encoded, err)
	}
	checkPolicy(t, what, got, want)
}

func checkPolicy(t *testing.T, what string, got policy.Document, want string) {
	t.Helper()
	checkDocument(t, what, got, mustPolicy(t, want))
}

// checkDocument fails unless got grants exactly what want does (the documents of docs/ARCHITECTURE.md,
// or the document as it was before bucketbridge touched it).
func checkDocument(t *testing.T, what string, got, want policy.Document) {
	t.Helper()
	if !policy.Equal(got, want) {
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		t.Errorf("%s is not what it should be:\n got %s\nwant %s", what, gb, wb)
	}
}

// apiCode is the AWS error code of err, or "" when it is not an API error.
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
