package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// teamGrants are the grants of the authorization tests: every role, on
// one account, the other, or every account.
const teamGrants = `grants:
  - {who: ["token:alice"], accounts: ["111111111111"], role: requester}
  - {who: ["token:bob"],   accounts: ["222222222222"], role: approver}
  - {who: ["token:carol"], accounts: ["222222222222"], role: reader}
  - {who: ["token:dave"],  accounts: ["111111111111"], role: admin}
  - {who: ["token:eve"],   accounts: ["333333333333"], role: requester}
  - {who: ["token:ops"],   accounts: ["*"],            role: admin}
`

// callers are the callers of teamGrants, in the order tables list them.
var callers = []string{"alice", "bob", "carol", "dave", "eve", "ops"}

// pairs are the (source account, destination account) of the requests the
// tables act on.
var pairs = [][2]string{
	{"111111111111", "222222222222"},
	{"222222222222", "111111111111"},
	{"333333333333", "222222222222"},
}

func pairName(p [2]string) string { return p[0][:3] + "→" + p[1][:3] }

// writeGrants writes a grants file and returns its path.
func writeGrants(t *testing.T, dir, content string) string {
	t.Helper()
	path := filepath.Join(dir, "authz.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// authzEnv is a fixture deciding with a grants file, and its store, so the
// test can put requests in any state as a worker would.
type authzEnv struct {
	*fixture
	st     *store.Store
	grants *authz.Holder
	path   string
	log    *lockedBuffer
	reg    *prometheus.Registry
}

func newAuthzEnv(t *testing.T, grants string) *authzEnv {
	t.Helper()
	path := writeGrants(t, t.TempDir(), grants)
	h, err := authz.NewHolder(path)
	if err != nil {
		t.Fatal(err)
	}
	st := storetest.New(t)
	e := &authzEnv{st: st, grants: h, path: path, log: &lockedBuffer{}, reg: prometheus.NewRegistry()}
	e.fixture = newFixture(t, st, options{grants: h, log: e.log, registry: e.reg})
	return e
}

// regrant replaces the grants file and reloads it, as SIGHUP does.
func (e *authzEnv) regrant(t *testing.T, grants string) {
	t.Helper()
	writeGrants(t, filepath.Dir(e.path), grants)
	if err := e.grants.Reload(); err != nil {
		t.Fatal(err)
	}
}

// as sends a request as caller.
func (e *authzEnv) as(caller, method, path string, body any, headers ...string) response {
	e.t.Helper()
	return e.do(method, path, body, append([]string{"Authorization", "Bearer " + caller + "-token"}, headers...)...)
}

var bucketSeq atomic.Int64

// pairSpec is a valid request body from pair[0] to pair[1], on buckets no
// other request uses.
func pairSpec(pair [2]string) map[string]any {
	n := bucketSeq.Add(1)
	return map[string]any{
		"source": map[string]any{"account_id": pair[0], "region": "us-east-1", "bucket": fmt.Sprintf("src-%d", n),
			"kms_key_arn": "arn:aws:kms:us-east-1:" + pair[0] + ":key/11111111-1111-4111-8111-111111111111"},
		"destination": map[string]any{"account_id": pair[1], "region": "us-west-2", "bucket": fmt.Sprintf("dst-%d", n),
			"kms_key_arn": "arn:aws:kms:us-west-2:" + pair[1] + ":key/22222222-2222-4222-8222-222222222222"},
	}
}

func domainSpec(pair [2]string) provision.Spec {
	n := bucketSeq.Add(1)
	return provision.Spec{
		Source: provision.Side{AccountID: pair[0], Region: "us-east-1", Bucket: fmt.Sprintf("src-%d", n),
			KMSKeyARN: "arn:aws:kms:us-east-1:" + pair[0] + ":key/11111111-1111-4111-8111-111111111111"},
		Destination: provision.Side{AccountID: pair[1], Region: "us-west-2", Bucket: fmt.Sprintf("dst-%d", n),
			KMSKeyARN: "arn:aws:kms:us-west-2:" + pair[1] + ":key/22222222-2222-4222-8222-222222222222"},
		Rule: provision.Rule{StorageClass: provision.DefaultStorageClass}, Verify: true,
	}
}

// inState stores a request from pair[0] to pair[1] and moves it to state
// as callers and a worker would. Only one request of the store is ever
// runnable at a time (drain runs after each use), so the worker's claim
// takes this one.
func (e *authzEnv) inState(t *testing.T, pair [2]string, state provision.State) string {
	t.Helper()
	ctx := context.Background()
	r, _, err := e.st.Create(ctx, provision.NewReplication{Spec: domainSpec(pair), RequestedBy: "token:ops",
		NeedsApproval: state == provision.StateAwaitingApproval})
	if err != nil {
		t.Fatal(err)
	}
	switch state {
	case provision.StateAwaitingApproval, provision.StatePending:
	case provision.StateCancelled:
		_, err = e.st.Cancel(ctx, r.ID, "token:ops")
	case provision.StateFailed:
		var c provision.Claim
		c, _, err = e.st.Claim(ctx, "worker", time.Minute)
		if err == nil && c.Replication.ID != r.ID {
			t.Fatalf("claimed %s, not the new request %s", c.Replication.ID, r.ID)
		}
		if err == nil {
			err = e.st.Fail(ctx, &c, provision.Failure{Step: "inspect_destination", Permanent: true,
				Problem: []byte(`{"type":"urn:bucketbridge:problem:step-failed","title":"Step failed","status":422}`)})
		}
	default:
		t.Fatalf("inState cannot make %s", state)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r.ID
}

// drain runs every runnable request to its end, as a worker would, so
// that the next inState's claim takes the request it just made.
func (e *authzEnv) drain(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for {
		c, ok, err := e.st.Claim(ctx, "drain", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return
		}
		if err := e.st.Finish(ctx, &c, provision.ActionComplete, "done"); err != nil {
			t.Fatal(err)
		}
	}
}

// want reads "alice 200, bob 403, …" into caller → outcome.
func want(t *testing.T, s string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for part := range strings.SplitSeq(s, ",") {
		caller, outcome, ok := strings.Cut(strings.TrimSpace(part), " ")
		if !ok {
			t.Fatalf("bad expectation %q", part)
		}
		out[caller] = outcome
	}
	if len(out) != len(callers) {
		t.Fatalf("expectation %q does not name every caller", s)
	}
	return out
}

// withoutInstance is a problem body without its instance, which names the
// path and so the id.
func withoutInstance(t *testing.T, r response) map[string]any {
	t.Helper()
	m := r.json(t)
	delete(m, "instance")
	return m
}

// TestWhoMayDoWhatToWhichRequest is the authorization table: every caller
// of teamGrants, every route, requests between every pair of accounts.
// Outcomes are the HTTP status, with what the answer must say after the
// colon.
func TestWhoMayDoWhatToWhichRequest(t *testing.T) {
	t.Parallel()
	type route struct {
		name string
		// state is the state of the request the route acts on.
		state provision.State
		call  func(e *authzEnv, caller, id string) response
		// want, per pair of accounts as pairs lists them.
		want [3]string
	}
	get := func(suffix string, headers ...string) func(e *authzEnv, caller, id string) response {
		return func(e *authzEnv, caller, id string) response {
			return e.as(caller, "GET", "/v1/replications/"+id+suffix, nil, headers...)
		}
	}
	post := func(suffix string, body any) func(e *authzEnv, caller, id string) response {
		return func(e *authzEnv, caller, id string) response {
			return e.as(caller, "POST", "/v1/replications/"+id+suffix, body)
		}
	}
	const (
		seeAll  = "alice 200, bob 200, carol 200, dave 200, eve 404, ops 200"
		seeBoth = "alice 404, bob 200, carol 200, dave 404, eve 200, ops 200"
	)
	routes := []route{
		{"GET", provision.StateCancelled, get(""), [3]string{seeAll, seeAll, seeBoth}},
		{"GET steps", provision.StateCancelled, get("/steps"), [3]string{seeAll, seeAll, seeBoth}},
		{"GET events", provision.StateCancelled, get("/events"), [3]string{seeAll, seeAll, seeBoth}},
		{"GET events as server-sent events", provision.StateCancelled, get("/events", "Accept", "text/event-stream"),
			[3]string{seeAll, seeAll, seeBoth}},
		{"cancel", provision.StatePending, post("/cancel", nil), [3]string{
			"alice 200:cancelled, bob 403, carol 403, dave 200:cancelled, eve 404, ops 200:cancelled",
			"alice 403, bob 403, carol 403, dave 403, eve 404, ops 200:cancelled",
			"alice 404, bob 403, carol 403, dave 404, eve 200:cancelled, ops 200:cancelled",
		}},
		{"cancel while awaiting approval", provision.StateAwaitingApproval, post("/cancel", nil), [3]string{
			"alice 200:cancelled, bob 403, carol 403, dave 200:cancelled, eve 404, ops 200:cancelled",
			"alice 403, bob 403, carol 403, dave 403, eve 404, ops 200:cancelled",
			"alice 404, bob 403, carol 403, dave 404, eve 200:cancelled, ops 200:cancelled",
		}},
		{"retry", provision.StateFailed, post("/retry", nil), [3]string{
			"alice 202:running, bob 403, carol 403, dave 202:running, eve 404, ops 202:running",
			"alice 403, bob 403, carol 403, dave 403, eve 404, ops 202:running",
			"alice 404, bob 403, carol 403, dave 404, eve 202:running, ops 202:running",
		}},
		{"DELETE", provision.StateFailed, func(e *authzEnv, caller, id string) response {
			return e.as(caller, "DELETE", "/v1/replications/"+id, nil)
		}, [3]string{
			"alice 202:deprovisioning, bob 202:deprovisioning, carol 403, dave 202:deprovisioning, eve 404, ops 202:deprovisioning",
			"alice 403, bob 403, carol 403, dave 202:deprovisioning, eve 404, ops 202:deprovisioning",
			"alice 404, bob 202:deprovisioning, carol 403, dave 404, eve 202:deprovisioning, ops 202:deprovisioning",
		}},
		{"approve", provision.StateAwaitingApproval, post("/approve", nil), [3]string{
			"alice 403, bob 202:pending, carol 403, dave 403, eve 404, ops 202:pending",
			"alice 403, bob 403, carol 403, dave 202:pending, eve 404, ops 202:pending",
			"alice 404, bob 202:pending, carol 403, dave 404, eve 403, ops 202:pending",
		}},
		{"reject", provision.StateAwaitingApproval, post("/reject", map[string]any{"reason": "not into this account"}), [3]string{
			"alice 403, bob 200:rejected, carol 403, dave 403, eve 404, ops 200:rejected",
			"alice 403, bob 403, carol 403, dave 200:rejected, eve 404, ops 200:rejected",
			"alice 404, bob 200:rejected, carol 403, dave 404, eve 403, ops 200:rejected",
		}},
	}
	for _, rt := range routes {
		t.Run(rt.name, func(t *testing.T) {
			t.Parallel()
			e := newAuthzEnv(t, teamGrants)
			for i, pair := range pairs {
				wants := want(t, rt.want[i])
				for _, caller := range callers {
					id := e.inState(t, pair, rt.state)
					got := rt.call(e, caller, id)
					status, state, _ := strings.Cut(wants[caller], ":")
					where := fmt.Sprintf("%s on a request %s, as %s", rt.name, pairName(pair), caller)
					if fmt.Sprint(got.status) != status {
						t.Errorf("%s = %d, want %s: %s", where, got.status, status, got.body)
					}
					switch {
					case state != "":
						if s := got.json(t)["state"]; s != state {
							t.Errorf("%s left it %v, want %s", where, s, state)
						}
					case got.status == http.StatusForbidden:
						if p := got.json(t); p["type"] != "urn:bucketbridge:problem:forbidden" || len(p["needs"].([]any)) == 0 {
							t.Errorf("%s: 403 without the roles that would allow it: %s", where, got.body)
						}
					case got.status == http.StatusNotFound:
						// Exactly what a request that does not exist answers.
						unknown := rt.call(e, caller, "0190a4c6-0000-7000-8000-000000000000")
						if diff := cmp.Diff(withoutInstance(t, unknown), withoutInstance(t, got)); diff != "" {
							t.Errorf("%s: the 404 differs from an unknown id's (-unknown +got):\n%s", where, diff)
						}
					}
					e.drain(t)
				}
			}
		})
	}

	t.Run("create and dry run", func(t *testing.T) {
		t.Parallel()
		e := newAuthzEnv(t, teamGrants)
		wants := [3]string{
			"alice 202:awaiting_approval, bob 403, carol 403, dave 202:awaiting_approval, eve 403, ops 202:pending",
			"alice 403, bob 403, carol 403, dave 403, eve 403, ops 202:pending",
			"alice 403, bob 403, carol 403, dave 403, eve 202:awaiting_approval, ops 202:pending",
		}
		for i, pair := range pairs {
			w := want(t, wants[i])
			for _, caller := range callers {
				status, state, _ := strings.Cut(w[caller], ":")
				where := fmt.Sprintf("create %s as %s", pairName(pair), caller)
				dry := pairSpec(pair)
				dry["dry_run"] = true
				plan := e.as(caller, "POST", "/v1/replications", dry)
				got := e.as(caller, "POST", "/v1/replications", pairSpec(pair))
				if fmt.Sprint(got.status) != status {
					t.Errorf("%s = %d, want %s: %s", where, got.status, status, got.body)
				}
				if status == "403" {
					if plan.status != http.StatusForbidden {
						t.Errorf("dry run of a %s = %d, want 403 as for the request itself", where, plan.status)
					}
					continue
				}
				if s := got.json(t)["state"]; s != state {
					t.Errorf("%s: state %v, want %s", where, s, state)
				}
				if plan.status != http.StatusOK || plan.json(t)["needs_approval"] != (state == "awaiting_approval") {
					t.Errorf("dry run of a %s = %d, needs_approval %v; want 200, %v", where, plan.status,
						plan.json(t)["needs_approval"], state == "awaiting_approval")
				}
			}
		}
		e.drain(t)
	})

	t.Run("list", func(t *testing.T) {
		t.Parallel()
		e := newAuthzEnv(t, teamGrants)
		ids := map[string]string{}
		for _, pair := range pairs {
			ids[e.inState(t, pair, provision.StateAwaitingApproval)] = pairName(pair)
		}
		for caller, visible := range map[string][]string{
			"alice": {"111→222", "222→111"},
			"bob":   {"111→222", "222→111", "333→222"},
			"carol": {"111→222", "222→111", "333→222"},
			"dave":  {"111→222", "222→111"},
			"eve":   {"333→222"},
			"ops":   {"111→222", "222→111", "333→222"},
		} {
			var got []string
			// One at a time, so the pages and their cursors are
			// checked too.
			path := "/v1/replications?limit=1"
			for path != "" {
				r := e.as(caller, "GET", path, nil)
				if r.status != http.StatusOK {
					t.Fatalf("list as %s = %d %s", caller, r.status, r.body)
				}
				body := r.json(t)
				for _, it := range body["items"].([]any) {
					got = append(got, ids[it.(map[string]any)["id"].(string)])
				}
				path = ""
				if next, ok := body["next_cursor"].(string); ok {
					path = "/v1/replications?limit=1&cursor=" + next
				}
			}
			slices.Sort(got)
			if diff := cmp.Diff(visible, got); diff != "" {
				t.Errorf("%s lists (-want +got):\n%s", caller, diff)
			}
			// Asking for an account they have no role on lists nothing
			// rather than failing, as for an account with no requests.
			if r := e.as(caller, "GET", "/v1/replications?account_id=333333333333", nil); caller == "alice" &&
				(r.status != http.StatusOK || len(r.json(t)["items"].([]any)) != 0) {
				t.Errorf("alice lists account 333333333333: %d %s", r.status, r.body)
			}
		}
	})

	t.Run("409", func(t *testing.T) {
		t.Parallel()
		e := newAuthzEnv(t, teamGrants)
		live := pairSpec([2]string{"333333333333", "222222222222"})
		first := e.as("ops", "POST", "/v1/replications", live)
		if first.status != http.StatusAccepted {
			t.Fatalf("create = %d %s", first.status, first.body)
		}
		existing := "/v1/replications/" + first.json(t)["id"].(string)
		// The same buckets, the source said to be in another account.
		elsewhere := pairSpec([2]string{"111111111111", "222222222222"})
		elsewhere["source"].(map[string]any)["bucket"] = live["source"].(map[string]any)["bucket"]
		elsewhere["destination"].(map[string]any)["bucket"] = live["destination"].(map[string]any)["bucket"]
		for _, tc := range []struct {
			body map[string]any
			want string
		}{
			{live, "alice 403, bob 403, carol 403, dave 403, eve 409:existing, ops 409:existing"},
			{elsewhere, "alice 409, bob 403, carol 403, dave 409, eve 403, ops 409:existing"},
		} {
			w := want(t, tc.want)
			for _, caller := range callers {
				got := e.as(caller, "POST", "/v1/replications", tc.body)
				status, shows, _ := strings.Cut(w[caller], ":")
				if fmt.Sprint(got.status) != status {
					t.Errorf("%s's second request = %d, want %s: %s", caller, got.status, status, got.body)
					continue
				}
				if status != "409" {
					continue
				}
				if ex, ok := got.json(t)["existing"]; (shows == "existing") != ok || ok && ex != existing {
					t.Errorf("%s's 409 has existing %v, want it only when they may see %s", caller, ex, existing)
				}
				if strings.Contains(string(got.body), strings.TrimPrefix(existing, "/v1/replications/")) != (shows == "existing") {
					t.Errorf("%s's 409 names the live request though they may not see it: %s", caller, got.body)
				}
			}
		}
	})

	t.Run("idempotent replay", func(t *testing.T) {
		t.Parallel()
		e := newAuthzEnv(t, teamGrants)
		bodies := map[string]map[string]any{
			"alice": pairSpec(pairs[0]), "dave": pairSpec(pairs[0]), "eve": pairSpec(pairs[2]), "ops": pairSpec(pairs[1]),
		}
		first := map[string]response{}
		for caller, body := range bodies {
			first[caller] = e.as(caller, "POST", "/v1/replications", body, "Idempotency-Key", "OPS-7")
			if first[caller].status != http.StatusAccepted {
				t.Fatalf("%s's create = %d %s", caller, first[caller].status, first[caller].body)
			}
		}
		// Alice and eve lose every role; dave keeps only reading the
		// destination of what he asked for.
		e.regrant(t, `grants:
  - {who: ["token:dave"], accounts: ["222222222222"], role: reader}
  - {who: ["token:ops"],  accounts: ["*"],            role: admin}
`)
		for caller, want := range map[string]int{"alice": 404, "dave": 202, "eve": 404, "ops": 202} {
			got := e.as(caller, "POST", "/v1/replications", bodies[caller], "Idempotency-Key", "OPS-7")
			if got.status != want {
				t.Errorf("%s's replay = %d, want %d: %s", caller, got.status, want, got.body)
				continue
			}
			if want == 202 && (got.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(got.body, first[caller].body)) {
				t.Errorf("%s's replay is not the first answer: %s", caller, got.body)
			}
		}
		// A key never used is a new request, which bob may not make.
		if got := e.as("bob", "POST", "/v1/replications", pairSpec(pairs[0]), "Idempotency-Key", "OPS-7"); got.status != http.StatusForbidden {
			t.Errorf("bob's first use of a key = %d, want 403", got.status)
		}
		// Dave may no longer create: another body under his key is refused
		// as a request he may not make, not as a reused key.
		if got := e.as("dave", "POST", "/v1/replications", pairSpec(pairs[0]), "Idempotency-Key", "OPS-7"); got.status != http.StatusForbidden {
			t.Errorf("dave's reuse of his key with another body = %d, want 403", got.status)
		}
	})
}

// Approval belongs to the destination's approvers: a requester who is not
// one cannot approve their own request, nor can a reader of the
// destination; the approver's consent is recorded with their name.
func TestOnlyAnApproverOfTheDestinationMayApprove(t *testing.T) {
	t.Parallel()
	e := newAuthzEnv(t, teamGrants)
	created := e.as("alice", "POST", "/v1/replications", pairSpec(pairs[0]))
	if created.status != http.StatusAccepted || created.json(t)["state"] != "awaiting_approval" {
		t.Fatalf("alice's request = %d %s", created.status, created.body)
	}
	for field := range map[string]bool{"approved_by": true, "approved_at": true, "rejected_by": true, "rejected_at": true, "rejection_reason": true} {
		if v, ok := created.json(t)[field]; !ok || v != nil {
			t.Errorf("%s of a request awaiting approval = %v, %v; want null", field, v, ok)
		}
	}
	id := created.json(t)["id"].(string)
	path := "/v1/replications/" + id
	for _, caller := range []string{"alice", "carol"} {
		r := e.as(caller, "POST", path+"/approve", nil)
		p := r.json(t)
		if r.status != http.StatusForbidden || !strings.Contains(p["detail"].(string), "approve needs role approver on account 222222222222") {
			t.Errorf("%s approving = %d %s", caller, r.status, r.body)
		}
		if diff := cmp.Diff([]any{map[string]any{"role": "approver", "account": "222222222222"}}, p["needs"]); diff != "" {
			t.Errorf("%s approving: needs (-want +got):\n%s", caller, diff)
		}
	}
	approved := e.as("bob", "POST", path+"/approve", nil)
	body := approved.json(t)
	if approved.status != http.StatusAccepted || body["state"] != "pending" || body["approved_by"] != "token:bob" || body["approved_at"] == nil {
		t.Fatalf("bob's approval = %d %s", approved.status, approved.body)
	}
	if again := e.as("bob", "POST", path+"/approve", nil); again.status != http.StatusConflict {
		t.Errorf("approving twice = %d, want 409", again.status)
	}
	events := e.as("alice", "GET", path+"/events", nil).json(t)["items"].([]any)
	last := events[len(events)-1].(map[string]any)
	if last["state"] != "pending" || last["actor"] != "token:bob" || last["message"] != "approved by token:bob" {
		t.Errorf("approval event = %v", last)
	}
	if r := e.as("ops", "POST", "/v1/replications", pairSpec(pairs[0])); r.json(t)["approved_by"] != "token:ops" {
		t.Errorf("a request by an admin of both accounts is approved by %v, want its requester", r.json(t)["approved_by"])
	}
}

func TestRejectingNeedsAReason(t *testing.T) {
	t.Parallel()
	e := newAuthzEnv(t, teamGrants)
	id := e.inState(t, pairs[0], provision.StateAwaitingApproval)
	path := "/v1/replications/" + id + "/reject"
	for name, tc := range map[string]struct {
		body    any
		headers []string
		status  int
		field   string
	}{
		"no body":           {nil, nil, http.StatusUnsupportedMediaType, ""},
		"empty object":      {map[string]any{}, nil, http.StatusBadRequest, "reason"},
		"blank reason":      {map[string]any{"reason": " \t "}, nil, http.StatusBadRequest, "reason"},
		"control character": {map[string]any{"reason": "no\u0007"}, nil, http.StatusBadRequest, "reason"},
		"too long":          {map[string]any{"reason": strings.Repeat("é", 1001)}, nil, http.StatusBadRequest, "reason"},
		"not a string":      {map[string]any{"reason": 7}, nil, http.StatusBadRequest, "reason"},
		"unknown field":     {map[string]any{"reason": "x", "why": "y"}, nil, http.StatusBadRequest, "why"},
		"not JSON":          {"reason=x", []string{"Content-Type", "text/plain"}, http.StatusUnsupportedMediaType, ""},
		"malformed":         {`{"reason": `, nil, http.StatusBadRequest, ""},
	} {
		r := e.as("bob", "POST", path, tc.body, tc.headers...)
		if r.status != tc.status {
			t.Errorf("%s: %d, want %d: %s", name, r.status, tc.status, r.body)
			continue
		}
		if tc.field != "" && !slices.Equal(fieldsOf(t, r), []string{tc.field}) {
			t.Errorf("%s: %s, want a problem naming %s", name, r.body, tc.field)
		}
	}
	reason := strings.Repeat("é", 1000)
	r := e.as("bob", "POST", path, map[string]any{"reason": reason})
	body := r.json(t)
	if r.status != http.StatusOK || body["state"] != "rejected" || body["rejected_by"] != "token:bob" ||
		body["rejection_reason"] != reason || body["rejected_at"] == nil || body["finished_at"] == nil || body["approved_by"] != nil {
		t.Fatalf("rejection = %d %s", r.status, r.body)
	}
	// Rejected is final: nothing was written, so nothing is removed either.
	for _, c := range []struct{ method, suffix string }{{"DELETE", ""}, {"POST", "/approve"}, {"POST", "/retry"}, {"POST", "/cancel"}} {
		if got := e.as("ops", c.method, "/v1/replications/"+id+c.suffix, nil); got.status != http.StatusConflict {
			t.Errorf("%s%s of a rejected request = %d, want 409", c.method, c.suffix, got.status)
		}
	}
}

// Every denial is logged with who, what, which account would have allowed
// it and which request, and counted; allowed actions are counted too.
func TestDenialsAreLoggedAndDecisionsCounted(t *testing.T) {
	t.Parallel()
	e := newAuthzEnv(t, teamGrants)
	id := e.inState(t, pairs[0], provision.StateAwaitingApproval)
	e.as("alice", "POST", "/v1/replications/"+id+"/approve", nil)
	e.as("eve", "GET", "/v1/replications/"+id, nil)
	e.as("bob", "POST", "/v1/replications", pairSpec(pairs[0]))
	e.as("bob", "POST", "/v1/replications/"+id+"/approve", nil)
	e.as("carol", "GET", "/v1/replications/"+id, nil)

	var denials []map[string]any
	for line := range strings.SplitSeq(e.log.String(), "\n") {
		if strings.Contains(line, `msg="authorization denied"`) {
			denials = append(denials, logfmt(line))
		}
	}
	wantDenials := []map[string]any{
		{"caller": "token:alice", "action": "approve", "account": "222222222222", "replication_id": id},
		{"caller": "token:eve", "action": "read", "account": "111111111111 or 222222222222", "replication_id": id},
		{"caller": "token:bob", "action": "create", "account": "111111111111", "replication_id": ""},
	}
	if len(denials) != len(wantDenials) {
		t.Fatalf("%d denials logged, want %d:\n%s", len(denials), len(wantDenials), e.log)
	}
	for i, w := range wantDenials {
		for k, v := range w {
			if denials[i][k] != v {
				t.Errorf("denial %d: %s = %q, want %q (%v)", i, k, denials[i][k], v, denials[i])
			}
		}
		if denials[i]["request_id"] == "" {
			t.Errorf("denial %d names no request id: %v", i, denials[i])
		}
	}
	metrics := e.do("GET", "/metrics", nil, "Authorization", "").body
	for _, line := range []string{
		`bucketbridge_authz_decisions_total{action="approve",decision="allow"} 1`,
		`bucketbridge_authz_decisions_total{action="approve",decision="deny"} 1`,
		`bucketbridge_authz_decisions_total{action="create",decision="deny"} 1`,
		`bucketbridge_authz_decisions_total{action="read",decision="allow"} 1`,
		`bucketbridge_authz_decisions_total{action="read",decision="deny"} 1`,
	} {
		if !bytes.Contains(metrics, []byte(line)) {
			t.Errorf("metrics lack %s", line)
		}
	}
}

// logfmt reads the key=value pairs of one slog text line.
func logfmt(line string) map[string]any {
	out := map[string]any{}
	for len(line) > 0 {
		key, rest, ok := strings.Cut(line, "=")
		if !ok {
			break
		}
		var val string
		if strings.HasPrefix(rest, `"`) {
			end := 1
			for end < len(rest) && (rest[end] != '"' || rest[end-1] == '\\') {
				end++
			}
			json.Unmarshal([]byte(rest[:end+1]), &val) //nolint:errcheck // slog quotes as Go does
			rest = rest[min(end+1, len(rest)):]
		} else {
			val, rest, _ = strings.Cut(rest, " ")
		}
		out[key] = val
		line = strings.TrimLeft(rest, " ")
	}
	return out
}
