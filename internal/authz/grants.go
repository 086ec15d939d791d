package authz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// AnyAccount in a grant's accounts means every account.
const AnyAccount = "*"

// Grants are the parsed grants file: which principals hold which role on
// which accounts. They are never changed after parsing, so any number of
// goroutines may use them at once; Holder swaps in new ones on reload.
type Grants struct {
	allowAll bool
	// roles[principal][account] are the roles granted; account may be AnyAccount.
	roles  map[string]map[string][]Role
	counts map[Role]int
}

// AllowAll returns grants that make every identity admin on every account:
// dev mode without a grants file, and BB_AUTHZ=allow-all-tokens-as-admin.
func AllowAll() *Grants { return &Grants{allowAll: true, counts: map[Role]int{}} }

// file is the grants file's shape; decoding is strict, so a misspelt key is
// an error rather than a grant silently lost.
type file struct {
	Grants []grant `yaml:"grants"`
}

type grant struct {
	Who      []string `yaml:"who"`
	Accounts []string `yaml:"accounts"`
	Role     Role     `yaml:"role"`
}

// ReadGrants reads and parses the grants file at path.
func ReadGrants(path string) (*Grants, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read grants file: %w", err)
	}
	g, err := ParseGrants(data)
	if err != nil {
		return nil, fmt.Errorf("grants file %s: %w", path, err)
	}
	return g, nil
}

// ParseGrants parses a grants file:
//
//	grants:
//	  - who: ["token:portal", "group:data-platform"]
//	    accounts: ["111111111111"]
//	    role: requester
//
// Every problem is reported, each naming its place, such as
// `grants[1].accounts[0]: want a 12-digit account ID or "*", got "1234"`.
// A file without grants is an error: it would lock everyone out.
func ParseGrants(data []byte) (*Grants, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f file
	if err := dec.Decode(&f); errors.Is(err, io.EOF) {
		return nil, errors.New("empty: want a list under grants")
	} else if err != nil {
		if strings.Contains(err.Error(), "did not find expected alphabetic or numeric character") {
			// A bare * starts a YAML alias; "every account" must be quoted.
			return nil, fmt.Errorf("%w (write \"*\" with its quotes)", err)
		}
		return nil, err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("want one YAML document, found more")
	}
	if len(f.Grants) == 0 {
		return nil, errors.New("grants: want at least one grant")
	}

	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	g := &Grants{roles: map[string]map[string][]Role{}, counts: map[Role]int{}}
	for i, gr := range f.Grants {
		if len(gr.Who) == 0 {
			bad("grants[%d].who: want at least one principal", i)
		}
		for j, p := range gr.Who {
			if err := checkPrincipal(p); err != nil {
				bad("grants[%d].who[%d]: %w", i, j, err)
			}
		}
		if len(gr.Accounts) == 0 {
			bad("grants[%d].accounts: want at least one account ID or \"*\"", i)
		}
		for j, a := range gr.Accounts {
			if a != AnyAccount && !isAccountID(a) {
				bad("grants[%d].accounts[%d]: want a 12-digit account ID or \"*\", got %q", i, j, a)
			}
		}
		if !slices.Contains(roles(), gr.Role) {
			bad("grants[%d].role: want reader, requester, approver or admin, got %q", i, gr.Role)
		}
		g.counts[gr.Role]++
		for _, p := range gr.Who {
			if g.roles[p] == nil {
				g.roles[p] = map[string][]Role{}
			}
			for _, a := range gr.Accounts {
				g.roles[p][a] = append(g.roles[p][a], gr.Role)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return g, nil
}

// checkPrincipal accepts "token:<name>", "user:<name>" and "group:<name>".
// Surrounding spaces are refused because such a name would never match.
func checkPrincipal(p string) error {
	for _, prefix := range []string{"token:", "user:", "group:"} {
		if name, ok := strings.CutPrefix(p, prefix); ok {
			if name == "" || strings.TrimSpace(name) != name {
				return fmt.Errorf("want a name after %q, without surrounding spaces, got %q", prefix, p)
			}
			return nil
		}
	}
	return fmt.Errorf("want token:<name>, user:<name> or group:<name>, got %q", p)
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// has says whether id holds a role including want on account.
func (g *Grants) has(id Identity, account string, want Role) bool {
	if id.Name == "" {
		return false // an unauthenticated zero Identity is nobody, even under AllowAll
	}
	if g.allowAll {
		return true
	}
	for _, p := range id.Principals {
		for _, a := range []string{account, AnyAccount} {
			for _, r := range g.roles[p][a] {
				if r.includes(want) {
					return true
				}
			}
		}
	}
	return false
}

// Check returns nil when id may do action to a request from source to
// destination, and a *DeniedError naming what would allow it otherwise.
// Callers should answer 404, not 403, when Visible is false, so that
// requests on other accounts are not even known to exist.
func (g *Grants) Check(id Identity, action Action, source, destination string) error {
	reqs, ok := requirements(action)
	if !ok {
		return fmt.Errorf("check %s: unknown action", action)
	}
	denied := &DeniedError{Action: action}
	for _, r := range reqs {
		account := source
		if r.side == onDestination {
			account = destination
		}
		if g.has(id, account, r.role) {
			return nil
		}
		if n := (Need{r.role, account}); !slices.Contains(denied.Needs, n) {
			denied.Needs = append(denied.Needs, n)
		}
	}
	return denied
}

// Visible says whether id may see a request from source to destination:
// any role on either account.
func (g *Grants) Visible(id Identity, source, destination string) bool {
	return g.Check(id, ActionRead, source, destination) == nil
}

// NeedsApproval says whether a request id creates must wait for the
// destination owner's consent: always, unless id is itself approver (or
// admin) on the destination.
func (g *Grants) NeedsApproval(id Identity, source, destination string) bool {
	return !g.has(id, destination, RoleApprover)
}

// VisibleAccounts are the accounts id holds any role on, sorted, for
// filtering a list in SQL: a request is visible when its source or its
// destination is among them. all is true when id holds a role on every
// account; accounts is then nil.
func (g *Grants) VisibleAccounts(id Identity) (accounts []string, all bool) {
	if id.Name == "" {
		return nil, false
	}
	if g.allowAll {
		return nil, true
	}
	for _, p := range id.Principals {
		for a := range g.roles[p] {
			if a == AnyAccount {
				return nil, true
			}
			accounts = append(accounts, a)
		}
	}
	slices.Sort(accounts)
	return slices.Compact(accounts), false
}

// AllowsAll says whether these are the AllowAll grants, which the start-up
// log should warn about.
func (g *Grants) AllowsAll() bool { return g.allowAll }

// Counts returns how many grants of the file give each role, every role
// present, for the start-up log. It says nothing about who holds them.
func (g *Grants) Counts() map[Role]int {
	c := make(map[Role]int, 4)
	for _, r := range roles() {
		c[r] = g.counts[r]
	}
	return c
}

// LogValue logs the grants as counts per role, or as allow-all: enough to
// see at start-up that the intended file was read, without copying it.
func (g *Grants) LogValue() slog.Value {
	if g.allowAll {
		return slog.GroupValue(slog.String("mode", "allow-all"))
	}
	attrs := []slog.Attr{slog.String("mode", "file")}
	for _, r := range roles() {
		attrs = append(attrs, slog.Int(string(r), g.counts[r]))
	}
	return slog.GroupValue(attrs...)
}
