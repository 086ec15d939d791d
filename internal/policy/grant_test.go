package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	deletedA = "AROA27HJSWAHEPTTLIWSO"
	deletedB = "AROAABCDEFGHIJKLMNOPQ"
	pathRole = "arn:aws:iam::111111111111:role/service-role/s3crr_role_for_team-a-data"
	dstB     = "team-a-data-replica"
	regionB  = "eu-central-1"
)

func grantB(roles ...string) Grant { return Grant{Bucket: dstB, Region: regionB, Roles: roles} }

// ours returns bucketbridge's two bucket statements naming principals exactly as given (which
// may be anything, as a hand-edited policy holds).
func ours(principal *Principal) []Statement {
	out := DestinationBucketPolicyStatements(grantB(roleA))
	for i := range out {
		out[i].Principal = clonePrincipal(principal)
	}
	return out
}

func aws(ids ...string) *Principal { return awsPrincipal(ids...) }

func TestSyncBucketPolicy(t *testing.T) {
	t.Parallel()
	foreign := readDoc(t, "s3-replication-destination.json")
	deny := readDoc(t, "s3-control-tower-style.json")
	foreignAROA := with(foreign, Statement{Sid: "LegacyReader", Effect: "Allow", Principal: aws(deletedA, roleC),
		Action: Values{"s3:GetObject"}, Resource: Values{"arn:aws:s3:::team-a-data-replica/*"}})
	noSid := with(foreign, Statement{Effect: "Deny", NotPrincipal: aws(deletedB), Action: Values{"s3:DeleteObject"}, Resource: Values{"arn:aws:s3:::team-a-data-replica/*"}})
	mixed := clone(foreign)
	mixed.Statement = []Statement{foreign.Statement[0], ours(aws(roleB, roleC))[0], foreign.Statement[1], ours(aws(roleB, roleC))[1]}
	mixedWant := clone(mixed)
	mixedWant.Statement[1], mixedWant.Statement[3] = DestinationBucketPolicyStatements(grantB(roleA, roleB))[0], DestinationBucketPolicyStatements(grantB(roleA, roleB))[1]

	tests := []struct {
		name        string
		existing    Document
		roles       []string
		want        Document
		wantDropped []DroppedPrincipal
		wantEmpty   bool
		wantErr     error
		wantMsg     []string // substrings of the error
	}{
		{name: "no policy, two roles in any order, duplicated", existing: Document{}, roles: []string{roleB, roleA, roleB},
			want: with(Document{}, DestinationBucketPolicyStatements(grantB(roleA, roleB))...)},
		{name: "foreign only: ours appended after", existing: foreign, roles: []string{roleA},
			want: with(foreign, DestinationBucketPolicyStatements(grantB(roleA))...)},
		{name: "ours replaced in place, a role no request needs is dropped", existing: mixed, roles: []string{roleA, roleB},
			want:        mixedWant,
			wantDropped: []DroppedPrincipal{{SidReplicaObjects, roleC, DroppedNotLive}, {SidReplicaBucket, roleC, DroppedNotLive}}},
		{name: "a path role is named by its full ARN", existing: deny, roles: []string{pathRole},
			want: with(deny, DestinationBucketPolicyStatements(grantB(pathRole))...)},
		{name: `"*" in ours never survives`, existing: with(foreign, ours(&Principal{All: true})...), roles: []string{roleA},
			want:        with(foreign, DestinationBucketPolicyStatements(grantB(roleA))...),
			wantDropped: []DroppedPrincipal{{SidReplicaObjects, "*", DroppedWildcard}, {SidReplicaBucket, "*", DroppedWildcard}}},
		{name: `{"AWS": "*"} and an account in ours never survive`, existing: with(foreign, ours(aws("*", roleA, "111111111111"))...), roles: []string{roleA},
			want: with(foreign, DestinationBucketPolicyStatements(grantB(roleA))...),
			wantDropped: []DroppedPrincipal{{SidReplicaObjects, "*", DroppedWildcard}, {SidReplicaObjects, "111111111111", DroppedNotRole},
				{SidReplicaBucket, "*", DroppedWildcard}, {SidReplicaBucket, "111111111111", DroppedNotRole}}},
		{name: "a deleted role's ID in ours is dropped and reported", existing: with(foreign, ours(aws(deletedA, roleA))...), roles: []string{roleA},
			want:        with(foreign, DestinationBucketPolicyStatements(grantB(roleA))...),
			wantDropped: []DroppedPrincipal{{SidReplicaObjects, deletedA, DroppedUniqueID}, {SidReplicaBucket, deletedA, DroppedUniqueID}}},
		{name: "a service principal in ours is dropped", existing: with(Document{}, ours(&Principal{IDs: map[string]Values{"Service": {"s3.amazonaws.com"}, "AWS": {roleA}}})...), roles: []string{roleA},
			want:        with(Document{}, DestinationBucketPolicyStatements(grantB(roleA))...),
			wantDropped: []DroppedPrincipal{{SidReplicaObjects, "Service:s3.amazonaws.com", DroppedNotRole}, {SidReplicaBucket, "Service:s3.amazonaws.com", DroppedNotRole}}},
		{name: "no live request: ours go, foreign stays", existing: with(foreign, ours(aws(roleA))...), roles: nil,
			want:        foreign,
			wantDropped: []DroppedPrincipal{{SidReplicaObjects, roleA, DroppedNotLive}, {SidReplicaBucket, roleA, DroppedNotLive}}},
		{name: "no live request and nothing else: delete the policy", existing: with(Document{}, ours(aws(roleA, deletedA))...), roles: nil,
			want: Document{Version: Version2012, Statement: []Statement{}}, wantEmpty: true,
			wantDropped: []DroppedPrincipal{{SidReplicaObjects, roleA, DroppedNotLive}, {SidReplicaObjects, deletedA, DroppedUniqueID},
				{SidReplicaBucket, roleA, DroppedNotLive}, {SidReplicaBucket, deletedA, DroppedUniqueID}}},
		{name: "duplicate Sids collapse into the first", existing: with(foreign, ours(aws(roleB))[0], ours(aws(roleC))[0], ours(aws(roleC))[1]), roles: []string{roleA},
			want: with(foreign, DestinationBucketPolicyStatements(grantB(roleA))...),
			wantDropped: []DroppedPrincipal{{SidReplicaObjects, roleB, DroppedNotLive}, {SidReplicaObjects, roleC, DroppedNotLive},
				{SidReplicaBucket, roleC, DroppedNotLive}}},
		{name: "a duplicate naming a live role reports only what goes", existing: with(foreign, ours(aws(roleA))[0], ours(aws(roleA, roleB))[0]), roles: []string{roleA},
			want:        with(foreign, DestinationBucketPolicyStatements(grantB(roleA))...),
			wantDropped: []DroppedPrincipal{{SidReplicaObjects, roleB, DroppedNotLive}}},
		{name: "a foreign statement naming a deleted role fails, naming its Sid", existing: with(foreignAROA, ours(aws(roleA))...), roles: []string{roleA},
			wantErr: ErrForeignInvalidPrincipal, wantMsg: []string{`statement "LegacyReader" names ` + deletedA, "remove that principal"}},
		{name: "a foreign statement without Sid is named by its position", existing: noSid, roles: []string{roleA},
			wantErr: ErrForeignInvalidPrincipal, wantMsg: []string{"statement #3 (it has no Sid) names " + deletedB}},
		{name: "even a removal fails while a foreign statement holds one", existing: with(foreignAROA, ours(aws(roleA))...), roles: nil,
			wantErr: ErrForeignInvalidPrincipal},
		{name: "a grant naming a deleted role is refused", existing: foreign, roles: []string{roleA, deletedA}, wantErr: ErrInvalidInput},
		{name: "a grant naming everyone is refused", existing: foreign, roles: []string{"*"}, wantErr: ErrInvalidInput},
		{name: "over 20 KB", existing: padded(t, MaxBucketPolicyBytes-200), roles: []string{roleA, roleB, roleC}, wantErr: ErrLimitExceeded, wantMsg: []string{"bucket policy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := docJSON(t, tt.existing)
			got, err := SyncBucketPolicy(tt.existing, grantB(tt.roles...))
			if docJSON(t, tt.existing) != before {
				t.Error("SyncBucketPolicy modified its input")
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				for _, m := range tt.wantMsg {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("error %q does not say %q", err, m)
					}
				}
				return
			}
			if diff := cmp.Diff(docJSON(t, tt.want), docJSON(t, got.Document)); diff != "" {
				t.Errorf("policy (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantDropped, got.Dropped); diff != "" {
				t.Errorf("dropped (-want +got):\n%s", diff)
			}
			if got.Empty != tt.wantEmpty {
				t.Errorf("Empty = %v, want %v", got.Empty, tt.wantEmpty)
			}
			again, err := SyncBucketPolicy(got.Document, grantB(tt.roles...))
			if err != nil || !Equal(again.Document, got.Document) || len(again.Dropped) != 0 {
				t.Errorf("syncing twice changed the policy or dropped %v (err %v)", again.Dropped, err)
			}
		})
	}
}

