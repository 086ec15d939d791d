package policy

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSourceDefaultEncryption(t *testing.T) {
	t.Parallel()
	got, err := json.Marshal(SourceDefaultEncryption(srcKA))
	if err != nil {
		t.Fatal(err)
	}
	// The JSON shape of s3types.ServerSideEncryptionConfiguration.
	want := `{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms","KMSMasterKeyID":"` + srcKA + `"},"BucketKeyEnabled":true}]}`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("default encryption (-want +got):\n%s", diff)
	}
}

func TestDefaultEncryptionUsesKey(t *testing.T) {
	t.Parallel()
	read := func(s string) DefaultEncryption {
		var c BucketEncryption
		if err := json.Unmarshal([]byte(s), &c); err != nil {
			t.Fatal(err)
		}
		return c.Default()
	}
	tests := []struct {
		name        string
		config      string
		wantKMS     bool
		uses, known bool
	}{
		{"SSE-S3", `{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"},"BucketKeyEnabled":false}]}`, false, false, true},
		{"none", `{"Rules":[]}`, false, false, true},
		{"the request's key by ARN", `{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms","KMSMasterKeyID":"` + srcKA + `"},"BucketKeyEnabled":true}]}`, true, true, true},
		{"the request's key by ID", `{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms","KMSMasterKeyID":"1234abcd-12ab-34cd-56ef-1234567890ab"}}]}`, true, true, true},
		{"another key", `{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms","KMSMasterKeyID":"` + srcKA2 + `"}}]}`, true, false, true},
		{"dual-layer with the key", `{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms:dsse","KMSMasterKeyID":"` + srcKA + `"}}]}`, true, true, true},
		{"an alias: ask KMS", `{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms","KMSMasterKeyID":"alias/team-a"}}]}`, true, false, false},
		{"aws/s3 by omission: ask KMS", `{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"aws:kms"}}]}`, true, false, false},
	}
	for _, tt := range tests {
		d := read(tt.config)
		uses, known := d.UsesKey(srcKA)
		if d.IsKMS() != tt.wantKMS || uses != tt.uses || known != tt.known {
			t.Errorf("%s: IsKMS %v UsesKey %v,%v; want %v %v,%v", tt.name, d.IsKMS(), uses, known, tt.wantKMS, tt.uses, tt.known)
		}
	}
	if d := SourceDefaultEncryption(srcKA).Default(); !d.BucketKey || d.Algorithm != SSEKMS {
		t.Errorf("SourceDefaultEncryption reads back as %+v", d)
	}
}
