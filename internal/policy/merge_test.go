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

// bucketStatements returns our two destination bucket-policy statements naming roles.
func bucketStatements(roles ...string) []Statement {
	out := DestinationBucketStatements(testInput())
	for i := range out {
		out[i].Principal = awsPrincipal(roles...)
	}
	return out
}

func keyStatement(roles ...string) Statement {
	st := DestinationKeyStatement(testInput())
	st.Principal = awsPrincipal(roles...)
	return st
}

// inputFor returns the test input with the replication role named roleARN.
func inputFor(roleARN string) Input {
	in := testInput()
	in.Source.AccountID = strings.Split(roleARN, ":")[4]
	in.RoleName = strings.TrimPrefix(roleARN[strings.Index(roleARN, ":role/"):], ":role/")
	return in
}

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

func TestMergeBucketPolicy(t *testing.T) {
	t.Parallel()
	foreign := readDoc(t, "s3-replication-destination.json")
	deny := readDoc(t, "s3-control-tower-style.json")
	mixed := clone(foreign)
	mixed.Statement = []Statement{foreign.Statement[0], bucketStatements(roleB)[0], foreign.Statement[1], bucketStatements(roleB)[1]}
	mixedWant := clone(mixed)
	mixedWant.Statement[1], mixedWant.Statement[3] = bucketStatements(roleA, roleB)[0], bucketStatements(roleA, roleB)[1]
	// Someone hand-edited our statement: a "*" principal and a stray action. It is ours by Sid.
	edited := with(foreign, bucketStatements(roleB)...)
	edited.Statement[2].Principal = &Principal{All: true}
	edited.Statement[2].Action = append(edited.Statement[2].Action, "s3:DeleteObject")
	duplicated := with(foreign, bucketStatements(roleB)[0], bucketStatements(roleC)[0], bucketStatements(roleC)[1])

	tests := []struct {
		name     string
		existing Document
		role     string
		want     Document
		wantErr  error
	}{
		{"no policy", Document{}, roleA, with(Document{}, bucketStatements(roleA)...), nil},
		{"ours only, new role joins the sorted list", with(Document{}, bucketStatements(roleB)...), roleA, with(Document{}, bucketStatements(roleA, roleB)...), nil},
		{"ours only, role already there", with(Document{}, bucketStatements(roleA, roleB)...), roleA, with(Document{}, bucketStatements(roleA, roleB)...), nil},
		{"foreign only, appended after", foreign, roleA, with(foreign, bucketStatements(roleA)...), nil},
		{"mixed, ours updated in place", mixed, roleA, mixedWant, nil},
		{"deny statements kept", deny, roleA, with(deny, bucketStatements(roleA)...), nil},
		{"hand-edited statement of ours is restored", edited, roleA, with(foreign, bucketStatements(roleA)[0], bucketStatements(roleA, roleB)[1]), nil},
		{"duplicate Sids collapse into the first", duplicated, roleA,
			with(foreign, bucketStatements(roleA, roleB, roleC)[0], bucketStatements(roleA, roleC)[1]), nil},
		{"just under 20 KB after merge", padded(t, MaxBucketPolicyBytes-Size(with(Document{}, bucketStatements(roleA)...))-1), roleA, Document{}, nil},
		{"over 20 KB after merge", padded(t, MaxBucketPolicyBytes-100), roleA, Document{}, ErrLimitExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := docJSON(t, tt.existing)
			got, err := MergeBucketPolicy(tt.existing, DestinationBucketStatements(inputFor(tt.role))...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if docJSON(t, tt.existing) != before {
				t.Error("MergeBucketPolicy modified its input")
			}
			if err != nil {
				var le *LimitError
				if !errors.As(err, &le) || le.Max != MaxBucketPolicyBytes || le.Size <= le.Max || !strings.Contains(err.Error(), "bucket policy") {
					t.Errorf("limit error = %#v (%v), want bucket policy size over %d", le, err, MaxBucketPolicyBytes)
				}
				return
			}
			if tt.want.Statement == nil { // size case: only check the limit held
				if Size(got) > MaxBucketPolicyBytes {
					t.Errorf("merged policy is %d bytes", Size(got))
				}
				return
			}
			if diff := cmp.Diff(docJSON(t, tt.want), docJSON(t, got)); diff != "" {
				t.Errorf("merged policy (-want +got):\n%s", diff)
			}
			again, err := MergeBucketPolicy(got, DestinationBucketStatements(inputFor(tt.role))...)
			if err != nil || !Equal(got, again) {
				t.Errorf("merging twice changed the policy (err %v)", err)
			}
		})
	}
}

