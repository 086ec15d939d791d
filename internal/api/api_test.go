package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucketbridge/bucketbridge"
	"github.com/bucketbridge/bucketbridge/internal/api"
	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// spec is the parsed openapi.yaml every response is checked against.
var spec = sync.OnceValues(func() (*openapi3.T, error) {
	// A server-sent event stream is text; its events are checked by the
	// tests that read it.
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(bucketbridge.OpenAPI)
	if err != nil {
		return nil, err
	}
	return doc, doc.Validate(context.Background())
})

// tokens are the static API tokens every fixture accepts, token → name;
// do sends portalToken unless told otherwise.
var tokens = map[string]string{portalToken: "portal", "jira-token": "jira",
	"alice-token": "alice", "bob-token": "bob", "carol-token": "carol", "dave-token": "dave", "eve-token": "eve", "ops-token": "ops"}

const portalToken = "portal-token"

type fixture struct {
	t   *testing.T
	srv *httptest.Server
	api *api.Server
}

// options change what a fixture is built with.
type options struct {
	// grants default to every caller admin on every account.
	grants *authz.Holder
	// authn defaults to the static tokens.
	authn api.Authenticator
	// log defaults to nowhere.
	log io.Writer
	// registry defaults to a registry of the fixture's own.
	registry *prometheus.Registry
}

// setup serves the real router over a fresh database. Every response it
// sees is validated against openapi.yaml.
func setup(t *testing.T) *fixture {
	t.Helper()
	st := storetest.New(t)
	return newFixture(t, st)
}

func staticTokens(t testing.TB) api.Authenticator {
	t.Helper()
	a, err := authz.NewAuthenticator(tokens, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newFixture(t *testing.T, st api.Store, opts ...options) *fixture {
	t.Helper()
	var o options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.grants == nil {
		o.grants = authz.Fixed(authz.AllowAll())
	}
	if o.authn == nil {
		o.authn = staticTokens(t)
	}
	if o.log == nil {
		o.log = io.Discard
	}
	a, err := api.New(api.Config{Store: st, Cloud: "fake", OpenAPI: bucketbridge.OpenAPI, Authenticator: o.authn,
		Grants: o.grants, Registry: o.registry, Logger: slog.New(slog.NewTextHandler(o.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, api: a}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serveAndValidate))
	t.Cleanup(f.srv.Close)
	return f
}

// serveAndValidate runs the router with a route context it can read back,
// then checks the response against the operation the router matched.
func (f *fixture) serveAndValidate(w http.ResponseWriter, r *http.Request) {
	rctx := chi.NewRouteContext()
	r = r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, rctx))
	rec := httptest.NewRecorder()
	f.api.ServeHTTP(rec, r)
	f.validate(r, normalize(rctx.RoutePattern()), rec)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

func (f *fixture) validate(r *http.Request, path string, rec *httptest.ResponseRecorder) {
	doc, err := spec()
	if err != nil {
		f.t.Errorf("openapi.yaml: %v", err)
		return
	}
	item := doc.Paths.Find(path)
	if item == nil {
		// A middleware (authentication) answered before the router matched
		// a route; find the operation by the request's path instead.
		path = specPath(doc, r.URL.Path)
		item = doc.Paths.Find(path)
	}
	if item == nil || item.GetOperation(r.Method) == nil {
		// Unrouted paths; the route parity test covers routed ones.
		if rec.Code != http.StatusNotFound && rec.Code != http.StatusMethodNotAllowed {
			f.t.Errorf("%s %s answered %d but is not in openapi.yaml", r.Method, r.URL.Path, rec.Code)
		}
		return
	}
	op := item.GetOperation(r.Method)
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: r,
			Route:   &routers.Route{Spec: doc, Path: path, PathItem: item, Method: r.Method, Operation: op},
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		},
		Status: rec.Code,
		Header: rec.Header(),
		Options: &openapi3filter.Options{IncludeResponseStatus: true,
			MultiError: true},
	}
	in.SetBodyBytes(rec.Body.Bytes())
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		f.t.Errorf("%s %s answered %d, which openapi.yaml does not allow: %v\nbody: %s", r.Method, r.URL, rec.Code, err, rec.Body)
	}
}

// specPath is the path template of doc that urlPath matches, or "".
func specPath(doc *openapi3.T, urlPath string) string {
	got := strings.Split(urlPath, "/")
	for template := range doc.Paths.Map() {
		want := strings.Split(template, "/")
		if len(want) != len(got) {
			continue
		}
		match := true
		for i := range want {
			if want[i] != got[i] && !strings.HasPrefix(want[i], "{") {
				match = false
				break
			}
		}
		if match {
			return template
		}
	}
	return ""
}

// normalize turns a chi pattern into an openapi path.
func normalize(pattern string) string {
	if len(pattern) > 1 {
		pattern = strings.TrimSuffix(pattern, "/")
	}
	return pattern
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

func (f *fixture) do(method, path string, body any, headers ...string) response {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+portalToken)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: raw}
}

func TestEveryRouteIsInTheSpecAndEverySpecPathIsRouted(t *testing.T) {
	t.Parallel()
	doc, err := spec()
	if err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	a, err := api.New(api.Config{Store: unreachableStore{}, Authenticator: staticTokens(t), Grants: authz.Fixed(authz.AllowAll())})
	if err != nil {
		t.Fatal(err)
	}
	routed := map[string]bool{}
	err = chi.Walk(a.Routes(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routed[method+" "+normalize(route)] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	specified := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			specified[method+" "+path] = true
		}
	}
	for r := range routed {
		if !specified[r] {
			t.Errorf("route %s is served but not in openapi.yaml", r)
		}
	}
	for s := range specified {
		if !routed[s] {
			t.Errorf("openapi.yaml documents %s, which is not routed", s)
		}
	}
}

func TestSpecIsServed(t *testing.T) {
	t.Parallel()
	f := setup(t)
	r := f.do("GET", "/openapi.yaml", nil)
	if r.status != http.StatusOK || !bytes.Equal(r.body, bucketbridge.OpenAPI) {
		t.Fatalf("GET /openapi.yaml = %d, %d bytes", r.status, len(r.body))
	}
	_, file, _, _ := runtime.Caller(0)
	onDisk, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "openapi.yaml"))
	if err != nil || !bytes.Equal(onDisk, r.body) {
		t.Fatalf("served spec differs from openapi.yaml: %v", err)
	}
}
