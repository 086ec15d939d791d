package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/bucketbridge/bucketbridge/internal/policy"
)

// Without both profiles the run creates nothing, says what it needs, and
// claims nothing: make acceptance then exits 0.
func TestWithoutProfilesItSaysWhatItNeedsAndClaimsNothing(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{
		{},
		{"BB_ACCEPTANCE_SOURCE_PROFILE": "only-one"},
		{"BB_ACCEPTANCE_DESTINATION_PROFILE": "only-the-other"},
	} {
		var out bytes.Buffer
		if err := run(context.Background(), func(k string) string { return env[k] }, &out); err != nil {
			t.Errorf("with %v: %v, want nil", env, err)
		}
		for _, want := range []string{"BB_ACCEPTANCE_SOURCE_PROFILE", "BB_ACCEPTANCE_DESTINATION_PROFILE", "NOT RUN"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("with %v it says %q, which does not mention %s", env, out.String(), want)
			}
		}
		if strings.Contains(out.String(), "PASSED") {
			t.Errorf("with %v it claims success: %q", env, out.String())
		}
	}
}

func TestBadSettingsAreRefused(t *testing.T) {
	t.Parallel()
	env := map[string]string{"BB_ACCEPTANCE_TRUST_CONDITIONS": "perhaps", "BB_ACCEPTANCE_TIMEOUT": "soon"}
	err := run(context.Background(), func(k string) string { return env[k] }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "BB_ACCEPTANCE_TRUST_CONDITIONS") || !strings.Contains(err.Error(), "BB_ACCEPTANCE_TIMEOUT") {
		t.Errorf("error %v, want both settings named", err)
	}
}

// The run gives its provisioner roles exactly the policies of
// docs/PROVISIONER.md: they must be found there, parse once filled in, and
// keep no placeholder.
func TestTheDocumentedProvisionerPoliciesFillIn(t *testing.T) {
	t.Parallel()
	d, err := readProvisionerDocs("../../docs/PROVISIONER.md")
	if err != nil {
		t.Fatal(err)
	}
	p, err := provisionerPoliciesFor(d, "111111111111", "111111111111", "222222222222", "ext-id", "Boundary-1")
	if err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string]struct {
		doc  string
		want []string
	}{
		"trust":       {p.Trust, []string{"arn:aws:iam::111111111111:root", "ext-id"}},
		"source":      {p.Source, []string{"arn:aws:kms:*:111111111111:key/*", "arn:aws:iam::111111111111:policy/Boundary-1", "s3:PutEncryptionConfiguration", "s3:BypassGovernanceRetention", "s3:PutObjectRetention"}},
		"boundary":    {p.Boundary, []string{"s3:ReplicateObject", "kms:Decrypt"}},
		"destination": {p.Destination, []string{"arn:aws:kms:*:222222222222:key/*", "s3:BypassGovernanceRetention", "s3:GetBucketObjectLockConfiguration"}},
	} {
		if _, err := policy.Parse([]byte(doc.doc)); err != nil {
			t.Errorf("%s policy: %v", name, err)
		}
		for _, w := range doc.want {
			if !strings.Contains(doc.doc, w) {
				t.Errorf("%s policy lacks %s:\n%s", name, w, doc.doc)
			}
		}
	}
}

// The run reads verify's record as the provisioner writes it.
func TestCanariesAreReadFromVerifysRecord(t *testing.T) {
	t.Parallel()
	const keyB = "arn:aws:kms:us-west-2:222222222222:key/22222222-2222-4222-8222-222222222222"
	record := func(replicaKey string) []byte {
		return []byte(`{"canaries":[
 {"kind":"sse-kms","attempt":1,"object":"s3://x/k","version_id":"v1","encryption":"aws:kms","kms_key":"ka","status":"FAILED","outcome":"FAILED within 2m0s (BB_PROPAGATION_TIMEOUT) of the last write of a permission: written again"},
 {"kind":"sse-kms","attempt":2,"object":"s3://x/k","version_id":"v2","encryption":"aws:kms","kms_key":"ka","status":"COMPLETED","replica_encryption":"aws:kms","replica_kms_key":"` + replicaKey + `","latency_ms":812,"outcome":"replicated"},
 {"kind":"default-encryption","attempt":1,"object":"s3://x/k","version_id":"v3","encryption":"aws:kms","kms_key":"ka","status":"COMPLETED","replica_encryption":"aws:kms","replica_kms_key":"` + keyB + `","latency_ms":790,"outcome":"replicated"}]}`)
	}
	if err := canariesUnder("r", record(keyB), keyB); err != nil {
		t.Errorf("a record of two replicated canaries under KB: %v", err)
	}
	if err := canariesUnder("r", record("22222222-2222-4222-8222-222222222222"), keyB); err != nil {
		t.Errorf("a replica key given by ID: %v", err)
	}
	if err := canariesUnder("r", record("arn:aws:kms:us-west-2:222222222222:key/other"), keyB); err == nil {
		t.Error("a replica under another key passes")
	}
	if err := canariesUnder("r", []byte(`{"canaries":[{"kind":"sse-kms","status":"COMPLETED","replica_encryption":"aws:kms","replica_kms_key":"`+keyB+`"}]}`), keyB); err == nil {
		t.Error("a record without the default-encryption canary passes")
	}
}
