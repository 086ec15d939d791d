package api

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/bucketbridge/bucketbridge/internal/authz"
)

// noStore is a Store that no test here reaches.
type noStore struct{ Store }

func newTestServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Store = noStore{}
	authn, err := authz.NewAuthenticator(map[string]string{"token": "caller"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Authenticator, cfg.Grants = authn, authz.Fixed(authz.AllowAll())
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOnlyEventStreamsAreExemptFromTheWriteDeadline(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{})
	for _, tc := range []struct {
		method, path, accept string
		streams              bool
	}{
		{"GET", "/v1/replications/0190a4c6-0000-7000-8000-000000000000/events", "text/event-stream", true},
		{"GET", "/v1/replications/x/events", "application/json, text/event-stream;q=0.5", true},
		{"GET", "/v1/replications/x/events", "application/json", false},
		{"GET", "/v1/replications/x/events", "", false},
		{"POST", "/v1/replications/x/events", "text/event-stream", false},
		{"GET", "/v1/replications/x/steps", "text/event-stream", false},
		{"GET", "/v1/replications/x/y/events", "text/event-stream", false},
		{"GET", "/v1/replications", "text/event-stream", false},
		{"GET", "/metrics", "text/event-stream", false},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		r.Header.Set("Accept", tc.accept)
		if got := s.streams(r); got != tc.streams {
			t.Errorf("%s %s Accept %q: streams = %v, want %v", tc.method, tc.path, tc.accept, got, tc.streams)
		}
	}
}

func TestWriteDeadlineCutsOffAClientThatStopsReading(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	s := newTestServer(t, Config{WriteTimeout: timeout})
	// A route added to the real router runs behind its real middleware.
	type result struct {
		written int
		err     error
		took    time.Duration
	}
	done := make(chan result, 1)
	s.router.Get("/flood", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		chunk := []byte(strings.Repeat("x", 64<<10))
		var res result
		for time.Since(start) < 30*time.Second {
			n, err := w.Write(chunk)
			res.written += n
			if err != nil {
				res.err = err
				break
			}
		}
		res.took = time.Since(start)
		done <- res
	})
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /flood HTTP/1.1\r\nHost: bucketbridge\r\n\r\n")
	// The client reads the status line, then nothing more.
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.err == nil || res.took > 10*time.Second {
			t.Errorf("a client that stopped reading held the handler for %s (%d bytes, error %v)", res.took, res.written, res.err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("the handler is still writing to a client that stopped reading")
	}
}

func TestRequestIDs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sent string
		kept bool
	}{
		{"abc-123_DEF.4", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"has space", false},
		{"new\nline", false},
		{`"quoted"`, false},
		{"<script>", false},
		{"ünïcode", false},
		{"a/b", false},
		{"x=1", false},
	} {
		var seen string
		h := requestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen = middleware.GetReqID(r.Context())
		}))
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["X-Request-Id"] = []string{tc.sent}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if tc.kept && seen != tc.sent {
			t.Errorf("%q: id %q, want it kept", tc.sent, seen)
		}
		if !tc.kept && (seen == tc.sent || !safeRequestID(seen)) {
			t.Errorf("%q: id %q, want a fresh safe one", tc.sent, seen)
		}
		if got := rec.Header().Get("X-Request-Id"); got != seen {
			t.Errorf("%q: answered X-Request-Id %q, logged %q", tc.sent, got, seen)
		}
	}
}
