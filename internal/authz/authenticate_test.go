package authz

import (
	"context"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketbridge/bucketbridge/internal/authz/authztest"
)

func TestAuthenticator(t *testing.T) {
	t.Parallel()
	is, key, o := setupOIDC(t, OIDCConfig{})
	stranger := authztest.NewKey(t, "stranger")
	// An operator may configure any string as a static token, even one
	// shaped like a JWT; static tokens are matched first.
	jwtShapedStatic := authztest.Sign(t, stranger, is.Claims(nil))
	tokens := map[string]string{"alice-token-0123456789": "alice", "bob-token-0123456789": "bob", jwtShapedStatic: "odd"}
	withOIDC, err := NewAuthenticator(tokens, o)
	if err != nil {
		t.Fatal(err)
	}
	staticOnly, err := NewAuthenticator(tokens, nil)
	if err != nil {
		t.Fatal(err)
	}
	valid := authztest.Sign(t, key, is.Claims(nil))
	tests := []struct {
		name    string
		a       *Authenticator
		bearer  string
		want    Identity
		wantErr error
	}{
		{"static token", withOIDC, "bob-token-0123456789", TokenIdentity("bob"), nil},
		{"static token without oidc", staticOnly, "alice-token-0123456789", TokenIdentity("alice"), nil},
		{"JWT-shaped static token", withOIDC, jwtShapedStatic, TokenIdentity("odd"), nil},
		{"valid JWT", withOIDC, valid, UserIdentity("u-123", []string{"data-platform", "dr-owners"}), nil},
		{"prefix of a static token", withOIDC, "alice-token-012345678", Identity{}, ErrUnknownToken},
		{"empty", withOIDC, "", Identity{}, ErrUnknownToken},
		{"JWT without oidc", staticOnly, valid, Identity{}, ErrUnknownToken},
		{"invalid JWT", withOIDC, authztest.Sign(t, stranger, is.Claims(func(c map[string]any) { c["sub"] = "x" })), Identity{}, ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := tt.a.Authenticate(context.Background(), tt.bearer)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("error %v; want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, id); diff != "" {
				t.Errorf("identity (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := NewAuthenticator(map[string]string{"some-token-0123456789": ""}, nil); err == nil {
		t.Error("a static token without a name was accepted")
	}
}

func TestLooksLikeJWT(t *testing.T) {
	t.Parallel()
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256"}`))
	tests := []struct {
		in   string
		want bool
	}{
		{header + ".e30.c2ln", true},
		{header + ".e30.", false},
		{header + "..c2ln", false},
		{header + ".e30", false},
		{header + ".e30.c2ln.x.y", false},
		{"e30.e30.c2ln", false},         // header without alg
		{"!!!.e30.c2ln", false},         // header not base64url
		{"bm90IGpzb24.e30.c2ln", false}, // header not JSON
		{"dev-token", false},
	}
	for _, tt := range tests {
		if got := LooksLikeJWT(tt.in); got != tt.want {
			t.Errorf("LooksLikeJWT(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
