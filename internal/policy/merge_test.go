package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var cmpSorted = cmpopts.SortSlices(func(a, b string) bool { return a < b })

const (
	roleA = "arn:aws:iam::111111111111:role/bucketbridge-team-a-data"
	roleB = "arn:aws:iam::333333333333:role/bucketbridge-team-b-logs"
	roleC = "arn:aws:iam::444444444444:role/bucketbridge-c"
)

func readDoc(t *testing.T, name string) Document {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "real", name))
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, string(b))
}

func docJSON(t *testing.T, d Document) string {
	t.Helper()
	b, err := json.MarshalIndent(d, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func with(d Document, stmts ...Statement) Document {
	out := clone(d)
	out.Statement = append(out.Statement, stmts...)
	if out.Version == "" {
		out.Version = Version2012
	}
	return out
}

// padded returns a foreign bucket policy of about size bytes.
func padded(t *testing.T, size int) Document {
	t.Helper()
	d := Document{Version: Version2012, Statement: []Statement{{Sid: "Pad", Effect: "Deny", Principal: &Principal{All: true},
		Action: Values{"s3:DeleteBucket"}, Resource: Values{"arn:aws:s3:::team-a-data-replica"}}}}
	d.Statement[0].Condition = Condition{"StringNotLike": {"aws:PrincipalArn": {strings.Repeat("x", max(0, size-Size(d)-50))}}}
	for Size(d) < size {
		d.Statement[0].Condition["StringNotLike"]["aws:PrincipalArn"][0] += "x"
	}
	return d
}

func rule(id string, priority int32) ReplicationRule {
	p := priority
	prefix := ""
	return ReplicationRule{ID: id, Priority: &p, Status: "Enabled", Filter: &ReplicationRuleFilter{Prefix: &prefix},
		DeleteMarkerReplication: &StatusOnly{Status: "Disabled"},
		Destination:             &Destination{Bucket: "arn:aws:s3:::elsewhere"}}
}

func TestMergeReplicationRule(t *testing.T) {
	t.Parallel()
	in := testInput()
	ours := ReplicationRuleFor(in, Findings{})
	withPriority := func(r ReplicationRule, p int32) ReplicationRule { r.Priority = &p; return r }
	foreign := &ReplicationConfiguration{Role: roleA, Rules: []ReplicationRule{rule("their-rule", 7), rule("another", 3)}}
	legacyPrefix := "logs/"
	legacy := &ReplicationConfiguration{Role: roleA, Rules: []ReplicationRule{{ID: "v1", Status: "Enabled", Prefix: &legacyPrefix, Destination: &Destination{Bucket: "arn:aws:s3:::old"}}}}
	many := func(n int) *ReplicationConfiguration {
		c := &ReplicationConfiguration{Role: roleA}
		for i := range n {
			c.Rules = append(c.Rules, rule(fmt.Sprintf("r%d", i), int32(i)))
		}
		return c
	}
	changed := ours
	changed.Status = "Disabled"
	tests := []struct {
		name     string
		existing *ReplicationConfiguration
		want     *ReplicationConfiguration
		wantErr  error
	}{
		{"no configuration", nil, &ReplicationConfiguration{Role: roleA, Rules: []ReplicationRule{withPriority(ours, 1)}}, nil},
		{"foreign rules untouched, priority max+1", foreign,
			&ReplicationConfiguration{Role: roleA, Rules: []ReplicationRule{rule("their-rule", 7), rule("another", 3), withPriority(ours, 8)}}, nil},
		{"our rule replaced in place, priority kept",
			&ReplicationConfiguration{Role: roleA, Rules: []ReplicationRule{withPriority(changed, 2), rule("their-rule", 7)}},
			&ReplicationConfiguration{Role: roleA, Rules: []ReplicationRule{withPriority(ours, 2), rule("their-rule", 7)}}, nil},
		{"another role: adopt it", &ReplicationConfiguration{Role: roleB, Rules: foreign.Rules}, nil, &RoleConflictError{}},
		{"legacy schema", legacy, nil, ErrLegacyReplicationSchema},
		{"999 rules: the 1000th fits", many(999), nil, nil},
		{"1000 rules: no room", many(1000), nil, ErrLimitExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var before []byte
			if tt.existing != nil {
				before, _ = json.Marshal(tt.existing)
			}
			got, err := MergeReplicationRule(tt.existing, roleA, ours)
			if tt.existing != nil {
				if after, _ := json.Marshal(tt.existing); string(after) != string(before) {
					t.Error("MergeReplicationRule modified its input")
				}
			}
			var rc *RoleConflictError
			switch {
			case errors.As(tt.wantErr, &rc):
				if !errors.As(err, &rc) || rc.Existing != roleB {
					t.Fatalf("error = %v, want a RoleConflictError naming %s", err, roleB)
				}
				return
			case !errors.Is(err, tt.wantErr):
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			case err != nil:
				return
			case errors.Is(err, ErrLimitExceeded):
				var le *LimitError
				if !errors.As(err, &le) || le.Size != 1001 || le.Max != MaxReplicationRules {
					t.Errorf("limit error = %v, want 1001 of %d rules", err, MaxReplicationRules)
				}
				return
			}
			if tt.want == nil {
				if last := got.Rules[len(got.Rules)-1]; last.ID != ours.ID || *last.Priority != 999 {
					t.Errorf("last rule = %s priority %d, want ours at 999", last.ID, *last.Priority)
				}
				return
			}
			if diff := cmp.Diff(tt.want, &got, cmp.AllowUnexported(ReplicationConfiguration{}, ReplicationRule{})); diff != "" {
				t.Errorf("configuration (-want +got):\n%s", diff)
			}
			again, err := MergeReplicationRule(&got, roleA, ours)
			if err != nil || !ReplicationEqual(got, again) {
				t.Errorf("merging twice changed the configuration (err %v)", err)
			}
			back, del := RemoveReplicationRule(got, ours.ID)
			switch {
			case tt.existing != nil && slices.ContainsFunc(tt.existing.Rules, func(r ReplicationRule) bool { return r.ID == ours.ID }):
				// remove(merge(c)) = c holds only for a c without our rule.
			case tt.existing == nil:
				if !del {
					t.Error("removing the only rule did not say delete the configuration")
				}
			case del || !ReplicationEqual(back, *tt.existing):
				t.Errorf("remove(merge(c)) != c (delete %v)", del)
			}
		})
	}
}

func TestRemoveReplicationRule(t *testing.T) {
	t.Parallel()
	ours := rule(RuleID("req-1"), 4)
	tests := []struct {
		name       string
		existing   ReplicationConfiguration
		want       []ReplicationRule
		wantDelete bool
	}{
		{"ours only", ReplicationConfiguration{Role: roleA, Rules: []ReplicationRule{ours}}, []ReplicationRule{}, true},
		{"mixed", ReplicationConfiguration{Role: roleA, Rules: []ReplicationRule{rule("a", 1), ours, rule("b", 2)}}, []ReplicationRule{rule("a", 1), rule("b", 2)}, false},
		{"foreign only", ReplicationConfiguration{Role: roleA, Rules: []ReplicationRule{rule("a", 1)}}, []ReplicationRule{rule("a", 1)}, false},
		{"another of ours stays", ReplicationConfiguration{Role: roleA, Rules: []ReplicationRule{ours, rule(RuleID("req-2"), 5)}}, []ReplicationRule{rule(RuleID("req-2"), 5)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, del := RemoveReplicationRule(tt.existing, ours.ID)
			if del != tt.wantDelete {
				t.Errorf("deleteConfig = %v, want %v", del, tt.wantDelete)
			}
			if diff := cmp.Diff(tt.want, got.Rules, cmp.AllowUnexported(ReplicationRule{})); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
			if got.Role != tt.existing.Role {
				t.Errorf("Role = %s, want %s", got.Role, tt.existing.Role)
			}
		})
	}
}

func TestReplicationKeepsUnknownFields(t *testing.T) {
	t.Parallel()
	// Shaped like json.Marshal of an aws-sdk-go-v2 s3types.ReplicationConfiguration, plus a
	// field S3 might add tomorrow; the SDK writes empty enums as "" and nil pointers as null.
	const in = `{"Role":"arn:aws:iam::111111111111:role/r","Rules":[{"Destination":{"Bucket":"arn:aws:s3:::d","AccessControlTranslation":null,"Account":null,"EncryptionConfiguration":null,"Metrics":null,"ReplicationTime":null,"StorageClass":""},"Status":"Enabled","DeleteMarkerReplication":{"Status":"Disabled"},"ExistingObjectReplication":null,"Filter":{"And":{"Prefix":"p/","Tags":[{"Key":"k","Value":"v"}]},"Prefix":null,"Tag":null},"ID":"theirs","Prefix":null,"Priority":3,"SourceSelectionCriteria":null,"FutureField":{"Mode":"Fast"}}]}`
	c, err := ParseReplicationConfiguration([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	merged, err := MergeReplicationRule(&c, "arn:aws:iam::111111111111:role/r", ReplicationRuleFor(testInput(), Findings{}))
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(merged)
	if err != nil {
		t.Fatal(err)
	}
	const wantTheirs = `{"ID":"theirs","Priority":3,"Status":"Enabled","Filter":{"And":{"Prefix":"p/","Tags":[{"Key":"k","Value":"v"}]}},"DeleteMarkerReplication":{"Status":"Disabled"},"Destination":{"Bucket":"arn:aws:s3:::d"},"FutureField":{"Mode":"Fast"}}`
	if !strings.Contains(string(out), wantTheirs) {
		t.Errorf("their rule did not survive the merge:\n got %s\nwant it to contain %s", out, wantTheirs)
	}
	back, _ := RemoveReplicationRule(merged, RuleID(testInput().RequestID))
	if !ReplicationEqual(back, c) {
		t.Errorf("remove(merge(c)) != c")
	}
}

// TestMergeDoesNotAlias proves results share no memory with inputs: the provisioner records
// the before and after documents of a step, and an edit to one must not show in the other.
func TestMergeDoesNotAlias(t *testing.T) {
	t.Parallel()
	c := ReplicationConfiguration{Role: roleA, Rules: []ReplicationRule{rule("theirs", 1)}}
	c.Rules[0].Filter.And = &ReplicationRuleAndOperator{Tags: []Tag{{Key: new("k")}}}
	before, _ := json.Marshal(c)
	merged, err := MergeReplicationRule(&c, roleA, ReplicationRuleFor(testInput(), Findings{}))
	if err != nil {
		t.Fatal(err)
	}
	*merged.Rules[0].Priority = 99
	*merged.Rules[0].Filter.Prefix = "changed"
	*merged.Rules[0].Filter.And.Tags[0].Key = "changed"
	merged.Rules[0].Destination.Bucket = "changed"
	if after, _ := json.Marshal(c); string(after) != string(before) {
		t.Errorf("editing the merged configuration changed the input:\n%s\n%s", before, after)
	}

	doc := with(Document{}, DestinationBucketPolicyStatements(grantB(roleB))...)
	docBefore := docJSON(t, doc)
	m, err := SyncBucketPolicy(doc, grantB(roleA, roleB))
	if err != nil {
		t.Fatal(err)
	}
	m.Document.Statement[0].Principal.IDs["AWS"][0] = "changed"
	m.Document.Statement[0].Action[0] = "changed"
	if docJSON(t, doc) != docBefore {
		t.Error("editing the synced policy changed the input")
	}
}

func TestOverlappingRules(t *testing.T) {
	t.Parallel()
	withPrefix := func(id, prefix string) ReplicationRule {
		r := rule(id, 1)
		r.Filter.Prefix = &prefix
		return r
	}
	tagged := func(id, prefix string) ReplicationRule {
		r := rule(id, 1)
		r.Filter = &ReplicationRuleFilter{And: &ReplicationRuleAndOperator{Prefix: &prefix, Tags: []Tag{{Key: new("team"), Value: new("a")}}}}
		return r
	}
	tagOnly := rule("tag-only", 1)
	tagOnly.Filter = &ReplicationRuleFilter{Tag: &Tag{Key: new("k"), Value: new("v")}}
	disabled := withPrefix("disabled", "logs/")
	disabled.Status = "Disabled"
	ours := withPrefix("bucketbridge-req-1", "logs/2024/")
	tests := []struct {
		name  string
		rules []ReplicationRule
		want  []string
	}{
		{"none", nil, nil},
		{"theirs is a prefix of ours", []ReplicationRule{withPrefix("logs", "logs/")}, []string{"logs"}},
		{"ours is a prefix of theirs", []ReplicationRule{withPrefix("deep", "logs/2024/01/")}, []string{"deep"}},
		{"same prefix", []ReplicationRule{withPrefix("same", "logs/2024/")}, []string{"same"}},
		{"whole bucket", []ReplicationRule{withPrefix("all", "")}, []string{"all"}},
		{"disjoint", []ReplicationRule{withPrefix("other", "images/"), withPrefix("sibling", "logs/2023/")}, nil},
		{"tags narrow, the prefix still overlaps", []ReplicationRule{tagged("tagged", "logs/"), tagOnly}, []string{"tagged", "tag-only"}},
		{"disabled and bucketbridge's own are not someone else's", []ReplicationRule{disabled, withPrefix("bucketbridge-req-2", "logs/")}, nil},
		{"ours is not its own overlap", []ReplicationRule{ours}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, r := range OverlappingRules(ReplicationConfiguration{Role: roleA, Rules: tt.rules}, ours) {
				got = append(got, r.ID)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("overlapping rules (-want +got):\n%s", diff)
			}
		})
	}
}
