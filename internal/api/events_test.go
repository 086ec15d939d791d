package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bucketbridge/bucketbridge/internal/api"
	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/store"
	"github.com/bucketbridge/bucketbridge/internal/store/storetest"
)

// streamConns is the size of the stream tests' connection pools.
const streamConns = 6

// streamEnv is the real handler on a real socket over a fresh database,
// with the handle the tests need to shut it down.
type streamEnv struct {
	base string
	api  *api.Server
	st   *store.Store
	url  string // the database, for another replica
}

func newStreamEnv(t *testing.T, cfg api.Config) *streamEnv {
	t.Helper()
	e := &streamEnv{url: storetest.NewMigratedDatabase(t)}
	// Few connections: every stream's reads queue for them, as they would
	// in a server whose pool the workers mostly hold.
	st, err := store.Open(context.Background(), e.url, streamConns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e.st = st
	if cfg.Store == nil {
		cfg.Store = st
	}
	cfg.Authenticator = staticTokens(t)
	if cfg.Grants == nil {
		cfg.Grants = authz.Fixed(authz.AllowAll())
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if e.api, err = api.New(cfg); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.api)
	t.Cleanup(srv.Close)
	e.base = srv.URL
	return e
}

// stream is one open event stream as a client reads it.
type stream struct {
	resp  *http.Response
	lines *bufio.Scanner
}

// open starts following id's events as token, resuming after lastID when
// it is not "".
func (e *streamEnv) open(t *testing.T, token, id, lastID string) (*stream, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/v1/replications/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		return nil, resp
	}
	return &stream{resp: resp, lines: bufio.NewScanner(resp.Body)}, resp
}

// sse is one server-sent event, or a comment when comment is set.
type sse struct {
	id      int64
	typ     string
	state   string
	comment string
}

// next reads the next event or comment; ok is false once the stream ended.
func (s *stream) next() (ev sse, ok bool, err error) {
	seen := false
	for s.lines.Scan() {
		line := s.lines.Text()
		switch {
		case line == "":
			if seen {
				return ev, true, nil
			}
		case strings.HasPrefix(line, ":"):
			ev.comment, seen = strings.TrimSpace(strings.TrimPrefix(line, ":")), true
		case strings.HasPrefix(line, "id: "):
			ev.id, _ = strconv.ParseInt(strings.TrimPrefix(line, "id: "), 10, 64)
			seen = true
		case strings.HasPrefix(line, "event: "):
			ev.typ, seen = strings.TrimPrefix(line, "event: "), true
		case strings.HasPrefix(line, "data: "):
			var d struct{ State string }
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &d); err != nil {
				return ev, false, fmt.Errorf("event data %q: %w", line, err)
			}
			ev.state, seen = d.State, true
		default:
			return ev, false, fmt.Errorf("unexpected line %q", line)
		}
	}
	// A stream the server ended cleanly reads to EOF without an error.
	return ev, false, s.lines.Err()
}

// rest reads the stream to its end and returns the ids of its events.
func (s *stream) rest() ([]int64, error) {
	var ids []int64
	for {
		ev, ok, err := s.next()
		if err != nil || !ok {
			return ids, err
		}
		if ev.comment == "" {
			ids = append(ids, ev.id)
		}
	}
}

// progress plays a worker on the only runnable request: it claims it and
// records n step attempts, each an event, then completes it. Its writes
// take turns among stores, as if the replicas shared the work.
func progress(t *testing.T, stores []*store.Store, n int) {
	t.Helper()
	ctx := context.Background()
	c, ok, err := stores[0].Claim(ctx, "worker", time.Minute)
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	for i := range n {
		st := stores[i%len(stores)]
		name := fmt.Sprintf("step_%02d", i)
		if err := st.StartSteps(ctx, &c, name); err != nil {
			t.Fatal(err)
		}
		rec := provision.StepRecord{Phase: c.Phase, Name: name, Status: provision.StepSucceeded}
		if _, err := st.FinishStep(ctx, &c, rec, c.Facts); err != nil {
			t.Fatal(err)
		}
	}
	if err := stores[n%len(stores)].Finish(ctx, &c, provision.ActionComplete, "done"); err != nil {
		t.Fatal(err)
	}
}

