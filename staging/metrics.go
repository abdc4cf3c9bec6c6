package staging

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the stager's Prometheus metrics.
type metrics struct {
	results  *prometheus.CounterVec
	duration prometheus.Histogram
}

// newMetrics makes the metrics and registers them with reg unless it is
// nil; registering fails if reg already holds metrics of the same names
// (another Stager's).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "staging", Name: "stagings_total",
			Help: "Stagings finished, by result (ok or the failure's kind).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "kiln", Subsystem: "staging", Name: "duration_seconds",
			Help: "Wall time of stagings, successful or not.",
			// From a cached static site (well under a second) to a cold
			// build of a large app (minutes).
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 12),
		}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.results); err != nil {
		return nil, fmt.Errorf("staging: register metrics: %w", err)
	}
	if err := reg.Register(m.duration); err != nil {
		reg.Unregister(m.results)
		return nil, fmt.Errorf("staging: register metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) observe(err error, d time.Duration) {
	m.duration.Observe(d.Seconds())
	m.results.WithLabelValues(resultLabel(err)).Inc()
}

func resultLabel(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrBadPackage):
		return "bad_package"
	case errors.Is(err, ErrNoBuildpack):
		return "no_buildpack"
	case errors.Is(err, ErrCompileFailed):
		return "compile_failed"
	case errors.Is(err, ErrReleaseInvalid):
		return "release_invalid"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	}
	return "error"
}
