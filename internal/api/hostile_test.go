package api_test

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/api"
	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// validBody is a create body that passes validation, as raw JSON, so tests
// can splice keys into it the way a hostile client would.
const validBody = `{"source":{"account_id":"111111111111","region":"us-east-1","bucket":"demo-source","kms_key_arn":"` + keyA + `"},` +
	`"destination":{"account_id":"222222222222","region":"us-west-2","bucket":"demo-destination","kms_key_arn":"` + keyB + `"}`

func TestCreateRefusesBodiesThatReadDifferentlyToDifferentParsers(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, tc := range []struct {
		name, body, contentType string
		status                  int
		field                   string
	}{
		{"duplicate ticket hiding a NUL", validBody + `,"ticket":"\u0000","ticket":"OK"}`, "", 400, "ticket"},
		{"duplicate side", validBody + `,"source":{}}`, "", 400, "source"},
		{"duplicate nested key", strings.Replace(validBody, `"region":"us-east-1"`, `"region":"us-east-1","region":"eu-west-1"`, 1) + "}", "", 400, "source.region"},
		{"upper-case SOURCE", strings.Replace(validBody, `"source"`, `"SOURCE"`, 1) + "}", "", 400, "SOURCE"},
		{"upper-case DRY_RUN", validBody + `,"DRY_RUN":true}`, "", 400, "DRY_RUN"},
		{"Kelvin sign in ticket", validBody + `,"tic\u212Aet":"OPS-1"}`, "", 400, "tic\u212Aet"},
		{"mixed-case nested key", strings.Replace(validBody, `"bucket":"demo-source"`, `"Bucket":"demo-source"`, 1) + "}", "", 400, "source.Bucket"},
		{"nested unknown field", strings.Replace(validBody, `"bucket":"demo-source"`, `"bucket":"demo-source","extra":1`, 1) + "}", "", 400, "source.extra"},
		{"invalid UTF-8 in ticket", validBody + ",\"ticket\":\"OPS-\xff\"}", "", 400, "ticket"},
		{"invalid UTF-8 in prefix", validBody + ",\"rule\":{\"prefix\":\"logs/\xc3(\"}}", "", 400, "rule.prefix"},
		{"lone surrogate in ticket", validBody + `,"ticket":"\udead"}`, "", 400, "ticket"},
		{"wrong type, nested", strings.Replace(validBody, `"111111111111"`, `111111111111`, 1) + "}", "", 400, "source.account_id"},
		{"utf-16", validBody + "}", "application/json; charset=utf-16", 415, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r response
			if tc.contentType != "" {
				r = f.do("POST", "/v1/replications", tc.body, "Content-Type", tc.contentType)
			} else {
				r = f.do("POST", "/v1/replications", tc.body)
			}
			if r.status != tc.status || r.header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("status %d %q, want %d: %s", r.status, r.header.Get("Content-Type"), tc.status, r.body)
			}
			if tc.field != "" && !slices.Equal(fieldsOf(t, r), []string{tc.field}) {
				t.Errorf("fields %q, want [%q]: %s", fieldsOf(t, r), tc.field, r.body)
			}
		})
	}
	if items := f.do("GET", "/v1/replications", nil).json(t)["items"].([]any); len(items) != 0 {
		t.Errorf("refused bodies stored %d requests", len(items))
	}
	// The same body without the trick is accepted, so each refusal above is
	// about the trick alone.
	if r := f.do("POST", "/v1/replications", validBody+`,"ticket":"OK"}`, "Content-Type", "application/json; charset=utf-8"); r.status != http.StatusAccepted {
		t.Errorf("valid body = %d %s", r.status, r.body)
	}
}

func TestForgedCursorIsABadRequestNamingCursor(t *testing.T) {
	t.Parallel()
	f := setup(t)
	forge := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, c := range []string{
		forge("-300000000000000000_0190a4c6-0000-7000-8000-000000000000"),  // before 4713 BC
		forge("253402300800000000_0190a4c6-0000-7000-8000-000000000000"),   // year 10000
		forge("1700000000000000_{0190a4c6-0000-7000-8000-000000000000}"),   // another spelling
		forge("-9000000000000000000_0190a4c6-0000-7000-8000-000000000000"), // far out
		"%FF%FE",
	} {
		r := f.do("GET", "/v1/replications?cursor="+c, nil)
		if r.status != http.StatusBadRequest || !slices.Equal(fieldsOf(t, r), []string{"cursor"}) {
			t.Errorf("cursor %q = %d %s, want 400 naming cursor", c, r.status, r.body)
		}
	}
}