func TestManyStreamsOnOneRequestGetEveryEventOnceAndInOrder(t *testing.T) {
	t.Parallel()
	const streams, steps = 40, 30
	e := newStreamEnv(t, api.Config{StreamsPerCaller: streams, Streams: streams})
	id := create(t, e.base, portalToken, validBody+"}")
	// Another replica on the same database writes every other event: its
	// commits reach the streams through the shared LISTEN, this process's
	// at once.
	other, err := store.Open(context.Background(), e.url, streamConns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)

	var open []*stream
	for i := range streams {
		// Some streams resume, as an EventSource reconnecting does.
		last := ""
		if i%4 == 3 {
			last = "1"
		}
		s, resp := e.open(t, portalToken, id, last)
		if s == nil {
			t.Fatalf("stream %d = %d", i, resp.StatusCode)
		}
		open = append(open, s)
	}
	// The events come as fast as they can be written, from both replicas,
	// while every stream follows: the claim, the steps and the completion.
	progress(t, []*store.Store{e.st, other}, steps)

	// pending, running, one event per step, succeeded; then the end.
	var wg sync.WaitGroup
	for i, s := range open {
		wg.Go(func() {
			first := int64(1)
			if i%4 == 3 {
				first = 2
			}
			var want []int64
			for id := first; id <= steps+3; id++ {
				want = append(want, id)
			}
			got, err := s.rest()
			if err != nil {
				t.Errorf("stream %d ended with %v", i, err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("stream %d got event ids %v, want %v", i, got, want)
			}
		})
	}
	wg.Wait()
}

func TestAStreamBeyondTheCapIsRefusedWithRetryAfter(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, api.Config{StreamsPerCaller: 2, Streams: 3})
	id := create(t, e.base, portalToken, validBody+"}")
	first, _ := e.open(t, portalToken, id, "")
	if s, _ := e.open(t, portalToken, id, ""); first == nil || s == nil {
		t.Fatal("the first two streams of a caller were refused")
	}
	refused := func(token, why string) {
		t.Helper()
		s, resp := e.open(t, token, id, "")
		if s != nil {
			t.Fatalf("%s: the stream was opened", why)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Content-Type") != "application/problem+json" ||
			resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: %d %q Retry-After %q: %s", why, resp.StatusCode, resp.Header.Get("Content-Type"),
				resp.Header.Get("Retry-After"), body)
		}
	}
	refused(portalToken, "a caller's third stream")
	if s, resp := e.open(t, "jira-token", id, ""); s == nil {
		t.Fatalf("another caller's first stream = %d", resp.StatusCode)
	}
	refused("alice-token", "a fourth stream in the process")

	// A stream's place is given back when its client goes away.
	first.resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, resp := e.open(t, "alice-token", id, "")
		if s != nil {
			break
		}
		if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("after a client left, a new stream = %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := call(t, "GET", e.base+"/metrics", "", "", nil)
	body, _ := io.ReadAll(r.Body)
	if !strings.Contains(string(body), "bucketbridge_event_streams 3") {
		t.Errorf("metrics do not count 3 open streams:\n%s", body)
	}
}

// countingStore counts the timeline reads of a store.
type countingStore struct {
	*store.Store
	reads atomic.Int64
}

func (c *countingStore) Events(ctx context.Context, id string, after int64) ([]provision.Event, error) {
	c.reads.Add(1)
	return c.Store.Events(ctx, id, after)
}

func TestAnIdleStreamSendsHeartbeatsAndReadsNothing(t *testing.T) {
	t.Parallel()
	counting := &countingStore{}
	e := newStreamEnv(t, api.Config{StreamHeartbeat: 20 * time.Millisecond})
	counting.Store = e.st
	e2 := newStreamEnvOn(t, e, api.Config{Store: counting, StreamHeartbeat: 20 * time.Millisecond})
	id := create(t, e2.base, portalToken, validBody+"}")
	s, resp := e2.open(t, portalToken, id, "")
	if s == nil {
		t.Fatalf("stream = %d", resp.StatusCode)
	}
	beats := 0
	for beats < 10 {
		ev, ok, err := s.next()
		if !ok {
			t.Fatalf("the stream ended after %d heartbeats: %v", beats, err)
		}
		switch {
		case ev.comment == "keep-alive":
			beats++
		case ev.comment != "":
			t.Fatalf("comment %q, want keep-alive", ev.comment)
		}
	}
	if n := counting.reads.Load(); n != 1 {
		t.Errorf("an idle stream read its timeline %d times in 10 heartbeats, want only the first read", n)
	}
	// An event wakes it, and it reads once more.
	if _, err := e.st.Cancel(context.Background(), id, "t"); err != nil {
		t.Fatal(err)
	}
	ids, err := s.rest()
	if err != nil || !slices.Equal(ids, []int64{2}) {
		t.Errorf("after the cancel the stream sent %v (%v), want event 2 and its end", ids, err)
	}
}

// newStreamEnvOn serves another handler, built from cfg, over e's database.
func newStreamEnvOn(t *testing.T, e *streamEnv, cfg api.Config) *streamEnv {
	t.Helper()
	cfg.Authenticator = staticTokens(t)
	cfg.Grants = authz.Fixed(authz.AllowAll())
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &streamEnv{base: srv.URL, api: a, st: e.st, url: e.url}
}

