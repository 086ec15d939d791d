// Package authz decides who may do what to which replication request.
//
// A caller is an Identity: a static API token ("token:<name>") or an OIDC
// user ("user:<claim>") together with the groups the identity provider put in
// the token ("group:<g>"). Grants, read from a YAML file, give principals a
// Role on accounts. A request touches two accounts, its source and its
// destination, and every Action needs a role on one side or the other: this
// is what keeps a caller from replicating a bucket they do not own, or into
// an account whose owner has not consented.
package authz

import (
	"fmt"
	"strings"
)

// Role is what a grant allows on an account.
type Role string

// The four roles. Each includes reader; admin is requester and approver together.
const (
	// RoleReader may read requests that touch the account.
	RoleReader Role = "reader"
	// RoleRequester may also create, cancel, retry and deprovision requests
	// whose source is the account: it speaks for the data leaving it.
	RoleRequester Role = "requester"
	// RoleApprover may also approve, reject and deprovision requests whose
	// destination is the account: it speaks for what is written into it.
	RoleApprover Role = "approver"
	// RoleAdmin is requester and approver together.
	RoleAdmin Role = "admin"
)

// roles lists the roles in the order they are reported.
func roles() []Role { return []Role{RoleReader, RoleRequester, RoleApprover, RoleAdmin} }

// includes says whether holding r allows what want allows.
func (r Role) includes(want Role) bool {
	switch want {
	case RoleReader:
		return r == RoleReader || r == RoleRequester || r == RoleApprover || r == RoleAdmin
	case RoleRequester, RoleApprover:
		return r == want || r == RoleAdmin
	case RoleAdmin:
		return r == RoleAdmin
	}
	return false
}

// Action is something a caller does to a replication request.
type Action string

// The actions the API checks.
const (
	// ActionRead reads a request, its steps, events and deliveries, or finds it in a list.
	ActionRead Action = "read"
	// ActionCreate creates a request; dry runs are checked the same way, so
	// nobody learns another account's documents by asking for them.
	ActionCreate Action = "create"
	// ActionCancel stops a request that has not finished.
	ActionCancel Action = "cancel"
	// ActionRetry resumes a failed request.
	ActionRetry Action = "retry"
	// ActionDeprovision removes what a request provisioned.
	ActionDeprovision Action = "deprovision"
	// ActionApprove gives the destination owner's consent.
	ActionApprove Action = "approve"
	// ActionReject refuses the destination owner's consent.
	ActionReject Action = "reject"
	// ActionRedeliver sends a callback again.
	ActionRedeliver Action = "redeliver"
)

// side is the end of a request whose account a requirement names.
type side int

const (
	onSource side = iota
	onDestination
)

// requirement is a role needed on one side of a request.
type requirement struct {
	role Role
	side side
}

// requirements says which roles allow an action; any one of them is enough.
// Deprovisioning is allowed to both sides: the source owner may stop sending
// data, and the destination owner may withdraw their consent. Redelivering a
// callback is treated the same way: it only repeats a notification about a
// request, but it does cause an outbound call, so a reader may not trigger it.
func requirements(a Action) ([]requirement, bool) {
	switch a {
	case ActionRead:
		return []requirement{{RoleReader, onSource}, {RoleReader, onDestination}}, true
	case ActionCreate, ActionCancel, ActionRetry:
		return []requirement{{RoleRequester, onSource}}, true
	case ActionApprove, ActionReject:
		return []requirement{{RoleApprover, onDestination}}, true
	case ActionDeprovision, ActionRedeliver:
		return []requirement{{RoleRequester, onSource}, {RoleApprover, onDestination}}, true
	}
	return nil, false
}

// Need is a role on an account that would allow a denied action.
type Need struct {
	Role    Role
	Account string
}

// DeniedError says that a caller may not do an action, and what would allow
// it, so that the API can answer 403 with something the caller can act on.
type DeniedError struct {
	Action Action
	// Needs lists the roles, any one of which would allow the action.
	// RoleAdmin on the same account always would too, and is not listed.
	Needs []Need
}

func (e *DeniedError) Error() string {
	var b strings.Builder
	b.WriteString(string(e.Action) + " needs ")
	for i, n := range e.Needs {
		if i > 0 {
			b.WriteString(" or ")
		}
		fmt.Fprintf(&b, "role %s on account %s", n.Role, n.Account)
	}
	return b.String()
}
