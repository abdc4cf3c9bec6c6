package sqlstore

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's Prometheus collectors; a nil Registerer leaves them
// unregistered (they still count, cheaply).
type metrics struct {
	reg      prometheus.Registerer
	duration *prometheus.HistogramVec
	failures *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, driver string) *metrics {
	labels := prometheus.Labels{"driver": driver}
	m := &metrics{
		reg: reg,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace:   "kiln",
			Subsystem:   "store",
			Name:        "operation_duration_seconds",
			Help:        "Time taken by store operations, by operation.",
			ConstLabels: labels,
			// From 100µs (an indexed SQLite read) to ~3s (a writer
			// queued behind the busy timeout).
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}, []string{"op"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   "kiln",
			Subsystem:   "store",
			Name:        "operation_failures_total",
			Help:        "Store operations that failed for a reason other than the records (database errors, timeouts).",
			ConstLabels: labels,
		}, []string{"op"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.duration, m.failures} {
			if err := reg.Register(c); err != nil {
				// Already registered by an earlier store on the same
				// registry: keep counting into ours, unexported.
				continue
			}
		}
	}
	return m
}

func (m *metrics) observe(op string, start time.Time, err error) {
	m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !isStoreErr(err) {
		m.failures.WithLabelValues(op).Inc()
	}
}

func (m *metrics) unregister() {
	if m.reg != nil {
		m.reg.Unregister(m.duration)
		m.reg.Unregister(m.failures)
	}
}
