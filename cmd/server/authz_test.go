package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/bucketbridge/bucketbridge/internal/authz/authztest"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// devGrants is the repository's dev-mode grants file.
const devGrants = "../../dev/authz.yaml"

// The README's two-party walkthrough: with dev/authz.yaml, alice asks to
// replicate from her account into bob's; nothing runs until bob approves,
// then the workers provision it; a request bob rejects ends there.
func TestTwoPartyConsentWalkthrough(t *testing.T) {
	t.Parallel()
	srv := startServer(t, map[string]string{"DATABASE_URL": storetest.NewDatabase(t), "BB_CLOUD": "fake", "BB_AUTHZ_FILE": devGrants})
	base := srv.base
	const alice, bob = "alice-token", "bob-token"

	status, created := call(t, alice, "POST", base+"/v1/replications", demo("demo-destination", "reports/"))
	if status != http.StatusAccepted || created["state"] != "awaiting_approval" || created["requested_by"] != "token:alice" {
		t.Fatalf("alice's request = %d %v", status, created)
	}
	self := base + created["links"].(map[string]any)["self"].(string)
	if _, steps := call(t, alice, "GET", self+"/steps", ""); len(steps["items"].([]any)) != 0 {
		t.Errorf("a request awaiting approval has steps: %v", steps)
	}
	status, denied := call(t, alice, "POST", self+"/approve", "")
	if status != http.StatusForbidden || !strings.Contains(denied["detail"].(string), "approver on account 222222222222") {
		t.Errorf("alice approving her own request = %d %v", status, denied)
	}
	if status, list := call(t, bob, "GET", base+"/v1/replications?state=awaiting_approval", ""); status != http.StatusOK ||
		len(list["items"].([]any)) != 1 {
		t.Errorf("bob's list of what awaits him = %d %v", status, list)
	}
	status, approved := call(t, bob, "POST", self+"/approve", "")
	if status != http.StatusAccepted || approved["state"] != "pending" || approved["approved_by"] != "token:bob" {
		t.Fatalf("bob's approval = %d %v", status, approved)
	}
	if done := waitForState(t, alice, self); done["state"] != "succeeded" {
		t.Fatalf("the approved request ended %v: %v", done["state"], done["last_error"])
	}
	_, events := call(t, alice, "GET", self+"/events", "")
	var states []string
	for _, e := range events["items"].([]any) {
		if ev := e.(map[string]any); ev["type"] == "state" {
			states = append(states, ev["state"].(string)+" by "+strings.SplitN(ev["actor"].(string), "/", 2)[0])
		}
	}
	if got := strings.Join(states, ", "); !strings.HasPrefix(got, "awaiting_approval by token:alice, pending by token:bob, running by worker:") ||
		!strings.Contains(got, "succeeded by worker:") {
		t.Errorf("timeline: %s", got)
	}

	status, second := call(t, alice, "POST", base+"/v1/replications", demo("demo-destination", "logs/"))
	if status != http.StatusAccepted {
		t.Fatalf("alice's second request = %d %v", status, second)
	}
	other := base + second["links"].(map[string]any)["self"].(string)
	status, rejected := call(t, bob, "POST", other+"/reject", `{"reason": "logs stay in account 111111111111"}`)
	if status != http.StatusOK || rejected["state"] != "rejected" || rejected["rejection_reason"] != "logs stay in account 111111111111" {
		t.Fatalf("bob's rejection = %d %v", status, rejected)
	}
	if status, _ := call(t, alice, "DELETE", other, ""); status != http.StatusConflict {
		t.Errorf("deprovisioning a rejected request = %d, want 409: it wrote nothing", status)
	}
	if status, _ := call(t, bob, "POST", base+"/v1/replications", demo("demo-destination", "bob/")); status != http.StatusForbidden {
		t.Errorf("bob asking to replicate alice's bucket = %d, want 403", status)
	}
	log := srv.logs.String()
	if !strings.Contains(log, `"grants":{"mode":"file","reader":0,"requester":1,"approver":1,"admin":1}`) {
		t.Errorf("the start-up log lacks the grant counts:\n%s", log)
	}
	for _, token := range []string{alice, bob, devToken} {
		if strings.Contains(log, token) {
			t.Errorf("the log shows the token %s", token)
		}
	}
}

