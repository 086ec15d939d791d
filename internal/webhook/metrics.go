package webhook

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what the dispatcher does, for Prometheus. A nil *Metrics
// counts nothing.
type Metrics struct {
	deliveries     *prometheus.CounterVec
	attemptSeconds *prometheus.HistogramVec
	oldest         prometheus.Gauge
}

// Delivery outcomes, the "outcome" label of bucketbridge_webhook_deliveries_total.
const (
	outcomeDelivered = "delivered"
	outcomeGone      = "gone"    // the receiver answered 410
	outcomeExpired   = "expired" // retried past the maximum age
)

// NewMetrics registers the dispatcher's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bucketbridge_webhook_deliveries_total",
			Help: "Deliveries that finished, by event type and outcome (delivered; gone: the receiver answered 410; expired: retried past the maximum age).",
		}, []string{"type", "outcome"}),
		attemptSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bucketbridge_webhook_attempt_duration_seconds",
			Help:    "Duration of delivery attempts, by result (2xx, 3xx, 4xx, 5xx, or error when no answer came).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10), // 5 ms to about 19 s
		}, []string{"result"}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bucketbridge_webhook_oldest_pending_seconds",
			Help: "Age of the oldest delivery not yet delivered or failed (0 when there is none).",
		}),
	}
	reg.MustRegister(m.deliveries, m.attemptSeconds, m.oldest)
	return m
}

func (m *Metrics) attempt(r Result) {
	if m == nil {
		return
	}
	result := "error"
	if r.Err == nil {
		result = strconv.Itoa(r.StatusCode/100) + "xx"
	}
	m.attemptSeconds.WithLabelValues(result).Observe(r.Duration.Seconds())
}

func (m *Metrics) finished(t EventType, outcome string) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(string(t), outcome).Inc()
}

func (m *Metrics) oldestPending(age time.Duration) {
	if m == nil {
		return
	}
	m.oldest.Set(max(age, 0).Seconds())
}
