package api

import (
	"context"
	"crypto/rand"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// maxRequestID bounds a request id taken from the client.
const maxRequestID = 64

// requestID gives every request an id for logs and 500 answers, and sends
// it back as X-Request-Id. A client's own X-Request-Id is kept only when it
// is 1 to 64 characters of [A-Za-z0-9._-]: the id is written into logs and
// answers, where a client-chosen string could forge log lines, carry markup
// or grow without bound.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(middleware.RequestIDHeader)
		if !safeRequestID(id) {
			id = rand.Text()
		}
		w.Header().Set(middleware.RequestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), middleware.RequestIDKey, id)))
	})
}

func safeRequestID(id string) bool {
	if id == "" || len(id) > maxRequestID {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// eventsRoute is the route whose answer may be a server-sent event stream.
const eventsRoute = "/v1/replications/{id}/events"

// writeDeadline bounds how long writing each answer may take, so a client
// that stops reading cannot hold a connection and its goroutine for ever.
// The server has no WriteTimeout because event streams must outlive any
// such bound; streams are therefore exempt here and bound their own
// lifetime. The deadline starts with the answer's first write, not with
// the request: time spent waiting for a slow body (answered 408 once the
// server's ReadTimeout ends it) must not use up the time to write.
func (s *Server) writeDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.streams(r) {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&deadlineWriter{ResponseWriter: w, timeout: s.writeTimeout}, r)
	})
}

// deadlineWriter sets the connection's write deadline when the answer
// begins.
type deadlineWriter struct {
	http.ResponseWriter
	timeout time.Duration
	armed   bool
}

func (d *deadlineWriter) arm() {
	if !d.armed {
		d.armed = true
		// Writers that cannot set deadlines (test recorders) answer
		// ErrNotSupported; there is nothing to bound then.
		_ = http.NewResponseController(d.ResponseWriter).SetWriteDeadline(time.Now().Add(d.timeout))
	}
}

func (d *deadlineWriter) WriteHeader(code int) {
	d.arm()
	d.ResponseWriter.WriteHeader(code)
}

func (d *deadlineWriter) Write(b []byte) (int, error) {
	d.arm()
	return d.ResponseWriter.Write(b)
}

// Flush lets handlers that assert http.Flusher flush through the wrapper.
func (d *deadlineWriter) Flush() {
	d.arm()
	_ = http.NewResponseController(d.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// boundDatabase gives every API request but an event stream at most the
// database timeout: a database that stops answering (a network partition,
// a full pool) makes requests answer 503 in bounded time instead of
// holding them and their connections. Streams bound each of their reads.
func (s *Server) boundDatabase(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.streams(r) {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.dbTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// streams reports whether r asks for a server-sent event stream on the
// route that serves one.
func (s *Server) streams(r *http.Request) bool {
	if r.Method != http.MethodGet || !strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		return false
	}
	return s.router.Find(chi.NewRouteContext(), r.Method, r.URL.Path) == eventsRoute
}
