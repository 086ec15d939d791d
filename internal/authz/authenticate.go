package authz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
)

// ErrUnknownToken means a bearer value is neither a configured static token
// nor a JWT this server can verify.
var ErrUnknownToken = errors.New("unknown token")

// ErrNotJWT means a bearer value is not shaped like a signed JWT at all, so
// it was never sent to the identity provider's keys.
var ErrNotJWT = errors.New("not a JWT")

// ErrInvalidToken means a bearer value is a JWT that failed verification or
// lacks the claims an identity is made from. Errors wrapping it say why.
var ErrInvalidToken = errors.New("invalid token")

// Authenticator turns a bearer value into an Identity.
//
// The order is fixed: the value is first compared with every static token,
// in constant time; only when none matches, the value looks like a JWT and
// OIDC is configured, is it verified as a JWT. Static tokens therefore never
// reach the identity provider, and a JWT never matches a static token by
// accident unless an operator configured that very string as one.
type Authenticator struct {
	tokens []tokenEntry
	oidc   *OIDC
}

type tokenEntry struct {
	hash     [sha256.Size]byte
	identity Identity
}

// NewAuthenticator accepts the static tokens (token → name, as in
// BB_API_TOKENS) and, when oidc is not nil, JWTs it verifies.
func NewAuthenticator(tokens map[string]string, oidc *OIDC) (*Authenticator, error) {
	a := &Authenticator{oidc: oidc}
	for token, name := range tokens {
		if token == "" || name == "" {
			return nil, errors.New("new authenticator: static tokens and their names must not be empty")
		}
		a.tokens = append(a.tokens, tokenEntry{sha256.Sum256([]byte(token)), TokenIdentity(name)})
	}
	return a, nil
}

// Authenticate returns the caller a bearer value identifies. Its errors wrap
// ErrUnknownToken or ErrInvalidToken; both mean 401.
func (a *Authenticator) Authenticate(ctx context.Context, bearer string) (Identity, error) {
	// Hashing first makes every comparison the same length, so neither the
	// length nor the content of a configured token leaks through timing; the
	// loop never stops early for the same reason.
	got := sha256.Sum256([]byte(bearer))
	var found *Identity
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(got[:], a.tokens[i].hash[:]) == 1 {
			found = &a.tokens[i].identity
		}
	}
	if found != nil {
		// A copy, so that no caller can change what later callers are.
		return Identity{Name: found.Name, Principals: slices.Clone(found.Principals)}, nil
	}
	if a.oidc == nil || !LooksLikeJWT(bearer) {
		return Identity{}, ErrUnknownToken
	}
	return a.oidc.Identify(ctx, bearer)
}

// LooksLikeJWT says whether s has the shape of a signed JWT (JWS compact
// serialization, RFC 7515 section 7.1): three base64url parts, the first a
// JSON header naming an algorithm. It checks no signature.
func LooksLikeJWT(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return false
	}
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	return json.Unmarshal(header, &h) == nil && h.Alg != ""
}
