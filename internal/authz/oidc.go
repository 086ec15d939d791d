package authz

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// OIDCConfig says which identity provider's JWTs are accepted and how an
// Identity is read from them.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL (BB_OIDC_ISSUER). It must be https,
	// because the signing keys are fetched from it; plain http is accepted
	// only for a loopback address, where nothing travels over a network.
	Issuer string
	// Audience must be among the token's "aud" values (BB_OIDC_AUDIENCE), so a
	// token minted for another application is refused.
	Audience string
	// GroupsClaim names the claim holding the caller's groups
	// (BB_OIDC_GROUPS_CLAIM, default "groups").
	GroupsClaim string
	// UserClaim names the claim the user is named by (BB_OIDC_USER_CLAIM,
	// default "sub").
	UserClaim string
	// HTTPClient fetches discovery and keys; nil means a client with a
	// 10-second timeout, because a key fetch that hangs would hold every
	// later refresh behind it.
	HTTPClient *http.Client
}

// OIDC verifies bearer JWTs issued by one OpenID Connect provider.
//
// The provider's signing keys are cached; a token signed with a key ID the
// cache lacks makes the verifier fetch the provider's key set again, which is
// how key rotation is followed (OpenID Connect Core 1.0, section 10.1,
// "Rotation of Asymmetric Signing Keys").
type OIDC struct {
	verifier    *oidc.IDTokenVerifier
	groupsClaim string
	userClaim   string
}

// NewOIDC reads the provider's discovery document (OpenID Connect Discovery
// 1.0), whose issuer must equal cfg.Issuer, and returns a verifier for its
// tokens. It fails when the provider cannot be reached, so that a server
// never starts unable to authenticate anyone it was told to accept.
func NewOIDC(ctx context.Context, cfg OIDCConfig) (*OIDC, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || u.Host == "" || !(u.Scheme == "https" || u.Scheme == "http" && isLoopback(u.Hostname())) {
		return nil, fmt.Errorf("oidc issuer %q: want an https URL (http only on a loopback address)", cfg.Issuer)
	}
	if cfg.Audience == "" {
		return nil, errors.New("oidc audience: want the client ID tokens are issued for")
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	ctx = oidc.ClientContext(ctx, client)
	provider, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discover oidc issuer %s: %w", cfg.Issuer, err)
	}
	return &OIDC{
		// The key set keeps the client from ctx for its background fetches.
		verifier:    provider.VerifierContext(ctx, &oidc.Config{ClientID: cfg.Audience}),
		groupsClaim: cmp.Or(cfg.GroupsClaim, "groups"),
		userClaim:   cmp.Or(cfg.UserClaim, "sub"),
	}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Identify verifies a bearer JWT (signature, issuer, audience, expiry) and
// returns "user:<user claim>" with "group:<g>" for each group. Its errors
// wrap ErrNotJWT when raw is not shaped like a JWT, else ErrInvalidToken.
func (o *OIDC) Identify(ctx context.Context, raw string) (Identity, error) {
	if !LooksLikeJWT(raw) {
		return Identity{}, ErrNotJWT
	}
	token, err := o.verifier.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	var claims map[string]json.RawMessage
	if err := token.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: read claims: %w", ErrInvalidToken, err)
	}
	var user string
	if c, ok := claims[o.userClaim]; !ok || string(c) == "null" {
		return Identity{}, fmt.Errorf("%w: user claim %q is missing", ErrInvalidToken, o.userClaim)
	} else if json.Unmarshal(c, &user) != nil || user == "" {
		return Identity{}, fmt.Errorf("%w: user claim %q: want a non-empty string", ErrInvalidToken, o.userClaim)
	}
	groups, err := readGroups(claims[o.groupsClaim])
	if err != nil {
		return Identity{}, fmt.Errorf("%w: groups claim %q: %w", ErrInvalidToken, o.groupsClaim, err)
	}
	return UserIdentity(user, groups), nil
}

// readGroups accepts a list of strings or a single string, since providers
// send either; a missing claim means no groups. An empty group name is
// refused rather than skipped: it would say something was wrong upstream.
func readGroups(raw json.RawMessage) ([]string, error) {
	if raw == nil || string(raw) == "null" {
		return nil, nil
	}
	var one string
	var groups []string
	if json.Unmarshal(raw, &one) == nil {
		groups = []string{one}
	} else if json.Unmarshal(raw, &groups) != nil {
		return nil, errors.New("want a string or a list of strings")
	}
	for _, g := range groups {
		if g == "" {
			return nil, errors.New("holds an empty group name")
		}
	}
	return groups, nil
}
