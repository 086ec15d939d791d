// Package api is bucketbridge's HTTP interface: routes, request decoding and
// validation, and RFC 9457 problem responses. openapi.yaml is its contract.
package api

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/httprate"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucketbridge/bucketbridge/internal/authz"
	"github.com/bucketbridge/bucketbridge/internal/provision"
	"github.com/bucketbridge/bucketbridge/internal/webhook"
)

// Store is the persistence the API needs.
type Store interface {
	Create(ctx context.Context, in provision.NewReplication) (r provision.Replication, replay *provision.Response, err error)
	Get(ctx context.Context, id string) (provision.Replication, error)
	List(ctx context.Context, f provision.Filter) (provision.Page, error)
	// Cancel, Retry and Deprovision record actor as who asked.
	// Replay returns the answer remembered for caller's Idempotency-Key
	// and body hash, nil when the key is unused, or
	// provision.ErrIdempotencyKeyReused; it stores nothing.
	Replay(ctx context.Context, caller, key string, hash []byte) (*provision.Response, error)
	// Cancel, Retry, Deprovision, Approve and Reject record actor as who asked.
	Cancel(ctx context.Context, id, actor string) (provision.Replication, error)
	Retry(ctx context.Context, id, actor string) (provision.Replication, error)
	Deprovision(ctx context.Context, id, actor string) (provision.Replication, error)
	Approve(ctx context.Context, id, actor string) (provision.Replication, error)
	Reject(ctx context.Context, id, actor, reason string) (provision.Replication, error)
	Steps(ctx context.Context, id string) ([]provision.Step, error)
	Events(ctx context.Context, id string, after int64) ([]provision.Event, error)
	// EventsWake delivers a value whenever events may have been added to
	// request id's timeline, until ctx ends; event streams read the new
	// events then, and never poll.
	EventsWake(ctx context.Context, id string) <-chan struct{}
	// Deliveries lists a request's callbacks, with their attempts, in the
	// order of its events; Redeliver queues a finished one again.
	Deliveries(ctx context.Context, id string) ([]webhook.Delivery, error)
	Redeliver(ctx context.Context, id, deliveryID string) (webhook.Delivery, error)
	Ready(ctx context.Context) error
}

// Config holds what the handler is built from.
type Config struct {
	Store  Store
	Logger *slog.Logger
	// Cloud says which AWS the workers talk to ("aws" or "fake"); every
	// replication resource carries it so a dev-mode result is never
	// mistaken for a real one.
	Cloud string
	// OpenAPI is the contract served at /openapi.yaml.
	OpenAPI []byte
	// TrustConditions mirrors BB_TRUST_CONDITIONS, so dry runs show the
	// trust policy the workers would write.
	TrustConditions bool
	// Authenticator identifies the callers of /v1; required.
	Authenticator Authenticator
	// Grants decide what each caller may see and do; required. They are
	// read afresh for every request, so a reload applies at once.
	Grants *authz.Holder
	// ReadyTimeout bounds the database check of /readyz.
	ReadyTimeout time.Duration
	// Registry receives the API's metrics and is served at /metrics with
	// whatever else is registered there (the worker pool's); nil makes one.
	Registry *prometheus.Registry
	// RateLimit is how many requests that change state each caller may
	// send a minute (BB_RATE_LIMIT); 0 sets no limit.
	RateLimit int
	// WriteTimeout bounds writing any answer but an event stream; 30s when
	// zero.
	WriteTimeout time.Duration
	// CallbackGuard checks callback URLs when requests are created
	// (BB_CALLBACK_ALLOW); nil checks them against an empty allowlist.
	CallbackGuard *webhook.Guard
	// CallbacksDisabled refuses every callback_url: the server has no
	// secret to sign callbacks with.
	CallbacksDisabled bool
	// DatabaseTimeout bounds the database work of one API request
	// (BB_DATABASE_TIMEOUT): past it, as when the database cannot be
	// reached, the answer is 503. Event streams bound each read instead.
	// 10s when zero.
	DatabaseTimeout time.Duration
	// StreamsPerCaller and Streams cap the event streams open at once, per
	// caller and in the process (BB_SSE_MAX_PER_CALLER, BB_SSE_MAX); a
	// stream beyond either is answered 429 with Retry-After. Defaults
	// DefaultStreamsPerCaller and DefaultStreams when zero.
	StreamsPerCaller int
	Streams          int
	// StreamLifetime ends each event stream after it (BB_SSE_MAX_LIFETIME);
	// DefaultStreamLifetime when zero.
	StreamLifetime time.Duration
	// StreamHeartbeat is how often a stream sends a comment while it has
	// no events; DefaultStreamHeartbeat when zero.
	StreamHeartbeat time.Duration
	// StreamRecheck is how often a stream reads its timeline unwoken, in
	// case a notification was lost; DefaultStreamRecheck when zero.
	StreamRecheck time.Duration
}

// DefaultDatabaseTimeout bounds the database work of one API request: far
// beyond what any of its statements takes, short enough that a caller
// learns of a database that does not answer before its own timeout.
const DefaultDatabaseTimeout = 10 * time.Second

