package authz

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const (
	acctA = "111111111111"
	acctB = "222222222222"
	acctC = "333333333333"
)

// testGrants has every role, a group grant, "*" and an admin on one account.
const testGrants = `
grants:
  - who: ["token:auditor"]
    accounts: ["111111111111", "222222222222"]
    role: reader
  - who: ["token:alice", "group:data-platform"]
    accounts: ["111111111111"]
    role: requester
  - who: ["group:dr-owners", "token:bob"]
    accounts: ["222222222222"]
    role: approver
  - who: ["token:ops"]
    accounts: ["*"]
    role: admin
  - who: ["user:carol"]
    accounts: ["333333333333"]
    role: admin
  - who: ["token:watcher"]
    accounts: ["*"]
    role: reader
  - who: ["token:both"]
    accounts: ["111111111111"]
    role: requester
  - who: ["token:both"]
    accounts: ["222222222222"]
    role: approver
`

func mustParse(t *testing.T, data string) *Grants {
	t.Helper()
	g, err := ParseGrants([]byte(data))
	if err != nil {
		t.Fatalf("parse grants: %v", err)
	}
	return g
}

func TestParseGrantsRefusesInvalidFiles(t *testing.T) {
	t.Parallel()
	valid := "  - who: [\"token:x\"]\n    accounts: [\"111111111111\"]\n    role: reader\n"
	tests := []struct {
		name string
		file string
		want []string // substrings the error must contain
	}{
		{"empty file", "", []string{"empty"}},
		{"only a comment", "# nothing yet\n", []string{"empty"}},
		{"no grants", "grants: []\n", []string{"grants: want at least one grant"}},
		{"null grants", "grants:\n", []string{"grants: want at least one grant"}},
		{"unknown top-level key", "grant:\n" + valid, []string{"grant"}},
		{"unknown grant key", "grants:\n" + valid + "    rol: reader\n", []string{"rol"}},
		{"who is a string", "grants:\n  - who: token:x\n    accounts: [\"111111111111\"]\n    role: reader\n", []string{"line 2"}},
		{"two documents", "grants:\n" + valid + "---\ngrants:\n" + valid, []string{"one YAML document"}},
		{"empty who", "grants:\n  - who: []\n    accounts: [\"111111111111\"]\n    role: reader\n",
			[]string{"grants[0].who: want at least one principal"}},
		{"who without prefix", "grants:\n" + valid + "  - who: [\"token:y\", \"portal\"]\n    accounts: [\"111111111111\"]\n    role: reader\n",
			[]string{`grants[1].who[1]: want token:<name>, user:<name> or group:<name>, got "portal"`}},
		{"who with an empty name", "grants:\n  - who: [\"group:\"]\n    accounts: [\"111111111111\"]\n    role: reader\n",
			[]string{`grants[0].who[0]: want a name after "group:"`}},
		{"who with spaces", "grants:\n  - who: [\"token: portal\"]\n    accounts: [\"111111111111\"]\n    role: reader\n",
			[]string{`grants[0].who[0]: want a name after "token:"`}},
		{"unknown prefix", "grants:\n  - who: [\"role:admin\"]\n    accounts: [\"111111111111\"]\n    role: reader\n",
			[]string{`grants[0].who[0]: want token:<name>`}},
		{"short account", "grants:\n" + valid + "  - who: [\"token:y\"]\n    accounts: [\"1234\"]\n    role: reader\n",
			[]string{`grants[1].accounts[0]: want a 12-digit account ID or "*", got "1234"`}},
		{"account with letters", "grants:\n  - who: [\"token:y\"]\n    accounts: [\"111111111111\", \"11111111111a\"]\n    role: reader\n",
			[]string{`grants[0].accounts[1]: want a 12-digit account ID or "*"`}},
		{"no accounts", "grants:\n  - who: [\"token:y\"]\n    role: reader\n",
			[]string{`grants[0].accounts: want at least one account ID or "*"`}},
		{"unknown role", "grants:\n  - who: [\"token:y\"]\n    accounts: [\"*\"]\n    role: owner\n",
			[]string{`grants[0].role: want reader, requester, approver or admin, got "owner"`}},
		{"missing role", "grants:\n  - who: [\"token:y\"]\n    accounts: [\"*\"]\n",
			[]string{`grants[0].role: want reader, requester, approver or admin, got ""`}},
		{"unquoted star", "grants:\n  - who: [\"token:y\"]\n    accounts: [*]\n    role: admin\n",
			[]string{`line 3`, `write "*" with its quotes`}},
		{"every problem at once", "grants:\n  - who: [\"x\"]\n    accounts: [\"1\"]\n    role: boss\n",
			[]string{"grants[0].who[0]", "grants[0].accounts[0]", "grants[0].role"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := ParseGrants([]byte(tt.file))
			if err == nil {
				t.Fatalf("parse succeeded with %d grants; want an error", len(g.roles))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// Account IDs written without quotes are YAML integers; they must keep their
// digits, leading zeros included, rather than turn into other numbers.
func TestParseGrantsKeepsUnquotedAccountIDs(t *testing.T) {
	t.Parallel()
	g := mustParse(t, "grants:\n  - who: [token:x]\n    accounts: [012345678901, 111111111111]\n    role: reader\n")
	got, all := g.VisibleAccounts(TokenIdentity("x"))
	if diff := cmp.Diff([]string{"012345678901", "111111111111"}, got); diff != "" || all {
		t.Errorf("visible accounts (-want +got), all=%v:\n%s", all, diff)
	}
}

func TestDevGrantsFileParses(t *testing.T) {
	t.Parallel()
	g, err := ReadGrants("../../dev/authz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	alice, bob, dev := TokenIdentity("alice"), TokenIdentity("bob"), TokenIdentity("dev")
	if err := g.Check(alice, ActionCreate, acctA, acctB); err != nil {
		t.Errorf("alice cannot create from %s: %v", acctA, err)
	}
	if !g.NeedsApproval(alice, acctA, acctB) {
		t.Error("alice's request needs no approval; want bob's consent")
	}
	if err := g.Check(bob, ActionApprove, acctA, acctB); err != nil {
		t.Errorf("bob cannot approve into %s: %v", acctB, err)
	}
	if err := g.Check(bob, ActionCreate, acctB, acctA); err == nil {
		t.Error("bob may create requests; want only approvals")
	}
	if err := g.Check(dev, ActionApprove, acctC, "444444444444"); err != nil {
		t.Errorf("dev is not admin everywhere: %v", err)
	}
	want := map[Role]int{RoleReader: 0, RoleRequester: 1, RoleApprover: 1, RoleAdmin: 1}
	if diff := cmp.Diff(want, g.Counts()); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
}

// deny is the DeniedError for action when any one of needs would allow it.
func deny(action Action, needs ...Need) error {
	return &DeniedError{Action: action, Needs: needs}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	g := mustParse(t, testGrants)
	var (
		auditor  = TokenIdentity("auditor")
		alice    = TokenIdentity("alice")
		bob      = TokenIdentity("bob")
		ops      = TokenIdentity("ops")
		watcher  = TokenIdentity("watcher")
		both     = TokenIdentity("both")
		stranger = TokenIdentity("stranger")
		carol    = UserIdentity("carol", nil)
		dana     = UserIdentity("dana", []string{"data-platform"}) // requester on A by group
		erin     = UserIdentity("erin", []string{"dr-owners"})     // approver on B by group
		frank    = UserIdentity("frank", []string{"data-platform", "dr-owners"})
		// Names alone match nothing: "token:alice" and "user:alice" differ.
		userAlice = UserIdentity("alice", nil)
	)
	type row struct {
		who    string
		id     Identity
		action Action
		src    string
		dst    string
		want   error // nil: allowed
	}
	rows := []row{
		// reader: reads either side, acts on neither.
		{"auditor", auditor, ActionRead, acctA, acctC, nil},
		{"auditor", auditor, ActionRead, acctC, acctB, nil},
		{"auditor", auditor, ActionRead, acctC, "444444444444", deny(ActionRead, Need{RoleReader, acctC}, Need{RoleReader, "444444444444"})},
		{"auditor", auditor, ActionCreate, acctA, acctB, deny(ActionCreate, Need{RoleRequester, acctA})},
		{"auditor", auditor, ActionCancel, acctA, acctB, deny(ActionCancel, Need{RoleRequester, acctA})},
		{"auditor", auditor, ActionApprove, acctA, acctB, deny(ActionApprove, Need{RoleApprover, acctB})},
		{"auditor", auditor, ActionDeprovision, acctA, acctB, deny(ActionDeprovision, Need{RoleRequester, acctA}, Need{RoleApprover, acctB})},
		{"auditor", auditor, ActionRedeliver, acctA, acctB, deny(ActionRedeliver, Need{RoleRequester, acctA}, Need{RoleApprover, acctB})},

		// requester on A: acts on requests from A, never on consent.
		{"alice", alice, ActionRead, acctA, acctB, nil},
		{"alice", alice, ActionRead, acctC, acctA, nil},
		{"alice", alice, ActionRead, acctB, acctC, deny(ActionRead, Need{RoleReader, acctB}, Need{RoleReader, acctC})},
		{"alice", alice, ActionCreate, acctA, acctB, nil},
		{"alice", alice, ActionCancel, acctA, acctB, nil},
		{"alice", alice, ActionRetry, acctA, acctB, nil},
		{"alice", alice, ActionDeprovision, acctA, acctB, nil},
		{"alice", alice, ActionRedeliver, acctA, acctB, nil},
		{"alice", alice, ActionCreate, acctB, acctA, deny(ActionCreate, Need{RoleRequester, acctB})},
		{"alice", alice, ActionCancel, acctC, acctA, deny(ActionCancel, Need{RoleRequester, acctC})},
		{"alice", alice, ActionRetry, acctC, acctA, deny(ActionRetry, Need{RoleRequester, acctC})},
		{"alice", alice, ActionApprove, acctA, acctB, deny(ActionApprove, Need{RoleApprover, acctB})},
		{"alice", alice, ActionReject, acctA, acctB, deny(ActionReject, Need{RoleApprover, acctB})},
		{"alice", alice, ActionApprove, acctB, acctA, deny(ActionApprove, Need{RoleApprover, acctA})},
		{"user:alice", userAlice, ActionRead, acctA, acctB, deny(ActionRead, Need{RoleReader, acctA}, Need{RoleReader, acctB})},

		// requester by group.
		{"dana", dana, ActionCreate, acctA, acctB, nil},
		{"dana", dana, ActionApprove, acctA, acctB, deny(ActionApprove, Need{RoleApprover, acctB})},

		// approver on B: consents and deprovisions, never creates or cancels.
		{"bob", bob, ActionRead, acctA, acctB, nil},
		{"bob", bob, ActionApprove, acctA, acctB, nil},
		{"bob", bob, ActionReject, acctC, acctB, nil},
		{"bob", bob, ActionDeprovision, acctA, acctB, nil},
		{"bob", bob, ActionRedeliver, acctA, acctB, nil},
		{"bob", bob, ActionCreate, acctA, acctB, deny(ActionCreate, Need{RoleRequester, acctA})},
		{"bob", bob, ActionCreate, acctB, acctA, deny(ActionCreate, Need{RoleRequester, acctB})},
		{"bob", bob, ActionCancel, acctA, acctB, deny(ActionCancel, Need{RoleRequester, acctA})},
		{"bob", bob, ActionRetry, acctA, acctB, deny(ActionRetry, Need{RoleRequester, acctA})},
		{"bob", bob, ActionApprove, acctB, acctA, deny(ActionApprove, Need{RoleApprover, acctA})},
		{"bob", bob, ActionDeprovision, acctB, acctA, deny(ActionDeprovision, Need{RoleRequester, acctB}, Need{RoleApprover, acctA})},

		// approver by group, and both groups at once.
		{"erin", erin, ActionApprove, acctA, acctB, nil},
		{"erin", erin, ActionCreate, acctA, acctB, deny(ActionCreate, Need{RoleRequester, acctA})},
		{"frank", frank, ActionCreate, acctA, acctB, nil},
		{"frank", frank, ActionApprove, acctA, acctB, nil},

		// admin on "*": everything everywhere.
		{"ops", ops, ActionCreate, acctC, "444444444444", nil},
		{"ops", ops, ActionApprove, acctC, "444444444444", nil},
		{"ops", ops, ActionCancel, acctB, acctA, nil},

		// admin on one account: both sides of it, nothing elsewhere.
		{"carol", carol, ActionCreate, acctC, acctA, nil},
		{"carol", carol, ActionApprove, acctA, acctC, nil},
		{"carol", carol, ActionDeprovision, acctA, acctC, nil},
		{"carol", carol, ActionCancel, acctA, acctC, deny(ActionCancel, Need{RoleRequester, acctA})},
		{"carol", carol, ActionApprove, acctC, acctA, deny(ActionApprove, Need{RoleApprover, acctA})},

		// reader on "*": reads everything, nothing more.
		{"watcher", watcher, ActionRead, acctC, "444444444444", nil},
		{"watcher", watcher, ActionCreate, acctC, acctA, deny(ActionCreate, Need{RoleRequester, acctC})},

		// requester on A and approver on B from two grants.
		{"both", both, ActionCreate, acctA, acctB, nil},
		{"both", both, ActionApprove, acctA, acctB, nil},
		{"both", both, ActionApprove, acctB, acctA, deny(ActionApprove, Need{RoleApprover, acctA})},

		// nobody.
		{"stranger", stranger, ActionRead, acctA, acctB, deny(ActionRead, Need{RoleReader, acctA}, Need{RoleReader, acctB})},
		{"stranger", stranger, ActionCreate, acctA, acctB, deny(ActionCreate, Need{RoleRequester, acctA})},
		{"zero identity", Identity{}, ActionRead, acctA, acctB, deny(ActionRead, Need{RoleReader, acctA}, Need{RoleReader, acctB})},
	}
	for _, r := range rows {
		t.Run(string(r.action)+"/"+r.who+"/"+r.src+"->"+r.dst, func(t *testing.T) {
			t.Parallel()
			err := g.Check(r.id, r.action, r.src, r.dst)
			if diff := cmp.Diff(r.want, err, cmp.Comparer(func(a, b error) bool {
				var da, db *DeniedError
				if !errors.As(a, &da) || !errors.As(b, &db) {
					return a == nil && b == nil
				}
				return cmp.Equal(da, db)
			})); diff != "" {
				t.Errorf("check (-want +got):\n%s", diff)
			}
			if visible := g.Visible(r.id, r.src, r.dst); r.action == ActionRead && visible != (r.want == nil) {
				t.Errorf("visible = %v, but read check gave %v", visible, err)
			}
		})
	}
}

func TestDeniedErrorSaysWhatWouldAllowIt(t *testing.T) {
	t.Parallel()
	g := mustParse(t, testGrants)
	tests := []struct {
		action Action
		want   string
	}{
		{ActionApprove, "approve needs role approver on account 222222222222"},
		{ActionCreate, "create needs role requester on account 111111111111"},
		{ActionDeprovision, "deprovision needs role requester on account 111111111111 or role approver on account 222222222222"},
	}
	for _, tt := range tests {
		err := g.Check(TokenIdentity("stranger"), tt.action, acctA, acctB)
		var denied *DeniedError
		if !errors.As(err, &denied) {
			t.Fatalf("%s: got %v, want a *DeniedError", tt.action, err)
		}
		if err.Error() != tt.want {
			t.Errorf("%s: got %q, want %q", tt.action, err, tt.want)
		}
	}
	if err := g.Check(TokenIdentity("ops"), "delete-everything", acctA, acctB); err == nil {
		t.Error("an unknown action was allowed")
	} else if errors.As(err, new(*DeniedError)) {
		t.Errorf("an unknown action is a programming error, not a denial: %v", err)
	}
}

// callers who may create requests on some account but approve on none of the
// given destinations must never be able to consent to their own requests.
func TestRequesterNeverApprovesOwnRequest(t *testing.T) {
	t.Parallel()
	g := mustParse(t, testGrants)
	callers := []Identity{TokenIdentity("alice"), UserIdentity("dana", []string{"data-platform"}), TokenIdentity("both")}
	accounts := []string{acctA, acctB, acctC, "444444444444"}
	for _, id := range callers {
		for _, src := range accounts {
			for _, dst := range accounts {
				if src == dst || g.Check(id, ActionCreate, src, dst) != nil || !g.NeedsApproval(id, src, dst) {
					continue
				}
				for _, a := range []Action{ActionApprove, ActionReject} {
					if err := g.Check(id, a, src, dst); err == nil {
						t.Errorf("%s created %s→%s needing approval, and may %s it", id.Name, src, dst, a)
					}
				}
			}
		}
	}
}

func TestNeedsApproval(t *testing.T) {
	t.Parallel()
	g := mustParse(t, testGrants)
	tests := []struct {
		id       Identity
		src, dst string
		want     bool
	}{
		{TokenIdentity("alice"), acctA, acctB, true},
		{TokenIdentity("alice"), acctA, acctC, true},
		{TokenIdentity("both"), acctA, acctB, false},
		{TokenIdentity("both"), acctA, acctC, true},
		{UserIdentity("frank", []string{"data-platform", "dr-owners"}), acctA, acctB, false},
		{TokenIdentity("ops"), acctA, acctC, false},
		{UserIdentity("carol", nil), acctA, acctC, false},
		{UserIdentity("carol", nil), acctC, acctA, true},
		{TokenIdentity("watcher"), acctA, acctB, true},
	}
	for _, tt := range tests {
		if got := g.NeedsApproval(tt.id, tt.src, tt.dst); got != tt.want {
			t.Errorf("%s %s→%s: needs approval %v, want %v", tt.id.Name, tt.src, tt.dst, got, tt.want)
		}
	}
}

func TestAllowAllMakesEveryoneAdmin(t *testing.T) {
	t.Parallel()
	g := AllowAll()
	id := TokenIdentity("anyone")
	for _, a := range []Action{ActionRead, ActionCreate, ActionCancel, ActionRetry, ActionDeprovision, ActionApprove, ActionReject, ActionRedeliver} {
		if err := g.Check(id, a, acctA, acctB); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	if g.NeedsApproval(id, acctA, acctB) {
		t.Error("allow-all requests wait for approval")
	}
	if accounts, all := g.VisibleAccounts(id); !all || accounts != nil {
		t.Errorf("visible accounts = %v, %v; want all", accounts, all)
	}
	if g.Visible(Identity{}, acctA, acctB) {
		t.Error("a zero Identity sees requests under allow-all")
	}
	if !g.AllowsAll() || mustParse(t, testGrants).AllowsAll() {
		t.Error("AllowsAll does not tell allow-all from a file")
	}
}

func TestVisibleAccounts(t *testing.T) {
	t.Parallel()
	g := mustParse(t, testGrants)
	tests := []struct {
		id   Identity
		want []string
		all  bool
	}{
		{TokenIdentity("auditor"), []string{acctA, acctB}, false},
		{TokenIdentity("alice"), []string{acctA}, false},
		{TokenIdentity("both"), []string{acctA, acctB}, false},
		{UserIdentity("frank", []string{"data-platform", "dr-owners"}), []string{acctA, acctB}, false},
		{TokenIdentity("ops"), nil, true},
		{TokenIdentity("watcher"), nil, true},
		{TokenIdentity("stranger"), nil, false},
	}
	for _, tt := range tests {
		got, all := g.VisibleAccounts(tt.id)
		if diff := cmp.Diff(tt.want, got); diff != "" || all != tt.all {
			t.Errorf("%s: all=%v want %v; accounts (-want +got):\n%s", tt.id.Name, all, tt.all, diff)
		}
	}
}

func TestStartupLogCountsRolesWithoutNames(t *testing.T) {
	t.Parallel()
	g := mustParse(t, testGrants)
	want := map[Role]int{RoleReader: 2, RoleRequester: 2, RoleApprover: 2, RoleAdmin: 2}
	if diff := cmp.Diff(want, g.Counts()); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("authorization", "grants", g, "fallback", AllowAll())
	line := buf.String()
	for _, w := range []string{"grants.mode=file", "grants.reader=2", "grants.admin=2", "fallback.mode=allow-all"} {
		if !strings.Contains(line, w) {
			t.Errorf("log line %q lacks %q", line, w)
		}
	}
	for _, name := range []string{"alice", "ops", "dr-owners", "111111111111"} {
		if strings.Contains(line, name) {
			t.Errorf("log line %q names %q", line, name)
		}
	}
}
