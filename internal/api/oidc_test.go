package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/authz/authztest"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// TestIdentityProviderTokensThroughHTTP: JWTs of the organisation's
// identity provider authenticate callers whose groups hold the grants;
// every kind of bad token is a 401 that says the token is invalid, and a
// key rotation is followed.
func TestIdentityProviderTokensThroughHTTP(t *testing.T) {
	t.Parallel()
	is := authztest.NewIssuer(t)
	key := authztest.NewKey(t, "key-1")
	is.Publish(key)
	oidc, err := authz.NewOIDC(t.Context(), authz.OIDCConfig{Issuer: is.URL, Audience: authztest.Audience, HTTPClient: is.Client()})
	if err != nil {
		t.Fatal(err)
	}
	authn, err := authz.NewAuthenticator(tokens, oidc)
	if err != nil {
		t.Fatal(err)
	}
	path := writeGrants(t, t.TempDir(), `grants:
  - {who: ["group:data-platform"], accounts: ["111111111111"], role: requester}
  - {who: ["group:dr-owners"],     accounts: ["222222222222"], role: approver}
  - {who: ["token:portal"],        accounts: ["111111111111"], role: reader}
`)
	grants, err := authz.NewHolder(path)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, storetest.New(t), options{grants: grants, authn: authn})
	bearer := func(token string) []string { return []string{"Authorization", "Bearer " + token} }
	inGroups := func(sub string, groups ...string) string {
		return authztest.Sign(t, key, is.Claims(func(c map[string]any) { c["sub"], c["groups"] = sub, groups }))
	}

	created := f.do("POST", "/v1/replications", request("demo-source"), bearer(inGroups("carla", "data-platform"))...)
	if created.status != http.StatusAccepted {
		t.Fatalf("create with a valid JWT = %d %s", created.status, created.body)
	}
	body := created.json(t)
	if body["requested_by"] != "user:carla" || body["state"] != "awaiting_approval" {
		t.Errorf("created by %v in state %v; want user:carla, awaiting the destination's approval", body["requested_by"], body["state"])
	}
	id := body["id"].(string)
	if r := f.do("POST", "/v1/replications/"+id+"/approve", nil, bearer(inGroups("carla", "data-platform"))...); r.status != http.StatusForbidden {
		t.Errorf("carla approving her own request = %d, want 403", r.status)
	}
	approved := f.do("POST", "/v1/replications/"+id+"/approve", nil, bearer(inGroups("dmitri", "dr-owners"))...)
	if approved.status != http.StatusAccepted || approved.json(t)["approved_by"] != "user:dmitri" {
		t.Errorf("approval by a member of dr-owners = %d %s", approved.status, approved.body)
	}
	if r := f.do("GET", "/v1/replications/"+id, nil, bearer(inGroups("nobody", "other-team"))...); r.status != http.StatusNotFound {
		t.Errorf("a user in no granted group reading it = %d, want 404", r.status)
	}
	// Static tokens still work beside the identity provider.
	if r := f.do("GET", "/v1/replications/"+id, nil); r.status != http.StatusOK {
		t.Errorf("a static token beside OIDC = %d", r.status)
	}

	stranger := authztest.NewKey(t, "stranger")
	for name, token := range map[string]string{
		"expired":                   authztest.Sign(t, key, is.Claims(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() })),
		"wrong audience":            authztest.Sign(t, key, is.Claims(func(c map[string]any) { c["aud"] = "another-app" })),
		"wrong issuer":              authztest.Sign(t, key, is.Claims(func(c map[string]any) { c["iss"] = "https://idp.invalid" })),
		"unknown key":               authztest.Sign(t, stranger, is.Claims(nil)),
		"known key ID, another key": authztest.Sign(t, stranger.Renamed("key-1"), is.Claims(nil)),
	} {
		r := f.do("GET", "/v1/replications", nil, bearer(token)...)
		if r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s: %d, WWW-Authenticate %q; want 401 saying the token is invalid", name, r.status, r.header.Get("WWW-Authenticate"))
		}
		if strings.Contains(string(r.body), "carla") || strings.Contains(string(r.body), "items") {
			t.Errorf("%s: the refusal says something of the data: %s", name, r.body)
		}
	}

	// The provider rotates: it publishes a new key, signs with it, and
	// retires the old one.
	old := inGroups("carla", "data-platform")
	rotated := authztest.NewKey(t, "key-2")
	is.Publish(rotated)
	fresh := authztest.Sign(t, rotated, is.Claims(func(c map[string]any) { c["sub"], c["groups"] = "carla", []string{"data-platform"} }))
	// go-oidc lets a verification that arrives just as the previous fetch of
	// the key set ends share that fetch's (older) answer, so a caller may be
	// refused once in that instant; the next try fetches the new set.
	status := 0
	for try := 0; try < 3 && status != http.StatusOK; try++ {
		status = f.do("GET", "/v1/replications/"+id, nil, bearer(fresh)...).status
	}
	if status != http.StatusOK {
		t.Errorf("a token signed with the rotated key = %d, want 200", status)
	}
	if r := f.do("GET", "/v1/replications/"+id, nil, bearer(old)...); r.status != http.StatusUnauthorized {
		t.Errorf("a token signed with the retired key = %d, want 401", r.status)
	}
}