// SIGHUP reloads the grants file; a file that cannot be used keeps the
// grants in force, and the log says why.
func TestHangupReloadsTheGrantsFile(t *testing.T) {
	t.Parallel()
	path := writeGrants(t, `grants:
  - {who: ["token:alice"], accounts: ["111111111111"], role: requester}
`)
	srv := startServer(t, map[string]string{"DATABASE_URL": storetest.NewDatabase(t), "BB_CLOUD": "fake", "BB_AUTHZ_FILE": path})
	_, created := call(t, "alice-token", "POST", srv.base+"/v1/replications", demo("demo-destination", "reports/"))
	self := srv.base + created["links"].(map[string]any)["self"].(string)
	if status, _ := call(t, "bob-token", "GET", self, ""); status != http.StatusNotFound {
		t.Fatalf("bob, who holds no grant, reads alice's request: %d", status)
	}

	hangups := func(what string) int { return strings.Count(srv.logs.String(), what) }
	reloaded := hangups("SIGHUP: grants reloaded")
	if err := os.WriteFile(path, []byte(`grants:
  - {who: ["token:alice"], accounts: ["111111111111"], role: requester}
  - {who: ["token:bob"], accounts: ["222222222222"], role: approver}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return hangups("SIGHUP: grants reloaded") > reloaded })
	if status, approved := call(t, "bob-token", "POST", self+"/approve", ""); status != http.StatusAccepted {
		t.Fatalf("bob's approval after the reload = %d %v", status, approved)
	}

	refused := hangups("SIGHUP: the grants file is not usable")
	if err := os.WriteFile(path, []byte("grants:\n  - {who: [\"token:bob\"], accounts: [*], role: approver}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return hangups("SIGHUP: the grants file is not usable") > refused })
	if !strings.Contains(srv.logs.String(), `write \"*\" with its quotes`) {
		t.Errorf("the log does not say why the file is unusable:\n%s", srv.logs)
	}
	if status, _ := call(t, "bob-token", "GET", self, ""); status != http.StatusOK {
		t.Errorf("after an unusable file, bob reads the request: %d; want the grants in force kept", status)
	}
}

// Against real AWS the server never starts without grants, unless told in
// so many words that every caller is admin, which it then says at start.
func TestAWSModeRefusesToStartWithoutGrants(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": storetest.NewDatabase(t), "BB_CLOUD": "aws", "BB_WORKERS": "0",
		"BB_API_TOKENS": "portal:0123456789abcdef"}
	with := func(extra map[string]string) map[string]string {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		return env
	}
	for name, tc := range map[string]struct {
		env  map[string]string
		want []string
	}{
		"no grants file":      {with(nil), []string{"BB_AUTHZ_FILE", "BB_AUTHZ=allow-all-tokens-as-admin"}},
		"a missing file":      {with(map[string]string{"BB_AUTHZ_FILE": "/nonexistent/authz.yaml"}), []string{"BB_AUTHZ_FILE", "no such file"}},
		"an invalid file":     {with(map[string]string{"BB_AUTHZ_FILE": writeGrants(t, "grants:\n  - {who: [alice], accounts: [\"1\"], role: owner}\n")}), []string{"grants[0].who[0]", "grants[0].accounts[0]", "grants[0].role"}},
		"another BB_AUTHZ":    {with(map[string]string{"BB_AUTHZ": "allow-all"}), []string{"BB_AUTHZ:"}},
		"allow-all with file": {with(map[string]string{"BB_AUTHZ": "allow-all-tokens-as-admin", "BB_AUTHZ_FILE": devGrants}), []string{"contradict"}},
	} {
		err := run(context.Background(), nil, func(k string) string { return tc.env[k] }, io.Discard)
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: run = %v, want an error saying %q", name, err, want)
			}
		}
	}

	srv := startServer(t, with(map[string]string{"BB_AUTHZ": "allow-all-tokens-as-admin"}))
	if !strings.Contains(srv.logs.String(), `"level":"WARN","msg":"BB_AUTHZ=allow-all-tokens-as-admin: every caller with a valid token is admin on every account`) {
		t.Errorf("allow-all is not warned about at start:\n%s", srv.logs)
	}
	if status, _ := call(t, "0123456789abcdef", "GET", srv.base+"/v1/replications", ""); status != http.StatusOK {
		t.Errorf("list with allow-all = %d", status)
	}
}

// The server accepts its identity provider's JWTs, naming users and
// groups by the configured claims.
func TestServerAcceptsIdentityProviderTokens(t *testing.T) {
	t.Parallel()
	is := authztest.NewIssuer(t)
	key := authztest.NewKey(t, "k1")
	is.Publish(key)
	srv := startServer(t, map[string]string{
		"DATABASE_URL":         storetest.NewDatabase(t),
		"BB_CLOUD":             "fake",
		"BB_OIDC_ISSUER":       is.URL,
		"BB_OIDC_AUDIENCE":     authztest.Audience,
		"BB_OIDC_USER_CLAIM":   "email",
		"BB_OIDC_GROUPS_CLAIM": "roles",
		"BB_AUTHZ_FILE": writeGrants(t, `grants:
  - {who: ["group:dr-admins"], accounts: ["*"], role: admin}
`),
	})
	token := authztest.Sign(t, key, is.Claims(func(c map[string]any) {
		c["email"], c["roles"] = "ana@example.com", []string{"dr-admins"}
	}))
	status, created := call(t, token, "POST", srv.base+"/v1/replications", demo("demo-destination", "reports/"))
	if status != http.StatusAccepted || created["requested_by"] != "user:ana@example.com" || created["state"] != "pending" {
		t.Fatalf("create with a JWT = %d %v", status, created)
	}
	expired := authztest.Sign(t, key, is.Claims(func(c map[string]any) {
		c["email"], c["roles"], c["exp"] = "ana@example.com", []string{"dr-admins"}, 1
	}))
	req, _ := http.NewRequest("GET", srv.base+"/v1/replications", nil)
	req.Header.Set("Authorization", "Bearer "+expired)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	json.NewDecoder(resp.Body).Decode(&p)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("an expired JWT = %d %v", resp.StatusCode, p)
	}
	if strings.Contains(srv.logs.String(), token) {
		t.Error("the log shows a bearer token")
	}
}
