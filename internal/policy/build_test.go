package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func testInput() Input {
	return Input{
		RequestID: "7d3f1c9e-2b4a-4e8f-9a61-0c5d8e2f4b10",
		Source: Side{AccountID: "111111111111", Region: "eu-west-1", Bucket: "team-a-data",
			KMSKeyARN: "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
		Destination: Side{AccountID: "222222222222", Region: "eu-central-1", Bucket: "team-a-data-replica",
			KMSKeyARN: "arn:aws:kms:eu-central-1:222222222222:key/abcd1234-ab12-cd34-ef56-abcdef123456"},
	}
}

// golden compares got with testdata/golden/name, or rewrites it with -update.
func golden(t *testing.T, name string, got any) {
	t.Helper()
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(b)); diff != "" {
		t.Errorf("%s differs (-golden +got); rerun with -update if intended:\n%s", path, diff)
	}
}

func TestPlanGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   func(*Input)
		f    Findings
	}{
		{"plan-whole-bucket.json", func(*Input) {}, Findings{}},
		{"plan-prefix-options.json", func(in *Input) {
			in.Prefix = "logs/2024/"
			in.DeleteMarkerReplication = true
			in.ReplicaModifications = true
			in.StorageClass = "STANDARD_IA"
			in.ReplicationTimeControl = true
			in.TrustConditions = true
		}, Findings{}},
		{"plan-owner-enforced-key-not-delegated.json", func(*Input) {}, Findings{DestinationOwnerEnforced: true, SourceKeyNotDelegated: true}},
		{"plan-object-lock-source-default-encryption.json", func(in *Input) { in.SetSourceDefaultEncryption = true }, Findings{SourceObjectLock: true}},
		{"plan-china-adopted-role.json", func(in *Input) {
			in.Source.Region, in.Destination.Region = "cn-north-1", "cn-northwest-1"
			in.Source.KMSKeyARN = "arn:aws-cn:kms:cn-north-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"
			in.Destination.KMSKeyARN = "arn:aws-cn:kms:cn-northwest-1:222222222222:key/abcd1234-ab12-cd34-ef56-abcdef123456"
			in.RoleName = "legacy-replication-role"
		}, Findings{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := testInput()
			tt.in(&in)
			got, err := Plan(in, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, got)
		})
	}
}

// TestPlanMatchesDesign checks the whole-bucket plan against DESIGN §10 written out by hand,
// so a golden file rewritten by mistake cannot hide a drift from the design.
func TestPlanMatchesDesign(t *testing.T) {
	t.Parallel()
	in := testInput()
	in.Prefix = "P/"
	in.TrustConditions = true
	got, err := Plan(in, Findings{})
	if err != nil {
		t.Fatal(err)
	}
	const (
		role = "arn:aws:iam::111111111111:role/bucketbridge-team-a-data"
		x    = "arn:aws:s3:::team-a-data"
		y    = "arn:aws:s3:::team-a-data-replica"
		ka   = "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"
		kb   = "arn:aws:kms:eu-central-1:222222222222:key/abcd1234-ab12-cd34-ef56-abcdef123456"
	)
	want := map[string]string{
		"trust": `{"Version": "2012-10-17", "Statement": [{"Sid": "S3ReplicationAssume",
		  "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole",
		  "Condition": {"StringEquals": {"aws:SourceAccount": "111111111111"}, "ArnLike": {"aws:SourceArn": "` + x + `"}}}]}`,
		"role": `{"Version": "2012-10-17", "Statement": [
		  {"Sid": "SourceBucket", "Effect": "Allow",
		   "Action": ["s3:ListBucket", "s3:GetReplicationConfiguration"], "Resource": "` + x + `"},
		  {"Sid": "SourceObjects", "Effect": "Allow",
		   "Action": ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"],
		   "Resource": "` + x + `/P/*"},
		  {"Sid": "DestinationObjects", "Effect": "Allow",
		   "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"],
		   "Resource": "` + y + `/P/*"},
		  {"Sid": "DecryptSource", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "` + ka + `",
		   "Condition": {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"},
		                 "StringLike": {"kms:EncryptionContext:aws:s3:arn": ["` + x + `", "` + x + `/P/*"]}}},
		  {"Sid": "EncryptDestination", "Effect": "Allow",
		   "Action": ["kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"], "Resource": "` + kb + `",
		   "Condition": {"StringEquals": {"kms:ViaService": "s3.eu-central-1.amazonaws.com"},
		                 "StringLike": {"kms:EncryptionContext:aws:s3:arn": ["` + y + `", "` + y + `/P/*"]}}}]}`,
		"key": `{"Statement": [{"Sid": "` + KeyStatementSid(SidReplicaEncrypt, "team-a-data-replica") + `", "Effect": "Allow",
		  "Principal": {"AWS": ["` + role + `"]},
		  "Action": ["kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"], "Resource": "*",
		  "Condition": {"StringEquals": {"kms:ViaService": "s3.eu-central-1.amazonaws.com"},
		                "StringLike": {"kms:EncryptionContext:aws:s3:arn": ["` + y + `", "` + y + `/*"]}}}]}`,
		"bucket": `{"Statement": [{"Sid": "BucketbridgeReplicaObjects", "Effect": "Allow",
		  "Principal": {"AWS": ["` + role + `"]},
		  "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"],
		  "Resource": "` + y + `/*"},
		  {"Sid": "BucketbridgeReplicaBucket", "Effect": "Allow",
		  "Principal": {"AWS": ["` + role + `"]},
		  "Action": ["s3:GetBucketVersioning"],
		  "Resource": "` + y + `"}]}`,
	}
	d := got.Documents
	if len(d.RolePolicies.Inline) != 1 || d.RolePolicies.Inline[0].Name != RoleInlinePolicyName || len(d.RolePolicies.Managed) != 0 {
		t.Fatalf("role policies = %+v, want the one inline policy %s", d.RolePolicies, RoleInlinePolicyName)
	}
	for name, doc := range map[string]Document{
		"trust":  d.TrustPolicy,
		"role":   d.RolePolicies.Inline[0].Document,
		"key":    {Statement: []Statement{d.DestinationKeyPolicyStatement}},
		"bucket": {Statement: d.DestinationBucketPolicyStatements},
	} {
		if w := mustParse(t, want[name]); !Equal(w, doc) {
			b, _ := json.Marshal(doc)
			t.Errorf("%s document differs from DESIGN §10:\n got %s\nwant %s", name, b, want[name])
		}
	}
	if got.ReplicationRoleARN != role {
		t.Errorf("role ARN = %s, want %s", got.ReplicationRoleARN, role)
	}
	wantRule := `{"ID": "bucketbridge-7d3f1c9e-2b4a-4e8f-9a61-0c5d8e2f4b10", "Status": "Enabled",
	 "Filter": {"Prefix": "P/"},
	 "DeleteMarkerReplication": {"Status": "Disabled"},
	 "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"},
	                             "ReplicaModifications": {"Status": "Disabled"}},
	 "Destination": {"Bucket": "` + y + `", "Account": "222222222222",
	                 "AccessControlTranslation": {"Owner": "Destination"},
	                 "EncryptionConfiguration": {"ReplicaKmsKeyID": "` + kb + `"},
	                 "StorageClass": "STANDARD"}}`
	var w ReplicationRule
	if err := json.Unmarshal([]byte(wantRule), &w); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(w, d.ReplicationRule, cmp.AllowUnexported(ReplicationRule{})); diff != "" {
		t.Errorf("replication rule differs from DESIGN §10 (-want +got):\n%s", diff)
	}
}