func TestAStreamEndsAtItsLifetimeAndResumesWithLastEventID(t *testing.T) {
	t.Parallel()
	const lifetime = 300 * time.Millisecond
	e := newStreamEnv(t, api.Config{StreamLifetime: lifetime})
	id := create(t, e.base, portalToken, validBody+"}")
	start := time.Now()
	s, resp := e.open(t, portalToken, id, "")
	if s == nil {
		t.Fatalf("stream = %d", resp.StatusCode)
	}
	ids, err := s.rest()
	if err != nil || !slices.Equal(ids, []int64{1}) {
		t.Fatalf("the stream sent %v and ended with %v", ids, err)
	}
	if took := time.Since(start); took < lifetime || took > lifetime+5*time.Second {
		t.Errorf("the stream of an unfinished request ended after %s, want its lifetime of %s", took, lifetime)
	}
	if _, err := e.st.Cancel(context.Background(), id, "t"); err != nil {
		t.Fatal(err)
	}
	resumed, resp := e.open(t, portalToken, id, "1")
	if resumed == nil {
		t.Fatalf("resumed stream = %d", resp.StatusCode)
	}
	if ids, err := resumed.rest(); err != nil || !slices.Equal(ids, []int64{2}) {
		t.Errorf("the resumed stream sent %v (%v), want what followed event 1", ids, err)
	}
}

func TestCloseStreamsEndsEveryStreamAtOnceAndRefusesNewOnes(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, api.Config{})
	id := create(t, e.base, portalToken, validBody+"}")
	var open []*stream
	for range 5 {
		s, resp := e.open(t, portalToken, id, "")
		if s == nil {
			t.Fatalf("stream = %d", resp.StatusCode)
		}
		open = append(open, s)
	}
	start := time.Now()
	e.api.CloseStreams()
	for i, s := range open {
		if ids, err := s.rest(); err != nil || !slices.Equal(ids, []int64{1}) {
			t.Errorf("stream %d sent %v and ended with %v", i, ids, err)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("closing the streams took %s", took)
	}
	_, resp := e.open(t, portalToken, id, "")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("a stream opened during shutdown = %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestAnUnreachableDatabaseAnswers503OnEveryRoute(t *testing.T) {
	t.Parallel()
	// Nothing listens on a port just closed: every connection is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	st, err := store.Open(context.Background(), "postgres://postgres@"+addr+"/bb?sslmode=disable", 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	f := newFixture(t, st)
	checkUnavailable(t, f)
}

func TestADatabaseThatDoesNotAnswerIs503WithinTheTimeout(t *testing.T) {
	t.Parallel()
	// A server that accepts connections and never answers, as a database
	// behind a network partition looks.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { io.Copy(io.Discard, c); c.Close() })
		}
	}()
	st, err := store.Open(context.Background(), "postgres://postgres@"+ln.Addr().String()+"/bb?sslmode=disable", 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	const timeout = 300 * time.Millisecond
	f := fixtureWith(t, st, api.Config{DatabaseTimeout: timeout})
	start := time.Now()
	r := f.do("GET", "/v1/replications", nil)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("listing = %d %s", r.status, r.body)
	}
	if took := time.Since(start); took > timeout+2*time.Second {
		t.Errorf("the 503 took %s, want about the database timeout of %s", took, timeout)
	}
}

// checkUnavailable asserts every route that needs the database answers a
// 503 problem with Retry-After and no internal detail.
func checkUnavailable(t *testing.T, f *fixture) {
	t.Helper()
	const id = "/v1/replications/0190a4c6-0000-7000-8000-000000000000"
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/v1/replications", validBody + "}"},
		{"GET", "/v1/replications", ""},
		{"GET", id, ""},
		{"GET", id + "/steps", ""},
		{"GET", id + "/events", ""},
		{"GET", id + "/deliveries", ""},
		{"POST", id + "/cancel", ""},
		{"POST", id + "/retry", ""},
		{"POST", id + "/approve", ""},
		{"POST", id + "/reject", `{"reason": "no"}`},
		{"DELETE", id, ""},
		{"POST", id + "/deliveries/0190a4c6-0000-7000-8000-000000000001/redeliver", ""},
	} {
		var body any
		if tc.body != "" {
			body = tc.body
		}
		r := f.do(tc.method, tc.path, body)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Content-Type") != "application/problem+json" ||
			r.header.Get("Retry-After") == "" {
			t.Errorf("%s %s = %d %q Retry-After %q: %s", tc.method, tc.path, r.status, r.header.Get("Content-Type"),
				r.header.Get("Retry-After"), r.body)
			continue
		}
		if strings.Contains(string(r.body), "127.0.0.1") || strings.Contains(string(r.body), "refused") ||
			strings.Contains(string(r.body), "dial") {
			t.Errorf("%s %s shows internals: %s", tc.method, tc.path, r.body)
		}
	}
	if r := f.do("GET", "/readyz", nil); r.status != http.StatusServiceUnavailable {
		t.Errorf("readyz = %d", r.status)
	}
}
