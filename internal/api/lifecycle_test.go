package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

func TestDryRunShowsTheDocumentsAndStoresNothing(t *testing.T) {
	t.Parallel()
	f := setup(t)
	b := request("demo-source")
	b["dry_run"] = true
	r := f.do("POST", "/v1/replications", b)
	if r.status != http.StatusOK {
		t.Fatalf("dry run = %d %s", r.status, r.body)
	}
	body := r.json(t)
	if got := body["replication_role_arn"]; got != "arn:aws:iam::111111111111:role/bucketbridge-demo-source" {
		t.Errorf("replication_role_arn = %v", got)
	}
	docs := body["documents"].(map[string]any)
	for _, name := range []string{"trust_policy", "role_policies", "destination_key_policy_statement",
		"destination_bucket_policy_statements", "replication_rule"} {
		if docs[name] == nil {
			t.Errorf("documents.%s missing", name)
		}
	}
	roles := docs["role_policies"].(map[string]any)
	if inline := roles["inline"].([]any); len(inline) != 1 || inline[0].(map[string]any)["name"] != "bucketbridge-replication" {
		t.Errorf("role_policies.inline = %v, want the role's one inline policy bucketbridge-replication", roles["inline"])
	}
	if managed := roles["managed"].([]any); len(managed) != 0 {
		t.Errorf("role_policies.managed = %v, want [] for one request", managed)
	}
	if v, ok := docs["source_default_encryption"]; !ok || v != nil {
		t.Errorf("source_default_encryption = %v (present %v), want null when the request does not ask for it", v, ok)
	}
	if !strings.Contains(string(r.body), "kms:ViaService") || !strings.Contains(string(r.body), "arn:aws:s3:::demo-destination/reports/*") {
		t.Errorf("documents lack the conditioned, prefix-scoped grants:\n%s", r.body)
	}
	if items := f.do("GET", "/v1/replications", nil).json(t)["items"].([]any); len(items) != 0 {
		t.Errorf("a dry run stored %d requests", len(items))
	}
	b["source"].(map[string]any)["account_id"] = "1"
	if r := f.do("POST", "/v1/replications", b); r.status != http.StatusBadRequest {
		t.Errorf("an invalid dry run = %d, want the same validation as a real request", r.status)
	}
}

// lifecycleFixture serves the API and gives the test the store, so it can
// play the worker's part.
func lifecycleFixture(t *testing.T) (*fixture, *store.Store) {
	st := storetest.New(t)
	return newFixture(t, st), st
}