func TestPlanFindings(t *testing.T) {
	t.Parallel()
	in := testInput()
	common, err := Plan(in, Findings{})
	if err != nil {
		t.Fatal(err)
	}
	if common.Documents.SourceKeyPolicyStatement != nil {
		t.Error("source key statement present although KA delegates to A's IAM")
	}
	if b, _ := json.Marshal(common); bytes.Contains(b, []byte("source_key_policy_statement")) {
		t.Error("dry-run JSON mentions source_key_policy_statement although there is none")
	}
	enforced, err := Plan(in, Findings{DestinationOwnerEnforced: true, SourceKeyNotDelegated: true})
	if err != nil {
		t.Fatal(err)
	}
	if enforced.Documents.ReplicationRule.Destination.AccessControlTranslation != nil {
		t.Error("AccessControlTranslation kept although Y is bucket owner enforced")
	}
	for _, p := range enforced.Documents.RolePolicies.Inline {
		for _, st := range p.Document.Statement {
			for _, a := range st.Action {
				if a == "s3:ObjectOwnerOverrideToBucketOwner" {
					t.Errorf("statement %s keeps owner override although Y is bucket owner enforced", st.Sid)
				}
			}
		}
	}
	if common.Documents.SourceDefaultEncryption != nil {
		t.Error("source default encryption planned although the request does not ask for it")
	}
	in.SetSourceDefaultEncryption = true
	set, err := Plan(in, Findings{})
	if err != nil {
		t.Fatal(err)
	}
	want := SourceDefaultEncryption(in.Source.KMSKeyARN)
	if diff := cmp.Diff(&want, set.Documents.SourceDefaultEncryption); diff != "" {
		t.Errorf("planned source default encryption (-want +got):\n%s", diff)
	}
	src := enforced.Documents.SourceKeyPolicyStatement
	if src == nil {
		t.Fatal("no source key statement although KA does not delegate")
	}
	if diff := cmp.Diff(Values{in.RoleARN()}, src.Principal.IDs["AWS"]); diff != "" {
		t.Errorf("source key statement principal (-want +got):\n%s", diff)
	}
}

func TestPlanJSONShape(t *testing.T) {
	t.Parallel()
	got, err := Plan(testInput(), Findings{SourceKeyNotDelegated: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var shape struct {
		ReplicationRoleARN *string `json:"replication_role_arn"`
		Documents          map[string]json.RawMessage
	}
	if err := json.Unmarshal(b, &shape); err != nil || shape.ReplicationRoleARN == nil {
		t.Fatalf("no replication_role_arn in %s (%v)", b, err)
	}
	var keys []string
	for k := range shape.Documents {
		keys = append(keys, k)
	}
	want := []string{"destination_bucket_policy_statements", "destination_key_policy_statement", "replication_rule", "role_policies", "source_key_policy_statement", "trust_policy"}
	if diff := cmp.Diff(want, keys, cmpSorted); diff != "" {
		t.Errorf("documents keys (-want +got):\n%s", diff)
	}
	var rp struct {
		Inline []map[string]json.RawMessage `json:"inline"`
	}
	if err := json.Unmarshal(shape.Documents["role_policies"], &rp); err != nil || len(rp.Inline) != 1 || rp.Inline[0]["name"] == nil || rp.Inline[0]["document"] == nil {
		t.Errorf("role_policies = %s, want {inline: [{name, document}]}", shape.Documents["role_policies"])
	}
}

func TestPlanRejectsIncompleteInput(t *testing.T) {
	t.Parallel()
	in := testInput()
	in.Destination.KMSKeyARN = ""
	if _, err := Plan(in, Findings{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("Plan without destination key: error = %v, want ErrInvalidInput", err)
	}
}
