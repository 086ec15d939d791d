package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketbridge/bucketbridge/internal/awsfake"
	"github.com/bucketbridge/bucketbridge/internal/policy"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// savedWorld is dev mode's in-memory AWS as the database holds it.
func savedWorld(t *testing.T, databaseURL string) *awsfake.Snapshot {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, databaseURL, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	data, err := st.LoadDevCloud(ctx)
	if err != nil || data == nil {
		t.Fatalf("load the dev cloud: %d bytes, %v", len(data), err)
	}
	var s awsfake.Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// documents is what a world holds that bucketbridge writes or removes.
type documents struct {
	Roles       map[string][]string // by account: role names
	Managed     map[string]int      // by account: customer-managed policies
	Buckets     map[string]string   // by bucket: versioning, and a replication configuration
	Objects     map[string]int      // by bucket: versions and delete markers
	BucketPols  map[string]policy.Document
	KeyPolicies map[string]policy.Document
}

func documentsOf(t *testing.T, s *awsfake.Snapshot) documents {
	t.Helper()
	d := documents{Roles: map[string][]string{}, Managed: map[string]int{}, Buckets: map[string]string{}, Objects: map[string]int{},
		BucketPols: map[string]policy.Document{}, KeyPolicies: map[string]policy.Document{}}
	parse := func(doc string) policy.Document {
		p, err := policy.Parse([]byte(doc))
		if err != nil {
			t.Fatalf("parse %s: %v", doc, err)
		}
		return p
	}
	for _, a := range s.Accounts {
		for _, r := range a.Roles {
			d.Roles[a.ID] = append(d.Roles[a.ID], r.Name)
		}
		d.Managed[a.ID] = len(a.Policies)
	}
	for _, b := range s.Buckets {
		d.Buckets[b.Name] = string(b.Versioning)
		if b.Replication != nil {
			d.Buckets[b.Name] += " with replication"
		}
		d.Objects[b.Name] = len(b.Objects)
		if b.Policy != "" {
			d.BucketPols[b.Name] = parse(b.Policy)
		}
	}
	for _, k := range s.Keys {
		d.KeyPolicies[k.ARN] = parse(k.Policy)
	}
	return d
}

// TestDevModeSurvivesARestart provisions two requests sharing the
// destination's documents, stops the server, and removes both through a new
// server on the same database: the removal finds everything the records
// speak of, and leaves the demo world as it was seeded.
func TestDevModeSurvivesARestart(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": storetest.NewDatabase(t), "BB_CLOUD": "fake"}
	first := startServer(t, env)
	var paths []string
	for _, body := range []string{demo("demo-destination", "reports/"),
		strings.Replace(strings.Replace(demo("demo-destination", "other/"), `"demo-source"`, `"demo-source-other-key"`, 1),
			"11111111-1111-4111-8111-111111111111", "33333333-3333-4333-8333-333333333333", 1)} {
		status, created := call(t, devToken, "POST", first.base+"/v1/replications", body)
		if status != http.StatusAccepted {
			t.Fatalf("create = %d %v", status, created)
		}
		path := created["links"].(map[string]any)["self"].(string)
		if done := waitForState(t, devToken, first.base+path); done["state"] != "succeeded" {
			t.Fatalf("request ended %v: %v", done["state"], done["last_error"])
		}
		sameLatency(t, first.base+path)
		paths = append(paths, path)
	}
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	provisioned := documentsOf(t, savedWorld(t, env["DATABASE_URL"]))
	if roles := provisioned.Roles[awsfake.DemoSourceAccount]; !strings.Contains(strings.Join(roles, " "), "bucketbridge-demo-source") {
		t.Fatalf("the saved world lacks the replication roles the records speak of: %v", roles)
	}

	second := startServer(t, env)
	for _, path := range paths {
		if status, r := call(t, devToken, "DELETE", second.base+path, ""); status != http.StatusAccepted {
			t.Fatalf("DELETE after the restart = %d %v", status, r)
		}
		if gone := waitForState(t, devToken, second.base+path); gone["state"] != "deprovisioned" {
			t.Fatalf("deprovision after the restart ended %v: %v", gone["state"], gone["last_error"])
		}
		_, steps := call(t, devToken, "GET", second.base+path+"/steps", "")
		for _, s := range steps["items"].([]any) {
			step := s.(map[string]any)
			if step["phase"] == "deprovision" && step["name"] == "delete_role" && step["changed"] != true && path == paths[1] {
				t.Errorf("the last removal did not delete its role after the restart: %v", step)
			}
		}
	}
	if err := second.stop(); err != nil {
		t.Fatal(err)
	}
	seed := awsfake.NewDemo("", "")
	if diff := cmp.Diff(documentsOf(t, seed.Snapshot()), documentsOf(t, savedWorld(t, env["DATABASE_URL"])),
		cmp.Comparer(policy.Equal)); diff != "" {
		t.Errorf("after removing everything, the world is not the seeded one (-seed +saved):\n%s", diff)
	}
}

// sameLatency checks that the request's success event gives the canary's
// latency as its verify step recorded it.
func sameLatency(t *testing.T, url string) {
	t.Helper()
	_, steps := call(t, devToken, "GET", url+"/steps", "")
	var ms any
	for _, s := range steps["items"].([]any) {
		if step := s.(map[string]any); step["name"] == "verify" {
			// The event gives the latency of the SSE-KMS canary that replicated.
			for _, c := range step["after"].(map[string]any)["canaries"].([]any) {
				if c := c.(map[string]any); c["kind"] == "sse-kms" && c["outcome"] == "replicated" {
					ms = c["latency_ms"]
				}
			}
		}
	}
	_, events := call(t, devToken, "GET", url+"/events", "")
	items := events["items"].([]any)
	last := items[len(items)-1].(map[string]any)["message"].(string)
	if want := fmt.Sprintf("replicated in %vms", ms); !strings.HasSuffix(last, want) {
		t.Errorf("the success event says %q, the verify step recorded latency_ms %v", last, ms)
	}
}

// TestDevModeWithoutPersistenceKeepsNothing: with BB_FAKE_PERSIST=false the
// server provisions in an in-memory AWS of its own and saves none of it.
func TestDevModeWithoutPersistenceKeepsNothing(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": storetest.NewDatabase(t), "BB_CLOUD": "fake", "BB_FAKE_PERSIST": "false"}
	srv := startServer(t, env)
	status, created := call(t, devToken, "POST", srv.base+"/v1/replications", demo("demo-destination", "reports/"))
	if status != http.StatusAccepted {
		t.Fatalf("create = %d %v", status, created)
	}
	if done := waitForState(t, devToken, srv.base+created["links"].(map[string]any)["self"].(string)); done["state"] != "succeeded" {
		t.Fatalf("request ended %v: %v", done["state"], done["last_error"])
	}
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, env["DATABASE_URL"], 2)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if data, err := st.LoadDevCloud(ctx); err != nil || data != nil {
		t.Errorf("the database holds %d bytes of a saved world (err %v), want none", len(data), err)
	}
}
