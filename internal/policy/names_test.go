package policy

import (
	"regexp"
	"strings"
	"testing"
)

var iamName = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)

func TestRoleName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 63)
	tests := []struct {
		bucket string
		want   string // "" means: shortened, checked below
	}{
		{"team-a-data", "bucketbridge-team-a-data"},
		{"my.dotted.bucket", "bucketbridge-my.dotted.bucket"},
		{strings.Repeat("b", 51), "bucketbridge-" + strings.Repeat("b", 51)}, // exactly 64
		{strings.Repeat("b", 52), ""},
		{long, ""},
		{long[:62] + "b", ""},
		{"bad/name with spaces", ""},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		got := RoleName(tt.bucket)
		if tt.want != "" && got != tt.want {
			t.Errorf("RoleName(%q) = %q, want %q", tt.bucket, got, tt.want)
		}
		if !iamName.MatchString(got) {
			t.Errorf("RoleName(%q) = %q, not a valid IAM role name", tt.bucket, got)
		}
		if !strings.HasPrefix(got, RoleNamePrefix) {
			t.Errorf("RoleName(%q) = %q, lacks prefix %q", tt.bucket, got, RoleNamePrefix)
		}
		if got != RoleName(tt.bucket) {
			t.Errorf("RoleName(%q) is not stable", tt.bucket)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("RoleName(%q) = RoleName(%q) = %q", tt.bucket, other, got)
		}
		seen[got] = tt.bucket
	}
}

func FuzzRoleName(f *testing.F) {
	for _, s := range []string{"", "a", strings.Repeat("x", 63), "ü-bucket", "a..b", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, bucket string) {
		got := RoleName(bucket)
		if !iamName.MatchString(got) {
			t.Fatalf("RoleName(%q) = %q, not a valid IAM role name", bucket, got)
		}
		if RoleName(bucket) != got {
			t.Fatalf("RoleName(%q) not stable", bucket)
		}
	})
}

func TestKeyStatementSid(t *testing.T) {
	t.Parallel()
	sidRE := regexp.MustCompile(`^[A-Za-z0-9]+$`)
	a, b := KeyStatementSid(SidReplicaEncrypt, "my-bucket"), KeyStatementSid(SidReplicaEncrypt, "mybucket")
	if a == b {
		t.Errorf("buckets my-bucket and mybucket share the Sid %s", a)
	}
	for _, s := range []string{a, b, KeyStatementSid(SidReplicaDecrypt, "x.y-z")} {
		if !sidRE.MatchString(s) || !IsOwnedSid(s) {
			t.Errorf("Sid %q: want [A-Za-z0-9]+ starting with %s", s, OwnedSidPrefix)
		}
	}
	if !strings.HasPrefix(a, "BucketbridgeReplicaEncryptMyBucket") {
		t.Errorf("Sid %q does not read as the bucket's name", a)
	}
}

func TestPartition(t *testing.T) {
	t.Parallel()
	for region, want := range map[string]string{"eu-west-1": "aws", "cn-north-1": "aws-cn", "us-gov-west-1": "aws-us-gov"} {
		if got := Partition(region); got != want {
			t.Errorf("Partition(%s) = %s, want %s", region, got, want)
		}
	}
	if got := S3ServiceName("cn-north-1"); got != "s3.cn-north-1.amazonaws.com.cn" {
		t.Errorf("S3ServiceName(cn-north-1) = %s", got)
	}
}
