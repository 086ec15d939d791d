package authz

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketbridge/bucketbridge/internal/authz/authztest"
)

const testAudience = authztest.Audience

// setupOIDC starts an issuer publishing one key and a verifier trusting it.
func setupOIDC(t *testing.T, cfg OIDCConfig) (*authztest.Issuer, authztest.Key, *OIDC) {
	t.Helper()
	is := authztest.NewIssuer(t)
	key := authztest.NewKey(t, "key-1")
	is.Publish(key)
	cfg.Issuer, cfg.Audience, cfg.HTTPClient = is.URL, testAudience, is.Client()
	o, err := NewOIDC(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return is, key, o
}

func TestOIDCIdentifiesValidToken(t *testing.T) {
	t.Parallel()
	is, key, o := setupOIDC(t, OIDCConfig{})
	id, err := o.Identify(t.Context(), authztest.Sign(t, key, is.Claims(nil)))
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{Name: "user:u-123", Principals: []string{"user:u-123", "group:data-platform", "group:dr-owners"}}
	if diff := cmp.Diff(want, id); diff != "" {
		t.Errorf("identity (-want +got):\n%s", diff)
	}
}

func TestOIDCRefusesInvalidTokens(t *testing.T) {
	t.Parallel()
	is, key, o := setupOIDC(t, OIDCConfig{})
	stranger := authztest.NewKey(t, "stranger")
	valid := authztest.Sign(t, key, is.Claims(nil))
	header, _, _ := strings.Cut(valid, ".")
	otherClaims, _ := json.Marshal(is.Claims(func(c map[string]any) { c["sub"] = "admin" }))
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(otherClaims) + "." + parts[2]
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(otherClaims) + ".x"

	tests := []struct {
		name  string
		token string
		want  string
	}{
		{"expired", authztest.Sign(t, key, is.Claims(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() })), "expired"},
		{"no expiry", authztest.Sign(t, key, is.Claims(func(c map[string]any) { delete(c, "exp") })), "expired"},
		{"not yet valid", authztest.Sign(t, key, is.Claims(func(c map[string]any) { c["nbf"] = time.Now().Add(time.Hour).Unix() })), "nbf"},
		{"wrong audience", authztest.Sign(t, key, is.Claims(func(c map[string]any) { c["aud"] = "another-app" })), "audience"},
		{"wrong issuer", authztest.Sign(t, key, is.Claims(func(c map[string]any) { c["iss"] = "https://idp.invalid" })), "issued by a different provider"},
		{"unknown key", authztest.Sign(t, stranger, is.Claims(nil)), "signature"},
		{"unknown key reusing a known key ID", authztest.Sign(t, stranger.Renamed("key-1"), is.Claims(nil)), "signature"},
		{"tampered claims", tampered, "signature"},
		{"alg none", unsigned, "malformed"},
		{"garbage signature", header + ".e30.e30", "signature"},
		{"missing user claim", authztest.Sign(t, key, is.Claims(func(c map[string]any) { delete(c, "sub") })), `user claim "sub" is missing`},
		{"empty user claim", authztest.Sign(t, key, is.Claims(func(c map[string]any) { c["sub"] = "" })), `user claim "sub": want a non-empty string`},
		{"numeric sub", authztest.Sign(t, key, is.Claims(func(c map[string]any) { c["sub"] = 42 })), `sub`},
		{"groups a number", authztest.Sign(t, key, is.Claims(func(c map[string]any) { c["groups"] = 7 })), `groups claim "groups": want a string or a list of strings`},
		{"groups an object", authztest.Sign(t, key, is.Claims(func(c map[string]any) { c["groups"] = map[string]any{"a": 1} })), `want a string or a list of strings`},
		{"groups with a number", authztest.Sign(t, key, is.Claims(func(c map[string]any) { c["groups"] = []any{"a", 1} })), `want a string or a list of strings`},
		{"groups with an empty name", authztest.Sign(t, key, is.Claims(func(c map[string]any) { c["groups"] = []string{"a", ""} })), `holds an empty group name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := o.Identify(t.Context(), tt.token)
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %+v, %v; want an invalid-token error containing %q", id, err, tt.want)
			}
		})
	}
}

// A user claim other than "sub" is not typed by the token format, so its
// shape is checked here.
func TestOIDCRefusesBadUserClaim(t *testing.T) {
	t.Parallel()
	is, key, o := setupOIDC(t, OIDCConfig{UserClaim: "email"})
	tests := []struct {
		name  string
		email any
		want  string
	}{
		{"missing", nil, `user claim "email" is missing`},
		{"empty", "", `user claim "email": want a non-empty string`},
		{"a number", 42, `user claim "email": want a non-empty string`},
		{"a list", []string{"a@example.com"}, `user claim "email": want a non-empty string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			token := authztest.Sign(t, key, is.Claims(func(c map[string]any) {
				if tt.email != nil {
					c["email"] = tt.email
				}
			}))
			if _, err := o.Identify(t.Context(), token); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v; want an invalid-token error containing %q", err, tt.want)
			}
		})
	}
}

