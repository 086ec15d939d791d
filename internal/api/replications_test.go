package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

const (
	keyA = "arn:aws:kms:us-east-1:111111111111:key/11111111-1111-4111-8111-111111111111"
	keyB = "arn:aws:kms:us-west-2:222222222222:key/22222222-2222-4222-8222-222222222222"
)

// request returns a valid request body replicating src into demo-destination.
func request(src string) map[string]any {
	return map[string]any{
		"source": map[string]any{"account_id": "111111111111", "region": "us-east-1",
			"bucket": src, "kms_key_arn": keyA},
		"destination": map[string]any{"account_id": "222222222222", "region": "us-west-2",
			"bucket": "demo-destination", "kms_key_arn": keyB},
		"rule":   map[string]any{"prefix": "reports/"},
		"ticket": "OPS-1",
	}
}

func fieldsOf(t *testing.T, r response) []string {
	t.Helper()
	var fields []string
	errs, _ := r.json(t)["errors"].([]any)
	for _, e := range errs {
		fields = append(fields, e.(map[string]any)["field"].(string))
	}
	slices.Sort(fields)
	return fields
}

func TestCreateReadRoundTrip(t *testing.T) {
	t.Parallel()
	f := setup(t)
	r := f.do("POST", "/v1/replications", request("demo-source"))
	if r.status != http.StatusAccepted {
		t.Fatalf("create = %d %s", r.status, r.body)
	}
	created := r.json(t)
	id := created["id"].(string)
	if got := r.header.Get("Location"); got != "/v1/replications/"+id {
		t.Errorf("Location = %q", got)
	}
	for field, want := range map[string]any{"state": "pending", "cloud": "fake", "verify": true,
		"enable_versioning": false, "set_source_default_encryption": false, "warnings": []any{},
		"ticket": "OPS-1", "attempt": 0.0, "last_error": nil, "finished_at": nil} {
		if diff := cmp.Diff(want, created[field]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", field, diff)
		}
	}
	if diff := cmp.Diff(map[string]any{"prefix": "reports/", "delete_marker_replication": false,
		"replica_modifications": false, "storage_class": "STANDARD", "replication_time_control": false}, created["rule"]); diff != "" {
		t.Errorf("rule defaults (-want +got):\n%s", diff)
	}
	if links := created["links"].(map[string]any); links["steps"] != "/v1/replications/"+id+"/steps" {
		t.Errorf("links = %v", links)
	}
	got := f.do("GET", "/v1/replications/"+id, nil)
	if got.status != http.StatusOK {
		t.Fatalf("get = %d", got.status)
	}
	if diff := cmp.Diff(created, got.json(t)); diff != "" {
		t.Errorf("GET differs from POST (-want +got):\n%s", diff)
	}
	steps := f.do("GET", "/v1/replications/"+id+"/steps", nil)
	if steps.status != http.StatusOK || !strings.Contains(string(steps.body), `"items": []`) {
		t.Errorf("steps of a pending request = %d %s", steps.status, steps.body)
	}
	events := f.do("GET", "/v1/replications/"+id+"/events", nil)
	items := events.json(t)["items"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["state"] != "pending" {
		t.Errorf("events = %s", events.body)
	}
	last := int(items[0].(map[string]any)["id"].(float64))
	after := f.do("GET", fmt.Sprintf("/v1/replications/%s/events?after=%d", id, last), nil)
	if n := len(after.json(t)["items"].([]any)); n != 0 {
		t.Errorf("events after the last = %d items", n)
	}
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	f := setup(t)
	mutate := func(fn func(b map[string]any)) map[string]any {
		b := request("demo-source")
		fn(b)
		return b
	}
	side := func(b map[string]any, name string) map[string]any { return b[name].(map[string]any) }
	for _, tc := range []struct {
		name   string
		body   map[string]any
		fields []string
	}{
		{"every field of a side at once", mutate(func(b map[string]any) {
			b["source"] = map[string]any{"account_id": "1234", "region": "mars-1", "bucket": "Bad_Bucket", "kms_key_arn": "alias/x"}
		}), []string{"source.account_id", "source.bucket", "source.kms_key_arn", "source.region"}},
		{"missing destination", mutate(func(b map[string]any) { delete(b, "destination") }),
			[]string{"destination.account_id", "destination.bucket", "destination.kms_key_arn", "destination.region"}},
		{"key in another region", mutate(func(b map[string]any) {
			side(b, "source")["kms_key_arn"] = "arn:aws:kms:eu-west-1:111111111111:key/11111111-1111-4111-8111-111111111111"
		}), []string{"source.kms_key_arn"}},
		{"key of another account", mutate(func(b map[string]any) { side(b, "destination")["kms_key_arn"] = keyA }),
			[]string{"destination.kms_key_arn"}},
		{"same bucket twice", mutate(func(b map[string]any) { side(b, "destination")["bucket"] = "demo-source" }),
			[]string{"destination.bucket"}},
		{"IP-shaped bucket", mutate(func(b map[string]any) { side(b, "source")["bucket"] = "192.168.1.1" }),
			[]string{"source.bucket"}},
		{"storage class", mutate(func(b map[string]any) { b["rule"] = map[string]any{"storage_class": "FAST"} }),
			[]string{"rule.storage_class"}},
		{"plain http callback", mutate(func(b map[string]any) { b["callback_url"] = "http://hooks.example.com/x" }),
			[]string{"callback_url"}},
		{"metadata callback", mutate(func(b map[string]any) { b["callback_url"] = "https://169.254.169.254/latest" }),
			[]string{"callback_url"}},
		{"decimal IP callback", mutate(func(b map[string]any) { b["callback_url"] = "https://2852039166/" }),
			[]string{"callback_url"}},
		{"wrong type names its field", mutate(func(b map[string]any) { side(b, "source")["account_id"] = 111111111111 }),
			[]string{"source.account_id"}},
		{"unknown field names it", mutate(func(b map[string]any) { b["colour"] = "blue" }), []string{"colour"}},
		{"wildcard in prefix", mutate(func(b map[string]any) { b["rule"] = map[string]any{"prefix": "logs/*"} }),
			[]string{"rule.prefix"}},
		{"prefix leaving no room for the canary", mutate(func(b map[string]any) {
			b["rule"] = map[string]any{"prefix": strings.Repeat("p", 1000)}
		}), []string{"rule.prefix"}},
		{"NUL in ticket", mutate(func(b map[string]any) { b["ticket"] = "OPS\u0000-1" }), []string{"ticket"}},
		{"ticket over 256 characters", mutate(func(b map[string]any) { b["ticket"] = strings.Repeat("é", 257) }), []string{"ticket"}},
		{"next line in callback", mutate(func(b map[string]any) { b["callback_url"] = "https://hooks.example.com/\u0085x" }),
			[]string{"callback_url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do("POST", "/v1/replications", tc.body)
			if r.status != http.StatusBadRequest || r.header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("status %d, content type %q: %s", r.status, r.header.Get("Content-Type"), r.body)
			}
			if diff := cmp.Diff(tc.fields, fieldsOf(t, r)); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTicketLimitCountsCharacters(t *testing.T) {
	t.Parallel()
	f := setup(t)
	b := request("demo-source")
	b["ticket"] = strings.Repeat("é", 256) // 512 bytes
	if r := f.do("POST", "/v1/replications", b); r.status != http.StatusAccepted {
		t.Errorf("a ticket of 256 two-byte characters = %d %s, want 202", r.status, r.body)
	}
}

func TestCreateRejectsBadBodies(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, tc := range []struct {
		name    string
		body    string
		headers []string
		status  int
	}{
		{"malformed JSON", `{"source": `, nil, http.StatusBadRequest},
		{"not an object", `[1, 2]`, nil, http.StatusBadRequest},
		{"two objects", `{} {}`, nil, http.StatusBadRequest},
		{"empty", ``, nil, http.StatusBadRequest},
		{"over 1 MiB", `{"ticket": "` + strings.Repeat("x", 1<<20) + `"}`, nil, http.StatusRequestEntityTooLarge},
		{"form content type", `a=b`, []string{"Content-Type", "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"no content type", `{}`, []string{"Content-Type", ""}, http.StatusUnsupportedMediaType},
		{"bad idempotency key", `{}`, []string{"Idempotency-Key", "has spaces in it"}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if tc.name == "bad idempotency key" {
				b := request("demo-source")
				r := f.do("POST", "/v1/replications", b, tc.headers...)
				if r.status != tc.status {
					t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
				}
				return
			}
			r := f.do("POST", "/v1/replications", body, tc.headers...)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if p := r.json(t); p["status"] != float64(tc.status) || p["title"] == "" {
				t.Errorf("problem = %s", r.body)
			}
		})
	}
}

func TestDuplicateLiveRouteLinksTheExistingRequest(t *testing.T) {
	t.Parallel()
	f := setup(t)
	first := f.do("POST", "/v1/replications", request("demo-source")).json(t)
	r := f.do("POST", "/v1/replications", request("demo-source"))
	if r.status != http.StatusConflict {
		t.Fatalf("second create = %d %s", r.status, r.body)
	}
	if got, want := r.json(t)["existing"], "/v1/replications/"+first["id"].(string); got != want {
		t.Errorf("existing = %v, want %v", got, want)
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := setup(t)
	first := f.do("POST", "/v1/replications", request("demo-source"), "Idempotency-Key", "OPS-1-created")
	again := f.do("POST", "/v1/replications", request("demo-source"), "Idempotency-Key", "OPS-1-created")
	if first.status != http.StatusAccepted || again.status != http.StatusAccepted {
		t.Fatalf("statuses %d, %d", first.status, again.status)
	}
	if diff := cmp.Diff(string(first.body), string(again.body)); diff != "" {
		t.Errorf("replayed body differs (-first +again):\n%s", diff)
	}
	if again.header.Get("Idempotent-Replayed") != "true" || first.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("Idempotent-Replayed: first %q, again %q", first.header.Get("Idempotent-Replayed"), again.header.Get("Idempotent-Replayed"))
	}
	// The replay is the first answer even after the request moved on.
	id := first.json(t)["id"].(string)
	if c := f.do("POST", "/v1/replications/"+id+"/cancel", nil); c.status != http.StatusOK {
		t.Fatalf("cancel = %d", c.status)
	}
	late := f.do("POST", "/v1/replications", request("demo-source"), "Idempotency-Key", "OPS-1-created")
	if late.status != http.StatusAccepted || string(late.body) != string(first.body) {
		t.Errorf("late replay = %d %s", late.status, late.body)
	}
	other := f.do("POST", "/v1/replications", request("other-source"), "Idempotency-Key", "OPS-1-created")
	if other.status != http.StatusUnprocessableEntity {
		t.Errorf("same key, other body = %d %s", other.status, other.body)
	}
}

// TestSetSourceDefaultEncryptionIsPartOfTheRequest: the option is stored
// and shown, and a retry that drops it is another request for its
// Idempotency-Key.
func TestSetSourceDefaultEncryptionIsPartOfTheRequest(t *testing.T) {
	t.Parallel()
	f := setup(t)
	b := request("demo-source-sse-s3")
	b["set_source_default_encryption"] = true
	r := f.do("POST", "/v1/replications", b, "Idempotency-Key", "OPS-2")
	if r.status != http.StatusAccepted {
		t.Fatalf("create = %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	got := f.do("GET", "/v1/replications/"+id, nil).json(t)
	if got["set_source_default_encryption"] != true {
		t.Errorf("set_source_default_encryption = %v, want true", got["set_source_default_encryption"])
	}
	delete(b, "set_source_default_encryption")
	if again := f.do("POST", "/v1/replications", b, "Idempotency-Key", "OPS-2"); again.status != http.StatusUnprocessableEntity {
		t.Errorf("the same key without the option = %d %s, want 422", again.status, again.body)
	}
}

func TestConcurrentIdenticalPostsCreateOneRow(t *testing.T) {
	t.Parallel()
	f := setup(t)
	const n = 10
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = map[string]int{}
	)
	for range n {
		wg.Go(func() {
			r := f.do("POST", "/v1/replications", request("demo-source"), "Idempotency-Key", "webhook-42")
			mu.Lock()
			defer mu.Unlock()
			ids[fmt.Sprint(r.status, " ", r.json(t)["id"])]++
		})
	}
	wg.Wait()
	if len(ids) != 1 {
		t.Fatalf("answers: %v, want %d identical 202s", ids, n)
	}
	list := f.do("GET", "/v1/replications", nil).json(t)
	if items := list["items"].([]any); len(items) != 1 {
		t.Fatalf("%d rows, want 1", len(items))
	}
}

func TestListPagesAndFilters(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var want []string
	for i := range 7 {
		b := request(fmt.Sprintf("source-%d", i))
		if i%2 == 0 {
			b["ticket"] = "OPS-even"
		}
		want = append(want, f.do("POST", "/v1/replications", b).json(t)["id"].(string))
	}
	slices.Reverse(want) // newest first
	var got []string
	path := "/v1/replications?limit=3"
	for path != "" {
		page := f.do("GET", path, nil)
		if page.status != http.StatusOK {
			t.Fatalf("GET %s = %d %s", path, page.status, page.body)
		}
		body := page.json(t)
		for _, it := range body["items"].([]any) {
			got = append(got, it.(map[string]any)["id"].(string))
		}
		path = ""
		if next, ok := body["next_cursor"].(string); ok {
			path = "/v1/replications?limit=3&cursor=" + next
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paged ids (-want +got):\n%s", diff)
	}
	for query, n := range map[string]int{
		"ticket=OPS-even": 4, "state=pending": 7, "state=failed": 0,
		"account_id=111111111111": 7, "account_id=999999999999": 0,
	} {
		items := f.do("GET", "/v1/replications?"+query, nil).json(t)["items"].([]any)
		if len(items) != n {
			t.Errorf("%s: %d items, want %d", query, len(items), n)
		}
	}
	for query, field := range map[string]string{
		"state=bogus": "state", "limit=0": "limit", "limit=201": "limit", "limit=x": "limit",
		"account_id=12": "account_id", "cursor=garbage": "cursor", "ticket=%00": "ticket",
	} {
		r := f.do("GET", "/v1/replications?"+query, nil)
		if r.status != http.StatusBadRequest || !slices.Equal(fieldsOf(t, r), []string{field}) {
			t.Errorf("%s = %d %s, want 400 naming %s", query, r.status, r.body, field)
		}
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	f := setup(t)
	id := f.do("POST", "/v1/replications", request("demo-source")).json(t)["id"].(string)
	r := f.do("POST", "/v1/replications/"+id+"/cancel", nil)
	if r.status != http.StatusOK {
		t.Fatalf("cancel = %d %s", r.status, r.body)
	}
	if body := r.json(t); body["state"] != "cancelled" || body["finished_at"] == nil {
		t.Errorf("cancelled = %s", r.body)
	}
	if again := f.do("POST", "/v1/replications/"+id+"/cancel", nil); again.status != http.StatusConflict {
		t.Errorf("cancel a cancelled request = %d, want 409", again.status)
	}
	// The route is free once the request is cancelled.
	if r := f.do("POST", "/v1/replications", request("demo-source")); r.status != http.StatusAccepted {
		t.Errorf("create after cancel = %d", r.status)
	}
}

func TestUnknownIDs(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, path := range []string{
		"/v1/replications/0190a4c6-0000-7000-8000-000000000000",
		"/v1/replications/not-a-uuid",
		"/v1/replications/0190a4c6-0000-7000-8000-000000000000/steps",
		"/v1/replications/0190a4c6-0000-7000-8000-000000000000/events",
	} {
		if r := f.do("GET", path, nil); r.status != http.StatusNotFound {
			t.Errorf("GET %s = %d", path, r.status)
		}
	}
	if r := f.do("POST", "/v1/replications/0190a4c6-0000-7000-8000-000000000000/cancel", nil); r.status != http.StatusNotFound {
		t.Errorf("cancel unknown = %d", r.status)
	}
	if r := f.do("GET", "/v1/replications/0190a4c6-0000-7000-8000-000000000000/events?after=-1", nil); r.status != http.StatusBadRequest {
		t.Errorf("events?after=-1 = %d", r.status)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, path := range []string{"/livez", "/healthz", "/readyz"} {
		if r := f.do("GET", path, nil); r.status != http.StatusOK {
			t.Errorf("GET %s = %d %s", path, r.status, r.body)
		}
	}
}

func TestReadyzFailsWhileMigrationsArePending(t *testing.T) {
	t.Parallel()
	st, err := store.Open(context.Background(), storetest.NewDatabase(t), storetest.MaxConns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	f := newFixture(t, st)
	if r := f.do("GET", "/readyz", nil); r.status != http.StatusServiceUnavailable {
		t.Errorf("readyz on an unmigrated database = %d", r.status)
	}
	if r := f.do("GET", "/livez", nil); r.status != http.StatusOK {
		t.Errorf("livez = %d", r.status)
	}
}

func TestReadyzFailsWhileTheDatabaseIsUnreachable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, unreachableStore{})
	if r := f.do("GET", "/readyz", nil); r.status != http.StatusServiceUnavailable {
		t.Errorf("readyz = %d", r.status)
	}
}

func TestStoreFailureIsAnOpaque500(t *testing.T) {
	t.Parallel()
	f := newFixture(t, unreachableStore{})
	r := f.do("GET", "/v1/replications", nil)
	if r.status != http.StatusInternalServerError {
		t.Fatalf("status %d", r.status)
	}
	body := r.json(t)
	if strings.Contains(string(r.body), "connection refused") || body["request_id"] == "" {
		t.Errorf("500 body leaks the cause or lacks a request id: %s", r.body)
	}
}

// unreachableStore answers like a store whose database is down.
type unreachableStore struct{}

var errDown = errors.New("dial tcp 127.0.0.1:1: connection refused")

func (unreachableStore) Create(context.Context, provision.NewReplication) (provision.Replication, *provision.Response, error) {
	return provision.Replication{}, nil, errDown
}
func (unreachableStore) Get(context.Context, string) (provision.Replication, error) {
	return provision.Replication{}, errDown
}
func (unreachableStore) List(context.Context, provision.Filter) (provision.Page, error) {
	return provision.Page{}, errDown
}
func (unreachableStore) Cancel(context.Context, string, string) (provision.Replication, error) {
	return provision.Replication{}, errDown
}
func (unreachableStore) Retry(context.Context, string, string) (provision.Replication, error) {
	return provision.Replication{}, errDown
}
func (unreachableStore) Deprovision(context.Context, string, string) (provision.Replication, error) {
	return provision.Replication{}, errDown
}
func (unreachableStore) Approve(context.Context, string, string) (provision.Replication, error) {
	return provision.Replication{}, errDown
}
func (unreachableStore) Reject(context.Context, string, string, string) (provision.Replication, error) {
	return provision.Replication{}, errDown
}
func (unreachableStore) Replay(context.Context, string, string, []byte) (*provision.Response, error) {
	return nil, errDown
}
func (unreachableStore) Steps(context.Context, string) ([]provision.Step, error) { return nil, errDown }
func (unreachableStore) Events(context.Context, string, int64) ([]provision.Event, error) {
	return nil, errDown
}
func (unreachableStore) Ready(context.Context) error { return errDown }
func (unreachableStore) EventsWake(context.Context, string) <-chan struct{} {
	return make(chan struct{})
}
