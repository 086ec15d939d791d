package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRoleARN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arn  string
		want RoleRef // zero: the ARN must be refused
	}{
		{"arn:aws:iam::111111111111:role/bucketbridge-team-a-data", RoleRef{"aws", "111111111111", "/", "bucketbridge-team-a-data"}},
		{"arn:aws:iam::111111111111:role/service-role/s3crr_role_for_team-a-data", RoleRef{"aws", "111111111111", "/service-role/", "s3crr_role_for_team-a-data"}},
		{"arn:aws:iam::111111111111:role/a/b/c/replicate", RoleRef{"aws", "111111111111", "/a/b/c/", "replicate"}},
		{"arn:aws-cn:iam::111111111111:role/r", RoleRef{"aws-cn", "111111111111", "/", "r"}},
		{"arn:aws-us-gov:iam::111111111111:role/r+=,.@-_", RoleRef{"aws-us-gov", "111111111111", "/", "r+=,.@-_"}},
		{"arn:aws:iam::111111111111:role/" + strings.Repeat("n", 64), RoleRef{"aws", "111111111111", "/", strings.Repeat("n", 64)}},
		{"arn:aws:iam::111111111111:role/" + strings.Repeat("n", 65), RoleRef{}},
		{"AROAEXAMPLEUNIQUEID12", RoleRef{}},
		{"arn:aws:iam::111111111111:root", RoleRef{}},
		{"arn:aws:iam::111111111111:user/bob", RoleRef{}},
		{"arn:aws:sts::111111111111:assumed-role/r/session", RoleRef{}},
		{"arn:aws:iam::11111111111:role/short-account", RoleRef{}},
		{"arn:aws:iam:us-east-1:111111111111:role/regional", RoleRef{}},
		{"arn:aws:iam::111111111111:role/", RoleRef{}},
		{"arn:aws:iam::111111111111:role//double-slash", RoleRef{}},
		{"arn:aws:iam::111111111111:role/path with space/r", RoleRef{}},
		{"arn:aws:iam::111111111111:role/*", RoleRef{}},
		{"arn:aws:s3:::bucket", RoleRef{}},
		{"", RoleRef{}},
	}
	for _, tt := range tests {
		got, err := ParseRoleARN(tt.arn)
		if tt.want == (RoleRef{}) {
			if !errors.Is(err, ErrInvalidRoleARN) {
				t.Errorf("ParseRoleARN(%q) = %+v, %v; want ErrInvalidRoleARN", tt.arn, got, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseRoleARN(%q): %v", tt.arn, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseRoleARN(%q) (-want +got):\n%s", tt.arn, diff)
		}
		if got.ARN() != tt.arn {
			t.Errorf("ParseRoleARN(%q).ARN() = %q", tt.arn, got.ARN())
		}
	}
}

func TestIsUniqueID(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"AROA27HJSWAHEPTTLIWSO":                                true, // 17 after the prefix
		"AIDACKCEVSQ6C2EXAMPLE":                                true,
		"AROAABCDEFGHIJKLMNOP":                                 true, // 16
		"AROAABCDEFGHIJKLMNOPQR":                               false,
		"AROAabcdefghijklmnopq":                                false,
		"AKIAIOSFODNN7EXAMPLE1":                                false, // an access key, not a principal
		"arn:aws:iam::111111111111:role/AROA27HJSWAHEPTTLIWSO": false,
		"*":            false,
		"111111111111": false,
	} {
		if got := IsUniqueID(s); got != want {
			t.Errorf("IsUniqueID(%q) = %v, want %v", s, got, want)
		}
	}
}

// An adopted role with a path is named by its full ARN in every document of the plan.
func TestPlanAdoptedRoleWithPath(t *testing.T) {
	t.Parallel()
	in := testInput()
	const adopted = "arn:aws:iam::111111111111:role/service-role/s3crr_role_for_team-a-data"
	in.AdoptedRoleARN = adopted
	in.RoleName = "ignored-when-the-arn-is-given"
	got, err := Plan(in, Findings{SourceKeyNotDelegated: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.ReplicationRoleARN != adopted {
		t.Errorf("role ARN = %s, want %s", got.ReplicationRoleARN, adopted)
	}
	principals := [][]string{got.Documents.DestinationKeyPolicyStatement.Principal.IDs["AWS"], got.Documents.SourceKeyPolicyStatement.Principal.IDs["AWS"]}
	for _, st := range got.Documents.DestinationBucketPolicyStatements {
		principals = append(principals, st.Principal.IDs["AWS"])
	}
	for _, p := range principals {
		if diff := cmp.Diff([]string{adopted}, p); diff != "" {
			t.Errorf("principal (-want +got):\n%s", diff)
		}
	}
}

// FuzzParseRoleARN: whatever parses prints back as itself, and the parts obey IAM's rules.
func FuzzParseRoleARN(f *testing.F) {
	f.Add("arn:aws:iam::111111111111:role/service-role/x")
	f.Add("arn:aws:iam::111111111111:role/x")
	f.Add("arn:aws:iam::111111111111:role//x")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRoleARN(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidRoleARN) {
				t.Fatalf("error %v does not match ErrInvalidRoleARN", err)
			}
			return
		}
		if r.ARN() != s {
			t.Fatalf("ARN() = %q, want %q", r.ARN(), s)
		}
		if !strings.HasPrefix(r.Path, "/") || !strings.HasSuffix(r.Path, "/") || !iamNameRE.MatchString(r.Name) || !digits12RE.MatchString(r.AccountID) {
			t.Fatalf("parts %+v break IAM's rules", r)
		}
	})
}
