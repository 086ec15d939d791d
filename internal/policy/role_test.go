package policy

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const (
	srcKA   = "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	srcKA2  = "arn:aws:kms:eu-west-1:111111111111:key/99999999-12ab-34cd-56ef-1234567890ab"
	roleSrc = "arn:aws:iam::111111111111:role/bucketbridge-team-a-data"
)

var iamSidRE = regexp.MustCompile(`^[A-Za-z0-9]+$`)

// name63 pads s to a 63-character bucket name, S3's longest.
func name63(s string) string { return (s + "-" + strings.Repeat("b", 63))[:63] }

// prefix64 is the i-th of many distinct 64-character prefixes.
func prefix64(i int) string { return fmt.Sprintf("%03d/", i) + strings.Repeat("p", 59) + "/" }

func roleInput(source string, targets ...RoleTarget) RoleInput {
	return RoleInput{Role: roleSrc, Source: Side{AccountID: "111111111111", Region: "eu-west-1", Bucket: source}, Targets: targets}
}

func target(dst, prefix string) RoleTarget {
	return RoleTarget{SourceKMSKeyARN: srcKA, Prefix: prefix, Destination: Side{AccountID: "222222222222", Region: "eu-central-1", Bucket: dst,
		KMSKeyARN: "arn:aws:kms:eu-central-1:222222222222:key/" + keyFor(dst)}}
}

// keyFor gives every destination bucket its own key ID.
func keyFor(bucket string) string {
	return fmt.Sprintf("abcd1234-ab12-cd34-ef56-%012x", hashString(bucket))
}

func hashString(s string) uint64 {
	var h uint64 = 1469598103934665603
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h & 0xffffffffffff
}

func hundredPrefixes() RoleInput {
	in := roleInput(name63("source"))
	for i := range 100 {
		in.Targets = append(in.Targets, target(name63("destination"), prefix64(i)))
	}
	return in
}

func twentyDestinations() RoleInput {
	in := roleInput(name63("source"))
	for d := range 20 {
		for _, p := range []string{"logs/", "exports/daily/", prefix64(d)} {
			in.Targets = append(in.Targets, target(name63(fmt.Sprintf("destination-%02d", d)), p))
		}
	}
	return in
}

func TestRolePoliciesGolden(t *testing.T) {
	t.Parallel()
	mixed := roleInput("team-a-data",
		target("team-a-data-replica", "logs/"),
		RoleTarget{SourceKMSKeyARN: srcKA2, Prefix: "", DestinationOwnerEnforced: true,
			Destination: Side{AccountID: "333333333333", Region: "us-west-2", Bucket: "archive", KMSKeyARN: "arn:aws:kms:us-west-2:333333333333:key/mrk-1234abcd12ab34cd56ef1234567890ab"}})
	mixed.Role = "arn:aws:iam::111111111111:role/service-role/s3crr_role_for_team-a-data"
	mixed.ObjectLock = true
	tests := []struct {
		name string
		in   RoleInput
	}{
		{"role-one-prefix.json", roleInput("team-a-data", target("team-a-data-replica", "logs/2024/"))},
		{"role-100-prefixes-64-characters.json", hundredPrefixes()},
		{"role-20-destinations.json", twentyDestinations()},
		{"role-object-lock-owner-enforced-two-keys-adopted.json", mixed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := BuildRolePolicies(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, got)
			checkRolePolicies(t, tt.in, got)
		})
	}
}