func TestSyncBucketPolicyStatementsAreLeastPrivilege(t *testing.T) {
	t.Parallel()
	got, err := SyncBucketPolicy(Document{}, grantB(roleA))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got.Document)
	if strings.Contains(string(b), "PutBucketVersioning") {
		t.Errorf("bucket statement grants s3:PutBucketVersioning: %s", b)
	}
	want := mustParse(t, `{"Version":"2012-10-17","Statement":[
	  {"Sid":"BucketbridgeReplicaObjects","Effect":"Allow","Principal":{"AWS":"`+roleA+`"},
	   "Action":["s3:ReplicateObject","s3:ReplicateDelete","s3:ReplicateTags","s3:ObjectOwnerOverrideToBucketOwner"],
	   "Resource":"arn:aws:s3:::team-a-data-replica/*"},
	  {"Sid":"BucketbridgeReplicaBucket","Effect":"Allow","Principal":{"AWS":"`+roleA+`"},
	   "Action":"s3:GetBucketVersioning","Resource":"arn:aws:s3:::team-a-data-replica"}]}`)
	if !Equal(want, got.Document) {
		t.Errorf("bucket policy differs from the design:\n%s", b)
	}
}

func TestSyncKeyPolicies(t *testing.T) {
	t.Parallel()
	def := readDoc(t, "kms-default-key-policy.json")
	notPrincipal := readDoc(t, "kms-via-service-key-policy.json")
	keyStmt := func(bucket string, principal *Principal) Statement {
		st := DestinationKeyPolicyStatements(Grant{Bucket: bucket, Region: regionB, Roles: []string{roleA}})[0]
		st.Principal = principal
		return st
	}
	otherBucket := keyStmt("another-replica", aws(roleC, deletedB))
	otherBucketClean := keyStmt("another-replica", aws(roleC))
	onlyDeleted := keyStmt("third-replica", aws(deletedA))
	srcGrant := Grant{Bucket: "team-a-data", Region: "eu-west-1", Roles: []string{roleA}}
	tests := []struct {
		name        string
		sync        func(Document, Grant) (Sync, error)
		existing    Document
		g           Grant
		want        Document
		wantDropped []DroppedPrincipal
		wantErr     error
	}{
		{name: "default key policy gains ours", sync: SyncDestinationKeyPolicy, existing: def, g: grantB(roleB, roleA),
			want: with(def, DestinationKeyPolicyStatements(grantB(roleA, roleB))...)},
		{name: "NotPrincipal deny kept", sync: SyncDestinationKeyPolicy, existing: notPrincipal, g: grantB(roleA),
			want: with(notPrincipal, DestinationKeyPolicyStatements(grantB(roleA))...)},
		{name: "another bucket's statement keeps its roles but loses a deleted role's ID", sync: SyncDestinationKeyPolicy,
			existing: with(def, otherBucket, keyStmt(dstB, aws(roleB))), g: grantB(roleA),
			want:        with(def, otherBucketClean, DestinationKeyPolicyStatements(grantB(roleA))[0]),
			wantDropped: []DroppedPrincipal{{otherBucket.Sid, deletedB, DroppedUniqueID}, {KeyStatementSid(SidReplicaEncrypt, dstB), roleB, DroppedNotLive}}},
		{name: "another bucket's statement left with nothing goes", sync: SyncDestinationKeyPolicy,
			existing: with(def, onlyDeleted), g: grantB(roleA),
			want:        with(def, DestinationKeyPolicyStatements(grantB(roleA))...),
			wantDropped: []DroppedPrincipal{{onlyDeleted.Sid, deletedA, DroppedUniqueID}}},
		{name: "last role removed: the statement goes, the key keeps its administrators", sync: SyncDestinationKeyPolicy,
			existing: with(def, keyStmt(dstB, aws(roleA))), g: grantB(), want: def,
			wantDropped: []DroppedPrincipal{{KeyStatementSid(SidReplicaEncrypt, dstB), roleA, DroppedNotLive}}},
		{name: "a key policy is never left empty", sync: SyncDestinationKeyPolicy,
			existing: with(Document{}, keyStmt(dstB, aws(roleA))), g: grantB(), wantErr: ErrEmptyKeyPolicy},
		{name: "source key statement", sync: SyncSourceKeyPolicy, existing: def, g: srcGrant,
			want: with(def, Statement{Sid: KeyStatementSid(SidReplicaDecrypt, "team-a-data"), Effect: "Allow", Principal: aws(roleA),
				Action: Values{"kms:Decrypt"}, Resource: Values{"*"},
				Condition: kmsCondition("eu-west-1", "arn:aws:s3:::team-a-data", "arn:aws:s3:::team-a-data/*")})},
		{name: "foreign statement with a deleted role's ID", sync: SyncSourceKeyPolicy,
			existing: with(def, Statement{Sid: "Auditors", Effect: "Allow", Principal: aws(deletedA), Action: Values{"kms:DescribeKey"}, Resource: Values{"*"}}),
			g:        srcGrant, wantErr: ErrForeignInvalidPrincipal},
		{name: "over 32 KB", sync: SyncDestinationKeyPolicy, existing: padded(t, MaxKeyPolicyBytes-100), g: grantB(roleA, roleB), wantErr: ErrLimitExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.sync(tt.existing, tt.g)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(docJSON(t, tt.want), docJSON(t, got.Document)); diff != "" {
				t.Errorf("key policy (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantDropped, got.Dropped); diff != "" {
				t.Errorf("dropped (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSyncConverges plays many requests joining and leaving one destination in random orders:
// whatever the history, the documents depend only on the set of live roles.
func TestSyncConverges(t *testing.T) {
	t.Parallel()
	foreign := readDoc(t, "s3-replication-destination.json")
	var all []string
	for i := range 20 {
		all = append(all, RoleARN("aws", fmt.Sprintf("%012d", 111111111100+i), "bucketbridge-src"))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		live := map[string]bool{}
		bucket, key := foreign, readDoc(t, "kms-default-key-policy.json")
		for range 40 {
			r := all[rng.IntN(len(all))]
			live[r] = !live[r]
			var roles []string
			for x, ok := range live {
				if ok {
					roles = append(roles, x)
				}
			}
			rng.Shuffle(len(roles), func(i, j int) { roles[i], roles[j] = roles[j], roles[i] })
			b, err := SyncBucketPolicy(bucket, grantB(roles...))
			if err != nil {
				t.Fatal(err)
			}
			k, err := SyncDestinationKeyPolicy(key, grantB(roles...))
			if err != nil {
				t.Fatal(err)
			}
			bucket, key = b.Document, k.Document
		}
		var roles []string
		for x, ok := range live {
			if ok {
				roles = append(roles, x)
			}
		}
		fresh, _ := SyncBucketPolicy(foreign, grantB(roles...))
		if !Equal(fresh.Document, bucket) {
			t.Fatalf("round %d: history changed the bucket policy:\n%s\n%s", round, docJSON(t, fresh.Document), docJSON(t, bucket))
		}
		for _, st := range key.Statement {
			if st.Sid == KeyStatementSid(SidReplicaEncrypt, dstB) && !slices.Equal([]string(st.Principal.IDs["AWS"]), sortedSet(roles)) {
				t.Fatalf("round %d: key statement names %v, want %v", round, st.Principal.IDs["AWS"], sortedSet(roles))
			}
		}
	}
}

// FuzzSyncLaws checks SyncStatements on any document: no owned statement is left with a
// wildcard or a deleted principal's ID, owned statements name exactly the live roles, foreign
// statements stay byte for byte in their order (or the sync fails naming one that holds a
// deleted principal's ID), syncing twice equals syncing once, and the input is not modified.
func FuzzSyncLaws(f *testing.F) {
	f.Add([]byte(`{"Version":"2012-10-17","Statement":[{"Sid":"BucketbridgeReplicaObjects","Effect":"Allow","Principal":{"AWS":["*","AROA27HJSWAHEPTTLIWSO"]},"Action":"s3:*","Resource":"*"}]}`), uint8(3))
	f.Add([]byte(`{"Statement":[{"Sid":"Other","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*"},{"Sid":"BucketbridgeReplicaBucket","Effect":"Allow","Principal":"*"}]}`), uint8(0))
	f.Add([]byte(`{"Statement":[{"Effect":"Allow","Principal":{"AWS":"AIDACKCEVSQ6C2EXAMPLE"}}]}`), uint8(1))
	f.Add([]byte(`{}`), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, pick uint8) {
		doc, err := Parse(data)
		if err != nil {
			return
		}
		var roles []string
		for i, r := range []string{roleA, roleB, pathRole} {
			if pick&(1<<i) != 0 {
				roles = append(roles, r)
			}
		}
		before := mustMarshal(t, doc)
		s, err := SyncBucketPolicy(doc, grantB(roles...))
		if string(before) != string(mustMarshal(t, doc)) {
			t.Fatal("input modified")
		}
		var fe *ForeignPrincipalError
		switch {
		case errors.As(err, &fe):
			for _, p := range fe.Found {
				if !IsUniqueID(p.Principal) || IsOwnedSid(doc.Statement[p.Index].Sid) || doc.Statement[p.Index].Sid != p.Sid {
					t.Fatalf("foreign error names %+v", p)
				}
			}
			return
		case errors.Is(err, ErrLimitExceeded):
			return
		case err != nil:
			t.Fatalf("unexpected error %v", err)
		}
		var foreignBefore, foreignAfter []Statement
		for _, st := range doc.Statement {
			if !IsOwnedSid(st.Sid) {
				foreignBefore = append(foreignBefore, st)
			}
		}
		for _, st := range s.Document.Statement {
			if !IsOwnedSid(st.Sid) {
				foreignAfter = append(foreignAfter, st)
				continue
			}
			for _, p := range principalsOf(st.Principal) {
				if (p.typ == "AWS" || p.typ == "*") && (p.id == "*" || IsUniqueID(p.id)) {
					t.Fatalf("owned statement %s keeps %s", st.Sid, p.id)
				}
			}
			if slices.Contains(DestinationBucketPolicySids(), st.Sid) && !slices.Equal([]string(st.Principal.IDs["AWS"]), sortedSet(roles)) {
				t.Fatalf("statement %s names %v, want %v", st.Sid, st.Principal.IDs["AWS"], sortedSet(roles))
			}
		}
		if a, b := mustMarshal(t, foreignBefore), mustMarshal(t, foreignAfter); string(a) != string(b) {
			t.Fatalf("foreign statements changed:\n%s\n%s", a, b)
		}
		again, err := SyncBucketPolicy(s.Document, grantB(roles...))
		if err != nil || string(mustMarshal(t, again.Document)) != string(mustMarshal(t, s.Document)) || len(again.Dropped) != 0 {
			t.Fatalf("sync twice != sync once (err %v, dropped %v)", err, again.Dropped)
		}
	})
}
