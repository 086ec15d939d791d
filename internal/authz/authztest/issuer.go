// Package authztest runs an OpenID provider on loopback for tests: it serves
// discovery and a key set that tests change to rotate keys, and signs
// tokens, so that OIDC is tested end to end without a network.
package authztest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Audience is the audience Claims puts in tokens.
const Audience = "bucketbridge"

// Issuer is an OpenID provider on loopback.
type Issuer struct {
	// URL is the issuer, as its discovery document names it.
	URL         string
	srv         *httptest.Server
	mu          sync.Mutex
	published   []jose.JSONWebKey
	jwksFetches atomic.Int64
}

// Key is a signing key and the key ID tokens name it by.
type Key struct {
	ID   string
	priv *ecdsa.PrivateKey
}

// NewIssuer starts an issuer publishing no keys, stopped when the test ends.
// Discovery answers under any path, always naming the server's root as the
// issuer, so that a configured issuer that differs can be tested.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	is := &Issuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{path...}", func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration") {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, map[string]any{
			"issuer":                                is.URL,
			"jwks_uri":                              is.URL + "/keys",
			"authorization_endpoint":                is.URL + "/authorize",
			"token_endpoint":                        is.URL + "/token",
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
	is.URL = is.srv.URL
	t.Cleanup(is.srv.Close)
	return is
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Client is an HTTP client for the issuer.
func (is *Issuer) Client() *http.Client { return is.srv.Client() }

// KeyFetches counts how often the key set was fetched.
func (is *Issuer) KeyFetches() int64 { return is.jwksFetches.Load() }

// NewKey makes a P-256 signing key called id.
func NewKey(t testing.TB, id string) Key {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return Key{ID: id, priv: priv}
}

// Publish replaces the key set the issuer serves.
func (is *Issuer) Publish(keys ...Key) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.published = nil
	for _, k := range keys {
		is.published = append(is.published, jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.ID, Algorithm: string(jose.ES256), Use: "sig"})
	}
}

// Claims are valid claims for a token of this issuer, for user u-123 in
// groups data-platform and dr-owners, changed by edit (which may be nil).
func (is *Issuer) Claims(edit func(map[string]any)) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss":    is.URL,
		"aud":    Audience,
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

// Sign returns claims as a compact JWS signed with k (ES256), as an identity
// provider issues them.
func Sign(t testing.TB, k Key, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.ID}},
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

// Renamed is k under another key ID: a stranger's key claiming to be one
// the issuer published.
func (k Key) Renamed(id string) Key { return Key{ID: id, priv: k.priv} }
