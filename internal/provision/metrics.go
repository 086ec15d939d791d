package provision

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what the worker pool and the lifecycle do, for Prometheus. A nil *Metrics
// counts nothing.
type Metrics struct {
	steps       *prometheus.CounterVec
	stepSeconds *prometheus.HistogramVec
	finished    *prometheus.CounterVec
}

// NewMetrics registers the pool's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bucketbridge_steps_total",
			Help: "Step attempts by phase, step and outcome (succeeded, skipped, failed).",
		}, []string{"phase", "step", "status"}),
		stepSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bucketbridge_step_duration_seconds",
			Help:    "Duration of step attempts, AWS calls included.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 12), // 10 ms to about 10 min
		}, []string{"phase", "step"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bucketbridge_requests_finished_total",
			Help: "Requests that reached a terminal state, by state.",
		}, []string{"state"}),
	}
	reg.MustRegister(m.steps, m.stepSeconds, m.finished)
	return m
}

func (m *Metrics) step(phase Phase, name string, status StepStatus, d time.Duration) {
	if m == nil {
		return
	}
	m.steps.WithLabelValues(string(phase), name, string(status)).Inc()
	m.stepSeconds.WithLabelValues(string(phase), name).Observe(d.Seconds())
}

// Transitioned counts a committed transition that finished a request; the
// store calls it after each transition.
func (m *Metrics) Transitioned(c Change) {
	if m == nil || !c.To.Terminal() {
		return
	}
	m.finished.WithLabelValues(string(c.To)).Inc()
}