// serve runs the real handler the way cmd/server does, on a real socket,
// with the server settings given.
func serve(t *testing.T, cfg api.Config, configure func(*http.Server)) string {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = storetest.New(t)
	}
	if cfg.Authenticator == nil {
		cfg.Authenticator = staticTokens(t)
	}
	if cfg.Grants == nil {
		cfg.Grants = authz.Fixed(authz.AllowAll())
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.NewTextHandler(io.Discard, nil)))
	a, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(a)
	srv.Config.ReadHeaderTimeout = 10 * time.Second
	if configure != nil {
		configure(srv.Config)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestABodyThatStopsArrivingIsARequestTimeoutWithoutInternals(t *testing.T) {
	t.Parallel()
	// As in cmd/server, reading may take as long as writing: the 408 is
	// written only once the read timed out, and must still get through.
	const timeout = 300 * time.Millisecond
	base := serve(t, api.Config{WriteTimeout: timeout}, func(s *http.Server) { s.ReadTimeout = timeout })
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	half := validBody[:len(validBody)/2]
	fmt.Fprintf(conn, "POST /v1/replications HTTP/1.1\r\nHost: bucketbridge\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", portalToken, len(validBody)+1, half)
	// The client now stalls, sending nothing more.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("stalled body = %d %q %s, want a 408 problem", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}
	for _, leak := range []string{"127.0.0.1", "tcp", "i/o", conn.LocalAddr().String()} {
		if strings.Contains(string(raw), leak) {
			t.Errorf("the answer reveals %q: %s", leak, raw)
		}
	}
	if !resp.Close {
		t.Errorf("a 408 left the connection open for another request")
	}
}

func TestABodyCutShortIsMalformedWithoutInternals(t *testing.T) {
	t.Parallel()
	base := serve(t, api.Config{}, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/replications HTTP/1.1\r\nHost: bucketbridge\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"sou\r\nzz\r\n", portalToken)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(raw), "chunk") {
		t.Errorf("broken chunked body = %d %s, want a 400 that does not repeat the reader's error", resp.StatusCode, raw)
	}
}

// metricSeries counts the series of the API's HTTP metrics that /metrics
// shows, and returns the page's size.
func metricSeries(t *testing.T, base string) (series, size int) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if strings.HasPrefix(line, "bucketbridge_http_") {
			series++
		}
	}
	return series, len(raw)
}

func TestRandomMethodsDoNotGrowMetrics(t *testing.T) {
	t.Parallel()
	base := serve(t, api.Config{}, nil)
	paths := []string{"/v1/replications", "/v1/replications/0190a4c6-0000-7000-8000-000000000000", "/livez", "/no/such/route"}
	send := func(n int) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				method := make([]byte, 4+rand.IntN(12))
				for j := range method {
					method[j] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ_-"[rand.IntN(28)]
				}
				req, err := http.NewRequest(string(method), base+paths[i%len(paths)], nil)
				if err != nil {
					t.Error(err)
					return
				}
				req.Header.Set("Authorization", "Bearer "+portalToken)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode >= 500 {
					t.Errorf("%s %s = %d", method, req.URL.Path, resp.StatusCode)
				}
			})
		}
		wg.Wait()
	}
	send(50)
	metricSeries(t, base) // so the scrape's own series exist from here on
	first, _ := metricSeries(t, base)
	send(500)
	after, size := metricSeries(t, base)
	if after != first {
		t.Errorf("500 more random methods grew the HTTP series from %d to %d", first, after)
	}
	// Four routes, one method label, a status or two each: a few dozen
	// lines with the histogram's buckets, never one per method.
	if after > 100 || size > 64<<10 {
		t.Errorf("/metrics holds %d HTTP series in %d bytes after random methods", after, size)
	}
}

func TestTicketFilterIsBoundedInCharacters(t *testing.T) {
	t.Parallel()
	f := setup(t)
	longest := url.QueryEscape(strings.Repeat("é", 256)) // 512 bytes, 256 characters
	if r := f.do("GET", "/v1/replications?ticket="+longest, nil); r.status != http.StatusOK {
		t.Errorf("a 256-character ticket filter = %d %s", r.status, r.body)
	}
	for _, ticket := range []string{strings.Repeat("é", 257), strings.Repeat("x", 100_000)} {
		r := f.do("GET", "/v1/replications?ticket="+url.QueryEscape(ticket), nil)
		if r.status != http.StatusBadRequest || !slices.Equal(fieldsOf(t, r), []string{"ticket"}) {
			t.Errorf("a %d-byte ticket filter = %d %s, want 400 naming ticket", len(ticket), r.status, r.body)
		}
	}
}

func TestEventStreamsOutliveTheWriteDeadline(t *testing.T) {
	t.Parallel()
	const timeout = 100 * time.Millisecond
	base := serve(t, api.Config{WriteTimeout: timeout}, nil)
	id := create(t, base, portalToken, validBody+"}")
	start := time.Now()
	req, _ := http.NewRequest("GET", base+"/v1/replications/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+portalToken)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Let the deadline every other answer gets pass, then make an event.
	<-time.After(time.Until(start.Add(5 * timeout)))
	if status := send(t, "POST", base+"/v1/replications/"+id+"/cancel", portalToken, ""); status != http.StatusOK {
		t.Fatalf("cancel = %d", status)
	}
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		if strings.HasPrefix(lines.Text(), "data:") && strings.Contains(lines.Text(), `"cancelled"`) {
			return
		}
	}
	t.Fatalf("the stream ended %s after it began without the cancellation: %v", time.Since(start), lines.Err())
}

// send makes one API call and returns its status.
func send(t *testing.T, method, url, token, body string) int {
	t.Helper()
	resp := call(t, method, url, token, body, nil)
	return resp.StatusCode
}

