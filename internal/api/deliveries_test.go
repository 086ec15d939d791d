package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/go-cmp/cmp"

	"github.com/bucketbridge/bucketbridge"
	"github.com/bucketbridge/bucketbridge/internal/api"
	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

func (unreachableStore) Deliveries(context.Context, string) ([]webhook.Delivery, error) {
	return nil, errDown
}
func (unreachableStore) Redeliver(context.Context, string, string) (webhook.Delivery, error) {
	return webhook.Delivery{}, errDown
}

// fixtureWith serves the real router built from cfg (its store, tokens and
// logger filled in) over st; every response is validated against
// openapi.yaml.
func fixtureWith(t *testing.T, st api.Store, cfg api.Config) *fixture {
	t.Helper()
	cfg.Store, cfg.Cloud, cfg.OpenAPI = st, "fake", bucketbridge.OpenAPI
	cfg.Authenticator, cfg.Grants = staticTokens(t), authz.Fixed(authz.AllowAll())
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, api: a}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serveAndValidate))
	t.Cleanup(f.srv.Close)
	return f
}

// callbackFixture is an API whose store queues callbacks rendered by the
// API itself, as cmd/server wires them.
func callbackFixture(t *testing.T) (*fixture, *store.Store) {
	t.Helper()
	st := storetest.New(t)
	f := fixtureWith(t, st, api.Config{})
	st.QueueCallbacks(f.api.Render)
	return f, st
}

// delivery is a delivery as the API shows it.
type delivery struct {
	ID            string  `json:"id"`
	Seq           int     `json:"seq"`
	Type          string  `json:"type"`
	URL           string  `json:"url"`
	Status        string  `json:"status"`
	NextAttemptAt *string `json:"next_attempt_at"`
	DeliveredAt   *string `json:"delivered_at"`
	Attempts      []struct {
		StatusCode *int     `json:"status_code"`
		Error      *string  `json:"error"`
		DurationMS float64  `json:"duration_ms"`
		At         string   `json:"at"`
		_          struct{} `json:"-"`
	} `json:"attempts"`
	Payload struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	} `json:"payload"`
	Links struct {
		Redeliver string `json:"redeliver"`
	} `json:"links"`
}

func deliveriesOf(t *testing.T, f *fixture, id string) []delivery {
	t.Helper()
	r := f.do("GET", "/v1/replications/"+id+"/deliveries", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET deliveries = %d %s", r.status, r.body)
	}
	var out struct{ Items []delivery }
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	return out.Items
}

// attempt records one attempt at d by a dispatcher, as the dispatcher
// would: claim it, then store the outcome.
func attempt(t *testing.T, st *store.Store, id string, status int, now time.Time) {
	t.Helper()
	ctx := context.Background()
	ds, err := st.ClaimDue(ctx, "test-dispatcher", now, time.Minute, 10)
	if err != nil || len(ds) != 1 || ds[0].ID != id {
		t.Fatalf("claim = %v, %v; want delivery %s", ds, err, id)
	}
	rec := webhook.AttemptRecord{DeliveryID: id, Status: webhook.StatusDelivered,
		Attempt: webhook.Attempt{At: now, StatusCode: status, Duration: 12 * time.Millisecond}}
	if status/100 != 2 {
		rec.Status, rec.NextAttemptAt = webhook.StatusPending, now.Add(time.Minute)
		rec.Attempt.Error = fmt.Sprintf("HTTP %d", status)
	}
	if err := st.RecordAttempt(ctx, "test-dispatcher", rec); err != nil {
		t.Fatal(err)
	}
}