// Server serves the HTTP API.
type Server struct {
	store   Store
	log     *slog.Logger
	cloud   string
	openapi []byte
	ready   time.Duration
	authn   Authenticator
	holder  *authz.Holder
	trust   bool
	metrics *httpMetrics
	authzm  *authzMetrics
	gather  prometheus.Gatherer
	limiter *httprate.RateLimiter // nil when there is no rate limit
	// writeTimeout bounds writing an answer that is not a stream.
	writeTimeout time.Duration
	// dbTimeout bounds the database work of a request, or of each read of
	// a stream.
	dbTimeout time.Duration
	// streaming holds the open event streams.
	streaming *streamSet
	router    chi.Router
	// guard checks callback URLs; callbacksOff refuses them all.
	guard        *webhook.Guard
	callbacksOff bool
}

// New builds the API's handler.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("api: Config.Store is required")
	}
	if cfg.Authenticator == nil {
		return nil, errors.New("api: Config.Authenticator is required")
	}
	if cfg.Grants == nil || cfg.Grants.Grants() == nil {
		return nil, errors.New("api: Config.Grants is required")
	}
	s := &Server{
		store:   cfg.Store,
		log:     cmp.Or(cfg.Logger, slog.Default()),
		cloud:   cmp.Or(cfg.Cloud, "aws"),
		openapi: cfg.OpenAPI,
		ready:   cmp.Or(cfg.ReadyTimeout, 2*time.Second),
		authn:   cfg.Authenticator,
		holder:  cfg.Grants,
		trust:   cfg.TrustConditions,

		writeTimeout: cmp.Or(cfg.WriteTimeout, 30*time.Second),
		dbTimeout:    cmp.Or(cfg.DatabaseTimeout, DefaultDatabaseTimeout),
	}
	if cfg.RateLimit < 0 {
		return nil, errors.New("api: Config.RateLimit must be 0 (no limit) or more")
	}
	s.limiter = s.newRateLimiter(cfg.RateLimit)
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s.metrics, s.authzm, s.gather = newHTTPMetrics(reg), newAuthzMetrics(reg), reg
	var err error
	if s.streaming, err = newStreamSet(cfg, s.metrics.streams.Add); err != nil {
		return nil, err
	}
	s.guard, s.callbacksOff = cfg.CallbackGuard, cfg.CallbacksDisabled
	if s.guard == nil {
		s.guard, _ = webhook.NewGuard("") // an empty allowlist always parses
	}
	s.router = s.routes()
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// Routes returns the router, for tests that compare it with openapi.yaml.
func (s *Server) Routes() chi.Routes { return s.router }

func (s *Server) routes() chi.Router {
	r := chi.NewRouter()
	r.Use(s.writeDeadline, requestID, s.recoverer, s.logRequests, s.metrics.instrument)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.problem(w, r, &problem{Status: http.StatusNotFound, Title: "Not Found", Detail: "no route for " + r.URL.Path})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		s.problem(w, r, &problem{Status: http.StatusMethodNotAllowed, Title: "Method Not Allowed",
			Detail: r.Method + " is not allowed on " + r.URL.Path})
	})

	r.Get("/livez", s.live)
	r.Get("/healthz", s.live)
	r.Get("/readyz", s.readyz)
	r.Get("/openapi.yaml", s.spec)
	r.Method(http.MethodGet, "/metrics", metricsHandler(s.gather))

	r.Route("/v1/replications", func(r chi.Router) {
		r.Use(s.authenticate, s.boundDatabase)
		r.Get("/", s.listReplications)
		r.Get("/{id}", s.getReplication)
		r.Get("/{id}/steps", s.listSteps)
		r.Get("/{id}/events", s.listEvents)
		r.Get("/{id}/deliveries", s.listDeliveries)
		// Every route that changes state spends the caller's rate limit.
		r.Group(func(r chi.Router) {
			r.Use(s.limitChanges)
			r.Post("/", s.createReplication)
			r.Delete("/{id}", s.deprovisionReplication)
			r.Post("/{id}/cancel", s.cancelReplication)
			r.Post("/{id}/retry", s.retryReplication)
			r.Post("/{id}/approve", s.approveReplication)
			r.Post("/{id}/reject", s.rejectReplication)
			r.Post("/{id}/deliveries/{delivery_id}/redeliver", s.redeliver)
		})
	})
	return r
}

func (s *Server) live(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), s.ready)
	defer cancel()
	if err := s.store.Ready(ctx); err != nil {
		s.log.WarnContext(ctx, "not ready", "error", err, "request_id", middleware.GetReqID(ctx))
		s.problem(w, r, &problem{Status: http.StatusServiceUnavailable, Title: "Service Unavailable",
			Detail: "the database is unreachable or its migrations are not current"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) spec(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(s.openapi) //nolint:errcheck // the client went away
}

// accessKey keys the access log's record of a request in its context.
type accessKey struct{}

// access is what the access log learns while a request is served.
type access struct {
	// caller is who authentication admitted, "" when no one was.
	caller string
}

// logRequests logs one line per request, naming the caller, without bodies
// or headers, which may carry secrets.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		acc := &access{}
		next.ServeHTTP(ww, r.WithContext(context.WithValue(r.Context(), accessKey{}, acc)))
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", ww.Status(),
			"duration_ms", time.Since(start).Milliseconds(), "request_id", middleware.GetReqID(r.Context())}
		if acc.caller != "" {
			attrs = append(attrs, "caller", acc.caller)
		}
		s.log.InfoContext(r.Context(), "http request", attrs...)
	})
}

// recoverer turns a panic into a logged 500 problem.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "panic serving request", "panic", v,
					"request_id", middleware.GetReqID(r.Context()))
				s.problem(w, r, errInternal)
			}
		}()
		next.ServeHTTP(w, r)
	})
}
