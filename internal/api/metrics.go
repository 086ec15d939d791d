package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpMetrics counts API requests by route pattern (never by raw path, so
// ids do not make new series), method and status, each of which takes a
// bounded set of values whatever clients send.
type httpMetrics struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
	// streams counts the open event streams.
	streams prometheus.Gauge
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bucketbridge_http_requests_total",
			Help: "HTTP requests by method, route and status.",
		}, []string{"method", "route", "status"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bucketbridge_http_request_duration_seconds",
			Help:    "HTTP request durations by method and route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bucketbridge_event_streams",
			Help: "Event streams open in this process (at most BB_SSE_MAX).",
		}),
	}
	reg.MustRegister(m.requests, m.seconds, m.streams)
	return m
}

// instrument records every request once routing has named its route.
func (m *httpMetrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			// A mounted router's root reads "/v1/replications/" or without
			// the slash; one series is enough.
			route = rc.RoutePattern()
			if len(route) > 1 {
				route = strings.TrimSuffix(route, "/")
			}
		}
		method := methodLabel(r.Method)
		m.requests.WithLabelValues(method, route, statusLabel(ww.Status())).Inc()
		m.seconds.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
	})
}

// methodLabel keeps the methods of RFC 9110 and folds every other token a
// client may send into OTHER: each label value is a series kept for the
// life of the process, so a label a client chooses must take few values.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "OTHER"
}

// statusLabel is the response's status code; the handlers choose it, but
// anything outside the codes HTTP defines is folded too.
func statusLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}

func metricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