func TestDeliveriesAreListedWithTheirAttemptsAndCanBeSentAgain(t *testing.T) {
	t.Parallel()
	f, st := callbackFixture(t)
	body := request("demo-source")
	body["callback_url"] = "https://tickets.example.com/hooks/bucketbridge?token=t0k3n"
	created := f.do("POST", "/v1/replications", body)
	if created.status != http.StatusAccepted {
		t.Fatalf("create = %d %s", created.status, created.body)
	}
	id := created.json(t)["id"].(string)
	if got := deliveriesOf(t, f, id); len(got) != 0 {
		t.Fatalf("a pending request has deliveries: %+v", got)
	}

	cancelled := f.do("POST", "/v1/replications/"+id+"/cancel", nil)
	if cancelled.status != http.StatusOK {
		t.Fatalf("cancel = %d %s", cancelled.status, cancelled.body)
	}
	ds := deliveriesOf(t, f, id)
	if len(ds) != 1 {
		t.Fatalf("%d deliveries after the cancel, want 1", len(ds))
	}
	d := ds[0]
	if d.Seq != 1 || d.Type != "replication.cancelled" || d.Status != "pending" || d.URL != body["callback_url"] ||
		d.NextAttemptAt == nil || d.DeliveredAt != nil || len(d.Attempts) != 0 || d.Payload.Type != d.Type {
		t.Errorf("new delivery = %+v", d)
	}
	// The payload's data is the request exactly as GET shows it.
	got := f.do("GET", "/v1/replications/"+id, nil).json(t)
	if diff := cmp.Diff(got, d.Payload.Data); diff != "" {
		t.Errorf("payload data differs from GET (-GET +data):\n%s", diff)
	}
	if diff := cmp.Diff(cancelled.json(t), d.Payload.Data); diff != "" {
		t.Errorf("payload data differs from the cancel's answer (-answer +data):\n%s", diff)
	}
	redeliver := "/v1/replications/" + id + "/deliveries/" + d.ID + "/redeliver"
	if d.Links.Redeliver != redeliver {
		t.Errorf("redeliver link = %q, want %q", d.Links.Redeliver, redeliver)
	}

	// A pending delivery is being sent already.
	if r := f.do("POST", redeliver, nil); r.status != http.StatusConflict {
		t.Errorf("redeliver a pending delivery = %d %s, want 409", r.status, r.body)
	}

	// The receiver answers 503, then 200.
	now := time.Now().Add(time.Minute)
	attempt(t, st, d.ID, http.StatusServiceUnavailable, now)
	attempt(t, st, d.ID, http.StatusOK, now.Add(2*time.Minute))
	d = deliveriesOf(t, f, id)[0]
	if d.Status != "delivered" || d.NextAttemptAt != nil || d.DeliveredAt == nil || len(d.Attempts) != 2 {
		t.Fatalf("delivered = %+v", d)
	}
	first, second := d.Attempts[0], d.Attempts[1]
	if first.StatusCode == nil || *first.StatusCode != 503 || first.Error == nil || *first.Error != "HTTP 503" || first.DurationMS != 12 {
		t.Errorf("first attempt = %+v", first)
	}
	if second.StatusCode == nil || *second.StatusCode != 200 || second.Error != nil {
		t.Errorf("second attempt = %+v", second)
	}

	// Sent again: the same delivery, pending, its history kept.
	r := f.do("POST", redeliver, nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("redeliver = %d %s", r.status, r.body)
	}
	var again delivery
	json.Unmarshal(r.body, &again)
	if again.ID != d.ID || again.Status != "pending" || again.NextAttemptAt == nil || again.DeliveredAt != nil || len(again.Attempts) != 2 {
		t.Errorf("redelivered = %+v", again)
	}
	if ds := deliveriesOf(t, f, id); len(ds) != 1 || ds[0].ID != d.ID {
		t.Errorf("after a redelivery the request has %+v, want the same single delivery", ds)
	}
}

func TestDeliveryRoutesAnswer404ForWhatDoesNotExist(t *testing.T) {
	t.Parallel()
	f, _ := callbackFixture(t)
	plain := f.do("POST", "/v1/replications", request("demo-source")).json(t)["id"].(string)
	if got := deliveriesOf(t, f, plain); len(got) != 0 {
		t.Errorf("a request without callback_url has deliveries: %+v", got)
	}
	const unknown = "01900000-0000-7000-8000-000000000000"
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/replications/" + unknown + "/deliveries"},
		{"GET", "/v1/replications/not-a-uuid/deliveries"},
		{"POST", "/v1/replications/" + unknown + "/deliveries/" + unknown + "/redeliver"},
		{"POST", "/v1/replications/" + plain + "/deliveries/" + unknown + "/redeliver"},
		{"POST", "/v1/replications/" + plain + "/deliveries/not-a-uuid/redeliver"},
	} {
		if r := f.do(tc.method, tc.path, nil); r.status != http.StatusNotFound {
			t.Errorf("%s %s = %d %s, want 404", tc.method, tc.path, r.status, r.body)
		}
	}
}