// checkRolePolicies checks what must hold of any result: every document within IAM's limits,
// every request granted exactly its prefix's objects, nothing else granted.
func checkRolePolicies(t *testing.T, in RoleInput, got RolePolicies) {
	t.Helper()
	inline := in.OtherInlineChars
	var docs []Document
	for _, p := range got.Inline {
		if !IsOwnedPolicyName(p.Name) {
			t.Errorf("inline policy %s is not named as bucketbridge's", p.Name)
		}
		inline += PolicyChars(p.Document)
		docs = append(docs, p.Document)
	}
	if inline > MaxRoleInlinePolicyChars {
		t.Errorf("inline policies take %d characters, over %d", inline, MaxRoleInlinePolicyChars)
	}
	if n := len(got.Managed) + in.OtherManagedPolicies; n > MaxManagedPoliciesPerRole {
		t.Errorf("%d managed policies attached, over %d", n, MaxManagedPoliciesPerRole)
	}
	role, _ := ParseRoleARN(in.Role)
	for i, p := range got.Managed {
		if p.Name != ManagedPolicyName(role.Name, i+1) || p.ARN != ManagedPolicyARN(role.Partition, role.AccountID, p.Name) || !IsOwnedPolicyName(p.Name) {
			t.Errorf("managed policy %d is %s (%s)", i, p.Name, p.ARN)
		}
		if n := PolicyChars(p.Document); n > MaxManagedPolicyChars {
			t.Errorf("managed policy %s takes %d characters, over %d", p.Name, n, MaxManagedPolicyChars)
		}
		docs = append(docs, p.Document)
	}
	for _, d := range docs {
		seen := map[string]bool{}
		for _, st := range d.Statement {
			if seen[st.Sid] || !iamSidRE.MatchString(st.Sid) {
				t.Errorf("Sid %q repeated or not IAM's form", st.Sid)
			}
			seen[st.Sid] = true
		}
	}
	got2, want := grantsOfAll(docs), map[string]bool{}
	x := "arn:aws:s3:::" + in.Source.Bucket
	srcActions := "s3:getobjectversionacl,s3:getobjectversionforreplication,s3:getobjectversiontagging"
	if in.ObjectLock {
		srcActions = "s3:getobjectlegalhold,s3:getobjectretention,s3:getobjectversionacl,s3:getobjectversionforreplication,s3:getobjectversiontagging"
	}
	for _, tg := range in.Targets {
		y := BucketARN(Partition(tg.Destination.Region), tg.Destination.Bucket)
		dstActions := "s3:objectownerOverridetobucketowner,s3:replicatedelete,s3:replicateobject,s3:replicatetags"
		if tg.DestinationOwnerEnforced {
			dstActions = "s3:replicatedelete,s3:replicateobject,s3:replicatetags"
		}
		dstActions = strings.ToLower(dstActions)
		viaX := canonicalStatement(Statement{Condition: Condition{"StringEquals": {"kms:ViaService": {S3ServiceName(in.Source.Region)}}}})
		viaY := canonicalStatement(Statement{Condition: Condition{"StringEquals": {"kms:ViaService": {S3ServiceName(tg.Destination.Region)}}}})
		for _, g := range []string{
			srcActions + "|" + x + "/" + tg.Prefix + "*||" + canonicalStatement(Statement{Condition: Condition{}}),
			dstActions + "|" + y + "/" + tg.Prefix + "*||" + canonicalStatement(Statement{Condition: Condition{}}),
			"kms:decrypt|" + tg.SourceKMSKeyARN + "|" + x + "|" + viaX,
			"kms:decrypt|" + tg.SourceKMSKeyARN + "|" + x + "/" + tg.Prefix + "*|" + viaX,
			"kms:decrypt,kms:encrypt,kms:generatedatakey|" + tg.Destination.KMSKeyARN + "|" + y + "|" + viaY,
			"kms:decrypt,kms:encrypt,kms:generatedatakey|" + tg.Destination.KMSKeyARN + "|" + y + "/" + tg.Prefix + "*|" + viaY,
		} {
			want[g] = true
		}
	}
	if len(in.Targets) > 0 {
		want["s3:getreplicationconfiguration,s3:listbucket|"+x+"||"+canonicalStatement(Statement{Condition: Condition{}})] = true
	}
	var missing, extra []string
	for g := range want {
		if !got2[g] {
			missing = append(missing, g)
		}
	}
	for g := range got2 {
		if !want[g] {
			extra = append(extra, g)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	if len(missing)+len(extra) > 0 {
		t.Errorf("grants differ from least privilege:\nmissing %s\nextra %s", strings.Join(missing, "\n  "), strings.Join(extra, "\n  "))
	}
}

func grantsOfAll(docs []Document) map[string]bool {
	out := map[string]bool{}
	for _, d := range docs {
		for g := range grantsOf(d) {
			out[g] = true
		}
	}
	return out
}

func TestBuildRolePolicies(t *testing.T) {
	t.Parallel()
	many := func(n int) RoleInput {
		in := roleInput(name63("source"))
		for i := range n {
			in.Targets = append(in.Targets, target(name63("destination"), prefix64(i)))
		}
		return in
	}
	tests := []struct {
		name        string
		in          func() RoleInput
		wantInline  int
		wantManaged int
		wantErr     error
		wantMsg     string
	}{
		{"no request: nothing", func() RoleInput { return roleInput("x") }, 0, 0, nil, ""},
		{"a few prefixes fit inline", func() RoleInput { return many(5) }, 1, 0, nil, ""},
		{"the 9th prefix of old no longer fails", func() RoleInput {
			in := roleInput("demo-source")
			for i := range 9 {
				in.Targets = append(in.Targets, target("demo-destination", fmt.Sprintf("p%d/", i+1)))
			}
			return in
		}, 1, 0, nil, ""},
		{"100 prefixes of 64 characters, 63-character buckets", hundredPrefixes, 1, 9, nil, ""},
		{"20 destinations", twentyDestinations, 1, 4, nil, ""},
		{"an adopted role's own inline policies leave less room", func() RoleInput {
			in := many(20)
			in.OtherInlineChars = 9000
			return in
		}, 1, 3, nil, ""},
		{"an adopted role's inline budget all taken: every grant managed", func() RoleInput {
			in := many(3)
			in.OtherInlineChars = MaxRoleInlinePolicyChars
			return in
		}, 0, 1, nil, ""},
		{"beyond AWS's quotas", func() RoleInput { return many(130) }, 0, 0, ErrLimitExceeded, "would be 12 policies, over the AWS limit of 10"},
		{"an adopted role's own managed policies count", func() RoleInput {
			in := many(40)
			in.OtherManagedPolicies = 9
			return in
		}, 0, 0, ErrLimitExceeded, "with 9 managed policies that are not bucketbridge's"},
		{"a role that is not a role", func() RoleInput {
			in := many(1)
			in.Role = "AROA27HJSWAHEPTTLIWSO"
			return in
		}, 0, 0, ErrInvalidInput, ""},
		{"a target without keys", func() RoleInput {
			in := many(1)
			in.Targets[0].SourceKMSKeyARN = ""
			return in
		}, 0, 0, ErrInvalidInput, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := tt.in()
			got, err := BuildRolePolicies(in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				var le *LimitError
				if errors.Is(err, ErrLimitExceeded) && (!errors.As(err, &le) || le.Unit != "policies") {
					t.Errorf("limit error %v does not count policies", err)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("error %q does not say %q", err, tt.wantMsg)
				}
				return
			}
			if len(got.Inline) != tt.wantInline || len(got.Managed) != tt.wantManaged {
				t.Errorf("%d inline and %d managed policies, want %d and %d", len(got.Inline), len(got.Managed), tt.wantInline, tt.wantManaged)
			}
			checkRolePolicies(t, in, got)
			// The set decides, not the order it came in.
			rng := rand.New(rand.NewPCG(7, 7))
			rng.Shuffle(len(in.Targets), func(i, j int) { in.Targets[i], in.Targets[j] = in.Targets[j], in.Targets[i] })
			in.Targets = append(in.Targets, in.Targets...)
			again, err := BuildRolePolicies(in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, again, cmp.AllowUnexported(Document{}, Statement{}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("shuffled, duplicated targets changed the documents (-first +again):\n%s", diff)
			}
		})
	}
}

func TestRolePoliciesObjectLock(t *testing.T) {
	t.Parallel()
	in := roleInput("team-a-data", target("team-a-data-replica", "logs/"))
	plain, err := BuildRolePolicies(in)
	if err != nil {
		t.Fatal(err)
	}
	in.ObjectLock = true
	locked, err := BuildRolePolicies(in)
	if err != nil {
		t.Fatal(err)
	}
	actions := func(p RolePolicies) Values {
		for _, st := range p.Inline[0].Document.Statement {
			if st.Sid == "SourceObjects" {
				return st.Action
			}
		}
		return nil
	}
	for _, a := range []string{"s3:GetObjectRetention", "s3:GetObjectLegalHold"} {
		if slices.Contains(actions(plain), a) || !slices.Contains(actions(locked), a) {
			t.Errorf("%s: without Object Lock %v, with %v", a, actions(plain), actions(locked))
		}
	}
}

// TestRoleWriteOrderKeepsEveryGrant adds and removes requests at random and writes the new
// documents in RoleWriteOrder's order: at every moment the role holds every grant that both
// the old and the new documents hold.
func TestRoleWriteOrderKeepsEveryGrant(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 9))
	all := hundredPrefixes().Targets
	live := map[int]bool{}
	for i := range 60 {
		live[i] = true
	}
	build := func() RolePolicies {
		in := roleInput(name63("source"))
		for i, ok := range live {
			if ok {
				in.Targets = append(in.Targets, all[i])
			}
		}
		p, err := BuildRolePolicies(in)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	docs := func(p RolePolicies) map[string]Document {
		out := map[string]Document{}
		for _, x := range p.Inline {
			out[x.Name] = x.Document
		}
		for _, x := range p.Managed {
			out[x.Name] = x.Document
		}
		return out
	}
	on := docs(build())
	for round := range 40 {
		for range 1 + rng.IntN(3) {
			i := rng.IntN(len(all))
			live[i] = !live[i]
		}
		want := build()
		next := docs(want)
		keep := grantsOfAll(slices.Collect(maps.Values(on)))
		wantGrants := grantsOfAll(slices.Collect(maps.Values(next)))
		order := RoleWriteOrder(on, want)
		if len(order) != len(next) {
			t.Fatalf("round %d: order %v does not list every policy of %d", round, order, len(next))
		}
		state := maps.Clone(on)
		for _, name := range order {
			state[name] = next[name]
			held := grantsOfAll(slices.Collect(maps.Values(state)))
			for g := range keep {
				if wantGrants[g] && !held[g] {
					t.Fatalf("round %d: after writing %s (order %v) the role lacks %s", round, name, order, g)
				}
			}
		}
		on = next
	}
}

// FuzzRolePoliciesLaws builds role documents for fuzzed sets of requests and checks the laws
// of checkRolePolicies, or a limit error.
func FuzzRolePoliciesLaws(f *testing.F) {
	f.Add(uint8(3), uint8(2), uint8(10), uint8(20), false, uint64(1))
	f.Add(uint8(1), uint8(120), uint8(64), uint8(63), true, uint64(2))
	f.Add(uint8(25), uint8(4), uint8(0), uint8(3), false, uint64(3))
	f.Fuzz(func(t *testing.T, dests, prefixes, prefixLen, bucketLen uint8, lock bool, seed uint64) {
		if dests == 0 || int(dests)*int(prefixes) > 400 || bucketLen < 3 || bucketLen > 63 || prefixLen > 200 {
			return
		}
		rng := rand.New(rand.NewPCG(seed, seed))
		name := func(s string) string { return (s + strings.Repeat("b", 63))[:bucketLen] }
		in := roleInput(name("src"))
		in.ObjectLock = lock
		in.OtherManagedPolicies = rng.IntN(3)
		for d := range int(dests) {
			for p := range int(prefixes) {
				prefix := fmt.Sprintf("%d/%d/", d, p) + strings.Repeat("q", int(prefixLen))
				tg := target(name(fmt.Sprintf("d%d", d)), prefix)
				tg.DestinationOwnerEnforced = rng.IntN(2) == 0
				if rng.IntN(4) == 0 {
					tg.SourceKMSKeyARN = srcKA2
				}
				in.Targets = append(in.Targets, tg)
			}
		}
		got, err := BuildRolePolicies(in)
		if errors.Is(err, ErrLimitExceeded) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		checkRolePolicies(t, in, got)
	})
}