func TestRemoveFromBucketPolicy(t *testing.T) {
	t.Parallel()
	foreign := readDoc(t, "s3-replication-destination.json")
	sids := []string{SidReplicaObjects, SidReplicaBucket}
	// A NotPrincipal deny naming our role is not ours (wrong Sid) and must stay as it is.
	notPrincipal := Statement{Sid: "DenyAllButReplication", Effect: "Deny",
		NotPrincipal: &Principal{IDs: map[string]Values{"AWS": {roleA}}}, Action: Values{"s3:PutObject"}, Resource: Values{"arn:aws:s3:::team-a-data-replica/*"}}
	tests := []struct {
		name       string
		existing   Document
		role       string
		want       Document
		wantDelete bool
	}{
		{"no policy", Document{}, roleA, Document{}, true},
		{"ours only, last role: delete the policy", with(Document{}, bucketStatements(roleA)...), roleA, Document{Version: Version2012}, true},
		{"ours only, other roles stay", with(Document{}, bucketStatements(roleA, roleB)...), roleA, with(Document{}, bucketStatements(roleB)...), false},
		{"role not there: unchanged", with(foreign, bucketStatements(roleB)...), roleA, with(foreign, bucketStatements(roleB)...), false},
		{"foreign only: unchanged", foreign, roleA, foreign, false},
		{"mixed, last role: foreign stays", with(foreign, bucketStatements(roleA)...), roleA, foreign, false},
		{"foreign statement naming the role stays", with(foreign, notPrincipal, bucketStatements(roleA)[0]), roleA, with(foreign, notPrincipal), false},
		{"stale unique ID of a deleted role stays", with(Document{}, bucketStatements("AROAEXAMPLEUNIQUEID", roleA)...), roleA, with(Document{}, bucketStatements("AROAEXAMPLEUNIQUEID")...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, del := RemoveFromBucketPolicy(tt.existing, tt.role, sids...)
			if del != tt.wantDelete {
				t.Errorf("deletePolicy = %v, want %v", del, tt.wantDelete)
			}
			if diff := cmp.Diff(docJSON(t, tt.want), docJSON(t, got)); diff != "" {
				t.Errorf("policy after remove (-want +got):\n%s", diff)
			}
		})
	}
}

func TestKeyPolicy(t *testing.T) {
	t.Parallel()
	def := readDoc(t, "kms-default-key-policy.json")
	notPrincipal := readDoc(t, "kms-via-service-key-policy.json")
	otherBucket := inputFor(roleC)
	otherBucket.Destination.Bucket = "another-replica"
	otherStmt := DestinationKeyStatement(otherBucket)
	tests := []struct {
		name     string
		existing Document
		in       Input
		want     Document
		wantErr  error
	}{
		{"default key policy", def, inputFor(roleA), with(def, keyStatement(roleA)), nil},
		{"NotPrincipal deny kept", notPrincipal, inputFor(roleA), with(notPrincipal, keyStatement(roleA)), nil},
		{"second role joins", with(def, keyStatement(roleB)), inputFor(roleA), with(def, keyStatement(roleA, roleB)), nil},
		{"another bucket on the same key keeps its own statement", with(def, otherStmt), inputFor(roleA), with(def, otherStmt, keyStatement(roleA)), nil},
		{"over 32 KB", padded(t, MaxKeyPolicyBytes-50), inputFor(roleA), Document{}, ErrLimitExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := MergeKeyPolicy(tt.existing, DestinationKeyStatement(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				var le *LimitError
				if !errors.As(err, &le) || le.Max != MaxKeyPolicyBytes || !strings.Contains(err.Error(), fmt.Sprint(le.Size)) {
					t.Errorf("limit error = %v, want key policy size naming the size", err)
				}
				return
			}
			if diff := cmp.Diff(docJSON(t, tt.want), docJSON(t, got)); diff != "" {
				t.Errorf("key policy (-want +got):\n%s", diff)
			}
			back := RemoveFromKeyPolicy(got, tt.in.RoleARN(), DestinationKeyStatement(tt.in).Sid)
			if !Equal(back, tt.existing) {
				t.Errorf("remove(merge(policy)) != policy:\n%s", docJSON(t, back))
			}
		})
	}
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

func TestRolePolicies(t *testing.T) {
	t.Parallel()
	in := testInput()
	p := RolePolicy(in, Findings{})
	other := in
	other.Destination.Bucket = "second-destination"
	q := RolePolicy(other, Findings{})
	// filler returns someone else's inline policy that brings the role's total to total
	// characters once p is added.
	filler := func(total int) Document {
		d := Document{Version: Version2012, Statement: []Statement{{Effect: "Allow", Action: Values{"s3:GetObject"}, Resource: Values{""}}}}
		d.Statement[0].Resource[0] = strings.Repeat("r", total-InlinePolicyChars(map[string]Document{"p": p.Document, "d": d}))
		return d
	}
	tests := []struct {
		name     string
		existing map[string]Document
		want     []string
		wantErr  bool
	}{
		{"no policies", nil, []string{p.Name}, false},
		{"another destination kept", map[string]Document{q.Name: q.Document}, []string{p.Name, q.Name}, false},
		{"same name replaced", map[string]Document{p.Name: q.Document}, []string{p.Name}, false},
		{"exactly 10,240 characters in all", map[string]Document{"someone-elses": filler(MaxRoleInlinePolicyChars)}, []string{p.Name, "someone-elses"}, false},
		{"10,241 characters in all", map[string]Document{"someone-elses": filler(MaxRoleInlinePolicyChars + 1)}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := PutRolePolicy(tt.existing, p)
			if tt.wantErr {
				var le *LimitError
				if !errors.As(err, &le) || le.Max != MaxRoleInlinePolicyChars || le.Unit != "characters" {
					t.Fatalf("error = %v, want an inline policy LimitError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for n := range got {
				names = append(names, n)
			}
			if diff := cmp.Diff(tt.want, names, cmpSorted); diff != "" {
				t.Errorf("policy names (-want +got):\n%s", diff)
			}
			if !Equal(got[p.Name], p.Document) {
				t.Error("policy not written")
			}
		})
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

	doc := with(Document{}, bucketStatements(roleB)...)
	docBefore := docJSON(t, doc)
	m := MergeStatements(doc, bucketStatements(roleA)...)
	m.Statement[0].Principal.IDs["AWS"][0] = "changed"
	m.Statement[0].Action[0] = "changed"
	if docJSON(t, doc) != docBefore {
		t.Error("editing the merged policy changed the input")
	}
}
