package authz

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
)

const testAudience = "bucketbridge"

// testIssuer is an OpenID provider on loopback: it serves discovery and a
// key set that tests change to rotate keys, and signs tokens.
type testIssuer struct {
	srv         *httptest.Server
	mu          sync.Mutex
	published   []jose.JSONWebKey
	jwksFetches atomic.Int64
}

type signingKey struct {
	kid  string
	priv *ecdsa.PrivateKey
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	is := &testIssuer{}
	mux := http.NewServeMux()
	// Discovery answers under any path, always naming the server's root as
	// the issuer, so a configured issuer that differs can be tested.
	mux.HandleFunc("GET /{path...}", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration") {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, map[string]any{
			"issuer":                                is.srv.URL,
			"jwks_uri":                              is.srv.URL + "/keys",
			"authorization_endpoint":                is.srv.URL + "/authorize",
			"token_endpoint":                        is.srv.URL + "/token",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"ES256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		is.jwksFetches.Add(1)
		is.mu.Lock()
		defer is.mu.Unlock()
		writeJSON(w, jose.JSONWebKeySet{Keys: is.published})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func newSigningKey(t *testing.T, kid string) signingKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid, priv}
}

// publish replaces the key set the issuer serves.
func (is *testIssuer) publish(keys ...signingKey) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.published = nil
	for _, k := range keys {
		is.published = append(is.published, jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: string(jose.ES256), Use: "sig"})
	}
}

// claims are valid claims for a token of this issuer, changed by edit.
func (is *testIssuer) claims(edit func(map[string]any)) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss":    is.srv.URL,
		"aud":    testAudience,
		"sub":    "u-123",
		"iat":    now.Unix(),
		"exp":    now.Add(time.Hour).Unix(),
		"groups": []string{"data-platform", "dr-owners"},
	}
	if edit != nil {
		edit(c)
	}
	return c
}

func sign(t *testing.T, k signingKey, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// setupOIDC starts an issuer publishing one key and a verifier trusting it.
func setupOIDC(t *testing.T, cfg OIDCConfig) (*testIssuer, signingKey, *OIDC) {
	t.Helper()
	is := newTestIssuer(t)
	key := newSigningKey(t, "key-1")
	is.publish(key)
	cfg.Issuer, cfg.Audience, cfg.HTTPClient = is.srv.URL, testAudience, is.srv.Client()
	o, err := NewOIDC(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return is, key, o
}

func TestOIDCIdentifiesValidToken(t *testing.T) {
	t.Parallel()
	is, key, o := setupOIDC(t, OIDCConfig{})
	id, err := o.Identify(t.Context(), sign(t, key, is.claims(nil)))
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
	stranger := newSigningKey(t, "stranger")
	valid := sign(t, key, is.claims(nil))
	header, _, _ := strings.Cut(valid, ".")
	otherClaims, _ := json.Marshal(is.claims(func(c map[string]any) { c["sub"] = "admin" }))
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(otherClaims) + "." + parts[2]
	unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(otherClaims) + ".x"

	tests := []struct {
		name  string
		token string
		want  string
	}{
		{"expired", sign(t, key, is.claims(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() })), "expired"},
		{"no expiry", sign(t, key, is.claims(func(c map[string]any) { delete(c, "exp") })), "expired"},
		{"not yet valid", sign(t, key, is.claims(func(c map[string]any) { c["nbf"] = time.Now().Add(time.Hour).Unix() })), "nbf"},
		{"wrong audience", sign(t, key, is.claims(func(c map[string]any) { c["aud"] = "another-app" })), "audience"},
		{"wrong issuer", sign(t, key, is.claims(func(c map[string]any) { c["iss"] = "https://idp.invalid" })), "issued by a different provider"},
		{"unknown key", sign(t, stranger, is.claims(nil)), "signature"},
		{"unknown key reusing a known key ID", sign(t, signingKey{"key-1", stranger.priv}, is.claims(nil)), "signature"},
		{"tampered claims", tampered, "signature"},
		{"alg none", unsigned, "malformed"},
		{"garbage signature", header + ".e30.e30", "signature"},
		{"missing user claim", sign(t, key, is.claims(func(c map[string]any) { delete(c, "sub") })), `user claim "sub" is missing`},
		{"empty user claim", sign(t, key, is.claims(func(c map[string]any) { c["sub"] = "" })), `user claim "sub": want a non-empty string`},
		{"numeric sub", sign(t, key, is.claims(func(c map[string]any) { c["sub"] = 42 })), `sub`},
		{"groups a number", sign(t, key, is.claims(func(c map[string]any) { c["groups"] = 7 })), `groups claim "groups": want a string or a list of strings`},
		{"groups an object", sign(t, key, is.claims(func(c map[string]any) { c["groups"] = map[string]any{"a": 1} })), `want a string or a list of strings`},
		{"groups with a number", sign(t, key, is.claims(func(c map[string]any) { c["groups"] = []any{"a", 1} })), `want a string or a list of strings`},
		{"groups with an empty name", sign(t, key, is.claims(func(c map[string]any) { c["groups"] = []string{"a", ""} })), `holds an empty group name`},
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
			token := sign(t, key, is.claims(func(c map[string]any) {
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
	if n := is.jwksFetches.Load(); n != 0 {
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
			id, err := o.Identify(t.Context(), sign(t, key, is.claims(tt.edit)))
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
	oldToken := sign(t, oldKey, is.claims(nil))
	for range 3 {
		if _, err := o.Identify(t.Context(), oldToken); err != nil {
			t.Fatal(err)
		}
	}
	if n := is.jwksFetches.Load(); n != 1 {
		t.Errorf("three verifications fetched the keys %d times; want 1, then the cache", n)
	}

	newKey := newSigningKey(t, "key-2")
	is.publish(newKey)
	id, err := o.Identify(t.Context(), sign(t, newKey, is.claims(func(c map[string]any) { c["sub"] = "after-rotation" })))
	if err != nil {
		t.Fatalf("a token signed with the rotated key: %v", err)
	}
	if id.Name != "user:after-rotation" {
		t.Errorf("identity %q after rotation", id.Name)
	}
	if n := is.jwksFetches.Load(); n != 2 {
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
	oldToken := sign(t, oldKey, is.claims(nil))
	if _, err := o.Identify(t.Context(), oldToken); err != nil {
		t.Fatal(err)
	}
	newKey := newSigningKey(t, "key-2")
	newToken := sign(t, newKey, is.claims(nil))
	is.publish(oldKey, newKey) // providers publish the next key before signing with it

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
	if n := is.jwksFetches.Load(); n > 1+callers/2 {
		t.Errorf("%d key fetches for %d callers of the new key", n, callers/2)
	}
}

func TestNewOIDCRefusesBadSettings(t *testing.T) {
	t.Parallel()
	is := newTestIssuer(t)
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
		{"no audience", OIDCConfig{Issuer: is.srv.URL}, "oidc audience"},
		{"discovery names another issuer", OIDCConfig{Issuer: is.srv.URL + "/tenant", Audience: testAudience}, "discover oidc issuer"},
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
