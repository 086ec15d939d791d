package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// devServer runs the whole server in dev mode on a fresh database until the
// test ends, and returns its base URL.
func devServer(t *testing.T) string {
	t.Helper()
	return startServer(t, map[string]string{"DATABASE_URL": storetest.NewDatabase(t), "BB_CLOUD": "fake"}).base
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// call sends one API request with token and decodes the JSON answer.
func call(t *testing.T, token, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

const demoRequest = `{
  "source":      {"account_id": "111111111111", "region": "us-east-1", "bucket": "demo-source",
                  "kms_key_arn": "arn:aws:kms:us-east-1:111111111111:key/11111111-1111-4111-8111-111111111111"},
  "destination": {"account_id": "222222222222", "region": "us-west-2", "bucket": "%s",
                  "kms_key_arn": "arn:aws:kms:us-west-2:222222222222:key/22222222-2222-4222-8222-222222222222"},
  "rule": {"prefix": "%s"}
}`

func demo(bucket, prefix string) string {
	return strings.Replace(strings.Replace(demoRequest, "%s", bucket, 1), "%s", prefix, 1)
}

// waitForState polls a request until it reaches one of the terminal states.
func waitForState(t *testing.T, token, url string) map[string]any {
	t.Helper()
	var r map[string]any
	waitFor(t, func() bool {
		_, r = call(t, token, "GET", url, "")
		switch r["state"] {
		case "succeeded", "failed", "cancelled", "deprovisioned":
			return true
		}
		return false
	})
	return r
}

// TestDevModeWalkthrough is the README's walkthrough: provision the demo
// buckets with a canary, see an actionable failure, deprovision.
func TestDevModeWalkthrough(t *testing.T) {
	t.Parallel()
	base := devServer(t)

	status, created := call(t, devToken, "POST", base+"/v1/replications", demo("demo-destination", "reports/"))
	if status != http.StatusAccepted || created["cloud"] != "fake" {
		t.Fatalf("create = %d %v", status, created)
	}
	self := base + created["links"].(map[string]any)["self"].(string)
	done := waitForState(t, devToken, self)
	if done["state"] != "succeeded" {
		t.Fatalf("demo request ended %v: %v", done["state"], done["last_error"])
	}
	_, steps := call(t, devToken, "GET", self+"/steps", "")
	seen := map[string]map[string]any{}
	for _, s := range steps["items"].([]any) {
		step := s.(map[string]any)
		seen[step["name"].(string)] = step
	}
	for _, name := range []string{"resolve_accounts", "inspect_source", "inspect_destination", "ensure_replication_role",
		"put_role_policy", "update_destination_key_policy", "update_destination_bucket_policy", "put_replication_rule", "verify"} {
		if seen[name]["status"] != "succeeded" {
			t.Errorf("step %s = %v", name, seen[name]["status"])
		}
	}
	if after, _ := json.Marshal(seen["update_destination_bucket_policy"]["after"]); !strings.Contains(string(after), "DenyInsecureTransport") {
		t.Errorf("the destination's foreign statement is gone: %s", after)
	}
	if after, _ := json.Marshal(seen["verify"]["after"]); !strings.Contains(string(after), "latency") {
		t.Errorf("verify recorded no latency: %s", after)
	}

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`bucketbridge_replications{state="succeeded"} 1`,
		`bucketbridge_requests_finished_total{state="succeeded"} 1`,
		`bucketbridge_steps_total{phase="provision",status="succeeded",step="verify"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	status, bad := call(t, devToken, "POST", base+"/v1/replications", demo("demo-unversioned", ""))
	if status != http.StatusAccepted {
		t.Fatalf("create into demo-unversioned = %d", status)
	}
	failed := waitForState(t, devToken, base+bad["links"].(map[string]any)["self"].(string))
	lastErr, _ := failed["last_error"].(map[string]any)
	if failed["state"] != "failed" || failed["current_step"] != "inspect_destination" ||
		!strings.Contains(lastErr["detail"].(string), "enable_versioning") {
		t.Errorf("unversioned destination ended %v with %v", failed["state"], failed["last_error"])
	}

	if status, _ := call(t, devToken, "DELETE", self, ""); status != http.StatusAccepted {
		t.Fatalf("DELETE = %d", status)
	}
	gone := waitForState(t, devToken, self)
	if gone["state"] != "deprovisioned" {
		t.Fatalf("deprovision ended %v: %v", gone["state"], gone["last_error"])
	}
	_, steps = call(t, devToken, "GET", self+"/steps", "")
	for _, s := range steps["items"].([]any) {
		step := s.(map[string]any)
		if step["phase"] == "deprovision" && step["name"] == "remove_destination_bucket_policy" {
			after, _ := json.Marshal(step["after"].(map[string]any)["policy"])
			if !strings.Contains(string(after), "DenyInsecureTransport") || strings.Contains(string(after), "Bucketbridge") {
				t.Errorf("after deprovisioning, the destination bucket policy is %s", after)
			}
		}
	}
}