// runAs claims the request as a worker and completes it, or fails it.
func runAs(t *testing.T, st *store.Store, fail bool) {
	t.Helper()
	ctx := context.Background()
	c, ok, err := st.Claim(ctx, "worker", time.Minute)
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	if fail {
		err = st.Fail(ctx, &c, provision.Failure{Step: "inspect_destination", Permanent: true,
			Problem: []byte(`{"type":"urn:bucketbridge:problem:step-failed","title":"Step failed","status":422,"detail":"enable versioning"}`)})
	} else {
		err = st.Finish(ctx, &c, provision.ActionComplete, "done")
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestRetryAndDeprovisionFollowTheLifecycle(t *testing.T) {
	t.Parallel()
	f, st := lifecycleFixture(t)
	id := f.do("POST", "/v1/replications", request("demo-source")).json(t)["id"].(string)
	path := "/v1/replications/" + id

	if r := f.do("POST", path+"/retry", nil); r.status != http.StatusConflict {
		t.Errorf("retry a pending request = %d, want 409", r.status)
	}
	if r := f.do("DELETE", path, nil); r.status != http.StatusConflict {
		t.Errorf("deprovision a pending request = %d, want 409", r.status)
	}

	runAs(t, st, true)
	failed := f.do("GET", path, nil).json(t)
	if failed["state"] != "failed" || failed["last_error"].(map[string]any)["detail"] != "enable versioning" {
		t.Fatalf("failed request = %v", failed)
	}
	r := f.do("POST", path+"/retry", nil)
	if r.status != http.StatusAccepted || r.json(t)["state"] != "running" || r.json(t)["finished_at"] != nil {
		t.Fatalf("retry = %d %s", r.status, r.body)
	}

	runAs(t, st, false)
	r = f.do("DELETE", path, nil)
	if r.status != http.StatusAccepted || r.json(t)["state"] != "deprovisioning" || r.json(t)["phase"] != "deprovision" {
		t.Fatalf("deprovision = %d %s", r.status, r.body)
	}
	if again := f.do("DELETE", path, nil); again.status != http.StatusAccepted || again.json(t)["state"] != "deprovisioning" {
		t.Errorf("second DELETE = %d %s", again.status, again.body)
	}
	if r := f.do("DELETE", "/v1/replications/0190a4c6-0000-7000-8000-000000000000", nil); r.status != http.StatusNotFound {
		t.Errorf("DELETE unknown = %d", r.status)
	}
}

func TestCancellingARunningRequestIsAccepted(t *testing.T) {
	t.Parallel()
	f, st := lifecycleFixture(t)
	id := f.do("POST", "/v1/replications", request("demo-source")).json(t)["id"].(string)
	if _, ok, err := st.Claim(context.Background(), "worker", time.Minute); err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	r := f.do("POST", "/v1/replications/"+id+"/cancel", nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("cancel running = %d %s", r.status, r.body)
	}
	if body := r.json(t); body["state"] != "running" || body["cancel_requested"] != true {
		t.Errorf("cancel running = %s", r.body)
	}
}

func TestEventsFollowTheTimelineAsServerSentEvents(t *testing.T) {
	t.Parallel()
	f, st := lifecycleFixture(t)
	id := f.do("POST", "/v1/replications", request("demo-source")).json(t)["id"].(string)
	if _, err := st.Cancel(context.Background(), id, "test"); err != nil {
		t.Fatal(err)
	}
	r := f.do("GET", "/v1/replications/"+id+"/events", nil, "Accept", "text/event-stream")
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream = %d %q", r.status, r.header.Get("Content-Type"))
	}
	var states []string
	for _, block := range strings.Split(strings.TrimSpace(string(r.body)), "\n\n") {
		var e struct{ State string }
		for _, line := range strings.Split(block, "\n") {
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				if err := json.Unmarshal([]byte(data), &e); err != nil {
					t.Fatalf("event data %q: %v", data, err)
				}
			}
		}
		states = append(states, e.State)
	}
	if strings.Join(states, ",") != "pending,cancelled" {
		t.Errorf("streamed states %v, want pending then cancelled, then the end of the stream", states)
	}
	resumed := f.do("GET", "/v1/replications/"+id+"/events", nil, "Accept", "text/event-stream", "Last-Event-ID", "1")
	if strings.Count(string(resumed.body), "data: ") != 1 {
		t.Errorf("resuming after event 1 sent:\n%s", resumed.body)
	}
}

func TestMetricsCountRequestsByRoute(t *testing.T) {
	t.Parallel()
	f := setup(t)
	id := f.do("POST", "/v1/replications", request("demo-source")).json(t)["id"].(string)
	f.do("GET", "/v1/replications/"+id, nil)
	f.do("GET", "/v1/replications/"+id, nil)
	r := f.do("GET", "/metrics", nil, "Authorization", "")
	if r.status != http.StatusOK {
		t.Fatalf("metrics = %d", r.status)
	}
	for _, want := range []string{
		`bucketbridge_http_requests_total{method="GET",route="/v1/replications/{id}",status="200"} 2`,
		`bucketbridge_http_requests_total{method="POST",route="/v1/replications",status="202"} 1`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %s in:\n%s", want, r.body)
		}
	}
	if strings.Contains(string(r.body), id) {
		t.Error("metrics name a request id: every id would make new series")
	}
}