func TestOIDCTellsNonJWTsApart(t *testing.T) {
	t.Parallel()
	is, _, o := setupOIDC(t, OIDCConfig{})
	for _, raw := range []string{"", "dev-token", "a-static-token-with.one-dot", "a.b.c", "e30.e30.e30", "x.y.z.w.v"} {
		if _, err := o.Identify(t.Context(), raw); !errors.Is(err, ErrNotJWT) || errors.Is(err, ErrInvalidToken) {
			t.Errorf("%q: got %v; want ErrNotJWT", raw, err)
		}
	}
	if n := is.KeyFetches(); n != 0 {
		t.Errorf("values that are no JWT made %d key fetches", n)
	}
}

func TestOIDCClaimShapes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cfg    OIDCConfig
		edit   func(map[string]any)
		groups []string
		user   string
	}{
		{"list", OIDCConfig{}, func(c map[string]any) { c["groups"] = []string{"a", "b", "a"} }, []string{"a", "b"}, "u-123"},
		{"single string", OIDCConfig{}, func(c map[string]any) { c["groups"] = "a" }, []string{"a"}, "u-123"},
		{"empty list", OIDCConfig{}, func(c map[string]any) { c["groups"] = []string{} }, nil, "u-123"},
		{"missing", OIDCConfig{}, func(c map[string]any) { delete(c, "groups") }, nil, "u-123"},
		{"null", OIDCConfig{}, func(c map[string]any) { c["groups"] = nil }, nil, "u-123"},
		{"other claims", OIDCConfig{GroupsClaim: "roles", UserClaim: "email"}, func(c map[string]any) {
			c["roles"], c["email"] = []string{"x"}, "carol@example.com"
		}, []string{"x"}, "carol@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			is, key, o := setupOIDC(t, tt.cfg)
			id, err := o.Identify(t.Context(), authztest.Sign(t, key, is.Claims(tt.edit)))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(UserIdentity(tt.user, tt.groups), id); diff != "" {
				t.Errorf("identity (-want +got):\n%s", diff)
			}
		})
	}
}

// The provider's keys are fetched once and cached; when the provider rotates
// to a new key, the first token signed with it makes the verifier fetch the
// key set again, and a retired key stops working.
func TestOIDCFollowsKeyRotation(t *testing.T) {
	t.Parallel()
	is, oldKey, o := setupOIDC(t, OIDCConfig{})
	oldToken := authztest.Sign(t, oldKey, is.Claims(nil))
	for range 3 {
		if _, err := o.Identify(t.Context(), oldToken); err != nil {
			t.Fatal(err)
		}
	}
	if n := is.KeyFetches(); n != 1 {
		t.Errorf("three verifications fetched the keys %d times; want 1, then the cache", n)
	}

	newKey := authztest.NewKey(t, "key-2")
	is.Publish(newKey)
	id, err := o.Identify(t.Context(), authztest.Sign(t, newKey, is.Claims(func(c map[string]any) { c["sub"] = "after-rotation" })))
	if err != nil {
		t.Fatalf("a token signed with the rotated key: %v", err)
	}
	if id.Name != "user:after-rotation" {
		t.Errorf("identity %q after rotation", id.Name)
	}
	if n := is.KeyFetches(); n != 2 {
		t.Errorf("keys fetched %d times; want 2 (once more for the new key)", n)
	}
	if _, err := o.Identify(t.Context(), oldToken); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a token signed with the retired key: %v; want it refused", err)
	}
}

// Many callers verifying at once while the provider rotates keys all get
// through, and share key fetches rather than each making their own.
func TestOIDCConcurrentVerificationDuringRotation(t *testing.T) {
	t.Parallel()
	is, oldKey, o := setupOIDC(t, OIDCConfig{})
	oldToken := authztest.Sign(t, oldKey, is.Claims(nil))
	if _, err := o.Identify(t.Context(), oldToken); err != nil {
		t.Fatal(err)
	}
	newKey := authztest.NewKey(t, "key-2")
	newToken := authztest.Sign(t, newKey, is.Claims(nil))
	is.Publish(oldKey, newKey) // providers publish the next key before signing with it

	const callers = 32
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			token := oldToken
			if i%2 == 1 {
				token = newToken
			}
			for range 20 {
				if _, err := o.Identify(t.Context(), token); err != nil {
					t.Errorf("caller %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := is.KeyFetches(); n > 1+callers/2 {
		t.Errorf("%d key fetches for %d callers of the new key", n, callers/2)
	}
}

func TestNewOIDCRefusesBadSettings(t *testing.T) {
	t.Parallel()
	is := authztest.NewIssuer(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	tests := []struct {
		name string
		cfg  OIDCConfig
		want string
	}{
		{"no issuer", OIDCConfig{Audience: testAudience}, "want an https URL"},
		{"plain http off loopback", OIDCConfig{Issuer: "http://idp.invalid", Audience: testAudience}, "want an https URL"},
		{"not a URL", OIDCConfig{Issuer: "idp", Audience: testAudience}, "want an https URL"},
		{"no audience", OIDCConfig{Issuer: is.URL}, "oidc audience"},
		{"discovery names another issuer", OIDCConfig{Issuer: is.URL + "/tenant", Audience: testAudience}, "discover oidc issuer"},
		{"unreachable", OIDCConfig{Issuer: closed.URL, Audience: testAudience}, "discover oidc issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewOIDC(t.Context(), tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
