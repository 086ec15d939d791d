package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/provision"
)

// acceptingStore stores nothing and accepts everything, so the fuzzer
// exercises decoding and validation alone. Methods the fuzzed routes never
// call are the embedded nil Store's.
type acceptingStore struct{ Store }

func (acceptingStore) Create(_ context.Context, in provision.NewReplication) (provision.Replication, *provision.Response, error) {
	return provision.Replication{ID: "0190a4c6-0000-7000-8000-000000000000", Spec: in.Spec, State: provision.StatePending}, nil, nil
}

func (acceptingStore) List(context.Context, provision.Filter) (provision.Page, error) {
	return provision.Page{}, nil
}

// requestFields are the fields of a create body, as validation names them.
var requestFields = []string{
	"source.account_id", "source.region", "source.bucket", "source.kms_key_arn",
	"destination.account_id", "destination.region", "destination.bucket", "destination.kms_key_arn",
	"rule.prefix", "rule.storage_class", "rule.delete_marker_replication", "rule.replica_modifications",
	"rule.replication_time_control", "enable_versioning", "set_source_default_encryption", "verify", "ticket", "callback_url", "dry_run",
}

// listParameters are the query parameters of the listing.
var listParameters = []string{"state", "account_id", "ticket", "limit", "cursor"}

// FuzzHTTP drives the real router with fuzzed create bodies, content types,
// listing queries and request ids, and checks what every caller relies on:
// never a 5xx; every 4xx a problem+json; every 400 about a field naming it,
// by a path that is in the body or the contract; every request id answered
// safe to log.
func FuzzHTTP(f *testing.F) {
	f.Add(`{"source":{"account_id":"111111111111","region":"us-east-1","bucket":"demo-source","kms_key_arn":"arn:aws:kms:us-east-1:111111111111:key/11111111-1111-4111-8111-111111111111"},"destination":{"account_id":"222222222222","region":"us-west-2","bucket":"demo-destination","kms_key_arn":"arn:aws:kms:us-west-2:222222222222:key/22222222-2222-4222-8222-222222222222"}}`,
		"application/json", "state=pending&limit=10", "req-1")
	authn, err := authz.NewAuthenticator(map[string]string{"t": "fuzzer"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{Store: acceptingStore{}, Authenticator: authn, Grants: authz.Fixed(authz.AllowAll()),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body, contentType, query, requestID string) {
		create := httptest.NewRequest(http.MethodPost, "/v1/replications", strings.NewReader(body))
		create.Header["Content-Type"] = []string{contentType}
		list := httptest.NewRequest(http.MethodGet, "/v1/replications", nil)
		list.URL.RawQuery = query
		for _, req := range []*http.Request{create, list} {
			req.Header.Set("Authorization", "Bearer t")
			req.Header["X-Request-Id"] = []string{requestID}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			what := fmt.Sprintf("%s with body %q, Content-Type %q, query %q", req.Method, body, contentType, query)
			if rec.Code >= 500 {
				t.Fatalf("%s answered %d: %s", what, rec.Code, rec.Body)
			}
			if id := rec.Header().Get("X-Request-Id"); !safeRequestID(id) {
				t.Fatalf("%s answered request id %q", what, id)
			}
			if rec.Code < 400 {
				if req == create && rec.Code == http.StatusAccepted && !strings.Contains(rec.Body.String(), `"account_id": "`) {
					t.Fatalf("%s was accepted without an account: %s", what, rec.Body)
				}
				continue
			}
			var p problem
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("%s answered %d as %q", what, rec.Code, ct)
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Status != rec.Code || p.Title == "" {
				t.Fatalf("%s answered %d with a broken problem (%v): %s", what, rec.Code, err, rec.Body)
			}
			if rec.Code != http.StatusBadRequest {
				continue
			}
			var named []string
			for _, e := range p.Errors {
				named = append(named, e.Field)
			}
			if req == list {
				if len(named) == 0 || slices.ContainsFunc(named, func(n string) bool { return !slices.Contains(listParameters, n) }) {
					t.Fatalf("%s answered 400 naming %q, not listing parameters: %s", what, named, rec.Body)
				}
				continue
			}
			if jsonObject(body) && jsonContentType(contentType) && len(named) == 0 {
				t.Fatalf("%s is a JSON object but its 400 names no field: %s", what, rec.Body)
			}
			inBody := bodyPaths(body)
			for _, n := range named {
				if n == "" || !slices.Contains(requestFields, n) && !inBody[n] {
					t.Fatalf("%s answered 400 naming %q, in neither the body nor the contract: %s", what, n, rec.Body)
				}
			}
		}
	})
}

// jsonObject reports whether body is one syntactically valid JSON object.
func jsonObject(body string) bool {
	return json.Valid([]byte(body)) && strings.HasPrefix(strings.TrimLeft(body, " \t\r\n"), "{")
}

// jsonContentType reports whether a create body may be sent as ct.
func jsonContentType(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// bodyPaths lists the path of every key and value in body, as far as it
// parses, written as problems write them: source.bucket, list[0].key.
func bodyPaths(body string) map[string]bool {
	type frame struct {
		base      string
		array     bool
		index     int
		key       string
		expectKey bool
	}
	paths := map[string]bool{}
	var stack []*frame
	// valuePath is the path of the value about to be read.
	valuePath := func() string {
		if len(stack) == 0 {
			return ""
		}
		top := stack[len(stack)-1]
		if top.array {
			top.index++
			return fmt.Sprintf("%s[%d]", top.base, top.index-1)
		}
		top.expectKey = true // once this value is read
		return joinPath(top.base, top.key)
	}
	dec := json.NewDecoder(strings.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return paths
		}
		if n := len(stack); n > 0 && stack[n-1].expectKey {
			if key, ok := tok.(string); ok {
				stack[n-1].key, stack[n-1].expectKey = key, false
				paths[joinPath(stack[n-1].base, key)] = true
				continue
			}
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			p := valuePath()
			paths[p] = true
			stack = append(stack, &frame{base: p, array: tok == json.Delim('['), expectKey: tok == json.Delim('{')})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		default:
			paths[valuePath()] = true
		}
	}
}
