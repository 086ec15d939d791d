package authz

import "slices"

// Identity is an authenticated caller.
type Identity struct {
	// Name is the caller as recorded in requests and events:
	// "token:<name>" or "user:<claim>".
	Name string
	// Principals are the names grants may use to match this caller: Name
	// first, then "group:<g>" for each of the caller's groups.
	Principals []string
}

// TokenIdentity is the caller who presented the static API token called name.
func TokenIdentity(name string) Identity {
	n := "token:" + name
	return Identity{Name: n, Principals: []string{n}}
}

// UserIdentity is an OIDC user and the groups the identity provider says they
// are in; repeated groups count once.
func UserIdentity(user string, groups []string) Identity {
	n := "user:" + user
	id := Identity{Name: n, Principals: []string{n}}
	for _, g := range groups {
		if p := "group:" + g; !slices.Contains(id.Principals, p) {
			id.Principals = append(id.Principals, p)
		}
	}
	return id
}