// call makes one API call; its body is closed when the test ends.
func call(t *testing.T, method, url, token, body string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	return resp
}

// create stores a request and returns its id.
func create(t *testing.T, base, token, body string) string {
	t.Helper()
	resp := call(t, "POST", base+"/v1/replications", token, body, nil)
	var out struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("create = %d %v", resp.StatusCode, err)
	}
	return out.ID
}

// lockedBuffer collects a log written from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestOnlySafeRequestIDsReachLogsAndAnswers(t *testing.T) {
	t.Parallel()
	st := storetest.New(t)
	st.Close() // every query now fails: each call is a logged 500
	logs := &lockedBuffer{}
	base := serve(t, api.Config{Store: st, Logger: slog.New(slog.NewJSONHandler(logs, nil))}, nil)
	for _, tc := range []struct {
		sent string
		kept bool
	}{
		{"portal-7f3a.retry_2", true},
		{strings.Repeat("r", 64), true},
		{strings.Repeat("r", 65), false},
		{"forged\" level=ERROR msg=\"admin logged in", false},
		{"<img src=x onerror=alert(1)>", false},
		{"tab\there", false},
		{"caf\u00e9", false},
	} {
		resp := call(t, "GET", base+"/v1/replications", portalToken, "", http.Header{"X-Request-Id": {tc.sent}})
		var p struct {
			RequestID string `json:"request_id"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("%q: %d %v", tc.sent, resp.StatusCode, err)
		}
		echoed := resp.Header.Get("X-Request-Id")
		switch {
		case p.RequestID != echoed:
			t.Errorf("%q: problem names %q, header %q", tc.sent, p.RequestID, echoed)
		case tc.kept && p.RequestID != tc.sent:
			t.Errorf("%q: answered %q, want the client's id kept", tc.sent, p.RequestID)
		case !tc.kept && (p.RequestID == tc.sent || len(p.RequestID) > 64 || strings.ContainsFunc(p.RequestID, unsafeIDRune)):
			t.Errorf("%q: answered %q, want a fresh safe id", tc.sent, p.RequestID)
		}
		if !strings.Contains(logs.String(), `"request_id":"`+p.RequestID+`"`) {
			t.Errorf("%q: the log does not carry request id %q", tc.sent, p.RequestID)
		}
	}
	for _, bad := range []string{"forged", "<img", "tab", "caf"} {
		if strings.Contains(logs.String(), bad) {
			t.Errorf("the log carries the client's unsafe id %q:\n%s", bad, logs)
		}
	}
}

func unsafeIDRune(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
}

func TestRateLimitCountsEachCallersChanges(t *testing.T) {
	t.Parallel()
	const limit = 5
	base := serve(t, api.Config{RateLimit: limit}, nil)
	unknown := base + "/v1/replications/0190a4c6-0000-7000-8000-000000000000"
	changes := []struct{ method, url, body string }{
		{"POST", base + "/v1/replications", validBody + "}"},
		{"POST", unknown + "/cancel", ""},
		{"POST", unknown + "/retry", ""},
		{"DELETE", unknown, ""},
	}
	// Two callers each send four times their budget at once, mixing every
	// route that changes state.
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		limited = map[string]int{}
		passed  = map[string]int{}
	)
	for _, token := range []string{portalToken, "jira-token"} {
		for i := range 4 * limit {
			wg.Go(func() {
				c := changes[i%len(changes)]
				resp := call(t, c.method, c.url, token, c.body, nil)
				mu.Lock()
				defer mu.Unlock()
				if resp.StatusCode != http.StatusTooManyRequests {
					passed[token]++
					return
				}
				limited[token]++
				raw, _ := io.ReadAll(resp.Body)
				retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
				if err != nil || retry < 1 || retry > 60 || resp.Header.Get("Content-Type") != "application/problem+json" ||
					!strings.Contains(string(raw), `"status": 429`) {
					t.Errorf("429 with Retry-After %q, %q: %s", resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), raw)
				}
			})
		}
	}
	wg.Wait()
	for _, token := range []string{portalToken, "jira-token"} {
		if passed[token] != limit || limited[token] != 3*limit {
			t.Errorf("%s: %d passed, %d limited; want %d and %d", token, passed[token], limited[token], limit, 3*limit)
		}
	}
	// Reading is not a change: it still works for a caller out of budget.
	for _, path := range []string{"/v1/replications", "/v1/replications/0190a4c6-0000-7000-8000-000000000000/steps"} {
		if status := send(t, "GET", base+path, portalToken, ""); status == http.StatusTooManyRequests {
			t.Errorf("GET %s = 429 for a caller out of change budget", path)
		}
	}
}

func TestNoRateLimitWhenZero(t *testing.T) {
	t.Parallel()
	base := serve(t, api.Config{RateLimit: 0}, nil)
	for range 50 {
		if status := send(t, "POST", base+"/v1/replications/0190a4c6-0000-7000-8000-000000000000/cancel", portalToken, ""); status != http.StatusNotFound {
			t.Fatalf("cancel with no limit = %d", status)
		}
	}
}