func TestEveryEventTypeIsAWebhookInTheSpecAndItsPayloadsValidate(t *testing.T) {
	t.Parallel()
	doc, err := spec()
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for name := range doc.Webhooks {
		documented = append(documented, name)
	}
	var sent []string
	for _, typ := range webhook.EventTypes {
		sent = append(sent, string(typ))
	}
	slices.Sort(documented)
	slices.Sort(sent)
	if diff := cmp.Diff(sent, documented); diff != "" {
		t.Errorf("openapi.yaml's webhooks differ from the event types sent (-sent +documented):\n%s", diff)
	}

	// A real payload validates against its own webhook, and not against
	// another's.
	f, _ := callbackFixture(t)
	body := request("demo-source")
	body["callback_url"] = "https://tickets.example.com/hooks/bucketbridge"
	id := f.do("POST", "/v1/replications", body).json(t)["id"].(string)
	f.do("POST", "/v1/replications/"+id+"/cancel", nil)
	raw := f.do("GET", "/v1/replications/"+id+"/deliveries", nil).body
	var list struct {
		Items []struct{ Payload json.RawMessage } `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err != nil || len(list.Items) != 1 {
		t.Fatalf("deliveries: %v %s", err, raw)
	}
	var payload any
	json.Unmarshal(list.Items[0].Payload, &payload)
	schemaOf := func(name string) error {
		item := doc.Webhooks[name]
		if item == nil || item.Post == nil {
			return fmt.Errorf("no webhook %s", name)
		}
		return item.Post.RequestBody.Value.Content.Get("application/json").Schema.Value.VisitJSON(payload, openapi3.EnableJSONSchema2020())
	}
	if err := schemaOf("replication.cancelled"); err != nil {
		t.Errorf("a replication.cancelled payload does not validate against its webhook: %v", err)
	}
	if err := schemaOf("replication.succeeded"); err == nil {
		t.Error("a replication.cancelled payload validates as replication.succeeded")
	}
}

func TestCallbackURLsAreCheckedAgainstTheAllowlistWhenCreated(t *testing.T) {
	t.Parallel()
	guard, err := webhook.NewGuard("10.20.0.0/16, tickets.corp.example, 127.0.0.1/32")
	if err != nil {
		t.Fatal(err)
	}
	f := fixtureWith(t, storetest.New(t), api.Config{CallbackGuard: guard})
	for i, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://hooks.example.com/bucketbridge", true},
		{"https://tickets.corp.example/hooks", true},
		{"http://tickets.corp.example:8080/hooks", true}, // listed: http allowed
		{"https://10.20.1.5/hooks", true},                // private, covered
		{"http://10.20.1.5/hooks", true},
		{"http://127.0.0.1:9000/hooks", true}, // loopback, listed exactly
		{"http://hooks.example.com/bucketbridge", false},
		{"https://10.30.1.5/hooks", false}, // private, not covered
		{"https://192.168.1.1/hooks", false},
		{"https://100.64.0.1/hooks", false},
		{"https://127.0.0.2/hooks", false},
		{"https://localhost/hooks", false},
		{"https://metadata.google.internal/computeMetadata/v1/", false},
		{"https://169.254.169.254/latest/meta-data/", false},
		{"https://[fd00:ec2::254]/latest", false},
		{"https://0177.0.0.1/", false},
		{"https://0x7f.0.0.1/", false},
		{"https://127.000.000.001/", false},
		{"https://2130706433/", false},
		{"https://[::127.0.0.1]/", false},
		{"https://[::ffff:169.254.169.254]/", false},
		{"https://[64:ff9b::a9fe:a9fe]/", false},
		{"https://[2002:a9fe:a9fe::]/", false},
		{"https://１２７．０．０．１/", false},
		{"https://hooks.example.com:0/", false},
		{"https://hooks.example.com:99999/", false},
		{"https://hooks.example.com/\u0085", false},
		{"https://user:secret@hooks.example.com/", false},
		{"ftp://hooks.example.com/", false},
		{"/relative/path", false},
		{"https://hooks.example.com/" + strings.Repeat("a", 2048), false},
	} {
		body := request(fmt.Sprintf("src-%d", i))
		body["callback_url"] = tc.url
		r := f.do("POST", "/v1/replications", body)
		switch {
		case tc.ok && r.status != http.StatusAccepted:
			t.Errorf("%q = %d %s, want 202", tc.url, r.status, r.body)
		case !tc.ok && (r.status != http.StatusBadRequest || !slices.Equal(fieldsOf(t, r), []string{"callback_url"})):
			t.Errorf("%q = %d %s, want 400 naming callback_url", tc.url, r.status, r.body)
		}
	}

	// A bad callback URL is named with every other invalid field.
	body := request("src-x")
	body["callback_url"] = "http://hooks.example.com/"
	body["source"].(map[string]any)["account_id"] = "12"
	if r := f.do("POST", "/v1/replications", body); !slices.Equal(fieldsOf(t, r), []string{"callback_url", "source.account_id", "source.kms_key_arn"}) {
		t.Errorf("fields = %v, want callback_url with the others", fieldsOf(t, r))
	}
}

func TestAServerThatCannotSignRefusesCallbackURLs(t *testing.T) {
	t.Parallel()
	f := fixtureWith(t, storetest.New(t), api.Config{CallbacksDisabled: true})
	body := request("demo-source")
	body["callback_url"] = "https://hooks.example.com/bucketbridge"
	r := f.do("POST", "/v1/replications", body)
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "BB_WEBHOOK_SECRET") {
		t.Errorf("create with a callback_url = %d %s, want 400 saying why", r.status, r.body)
	}
	if r := f.do("POST", "/v1/replications", request("demo-source")); r.status != http.StatusAccepted {
		t.Errorf("create without a callback_url = %d %s", r.status, r.body)
	}
}
