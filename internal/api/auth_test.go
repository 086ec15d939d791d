package api_test

import (
	"net/http"
	"testing"
)

func TestV1NeedsAValidToken(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for name, auth := range map[string]string{
		"no token":        "",
		"wrong token":     "Bearer nope",
		"token as basic":  "Basic " + portalToken,
		"prefix of token": "Bearer portal",
	} {
		r := f.do("GET", "/v1/replications", nil, "Authorization", auth)
		if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d, WWW-Authenticate %q", name, r.status, r.header.Get("WWW-Authenticate"))
		}
	}
	for _, path := range []string{"/livez", "/readyz", "/openapi.yaml"} {
		if r := f.do("GET", path, nil, "Authorization", ""); r.status != http.StatusOK {
			t.Errorf("%s without a token = %d", path, r.status)
		}
	}
}

func TestCallerIsRecordedAndScopesIdempotencyKeys(t *testing.T) {
	t.Parallel()
	f := setup(t)
	portal := f.do("POST", "/v1/replications", request("source-a"), "Idempotency-Key", "k")
	jira := f.do("POST", "/v1/replications", request("source-b"), "Idempotency-Key", "k", "Authorization", "Bearer jira-token")
	if portal.status != http.StatusAccepted || jira.status != http.StatusAccepted {
		t.Fatalf("statuses %d %d: %s", portal.status, jira.status, jira.body)
	}
	if by := portal.json(t)["requested_by"]; by != "token:portal" {
		t.Errorf("requested_by = %v, want token:portal", by)
	}
	if by := jira.json(t)["requested_by"]; by != "token:jira" {
		t.Errorf("requested_by = %v, want token:jira", by)
	}
}
