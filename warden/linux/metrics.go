package linux

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/warden/internal/hostmetrics"
)

// metrics are the backend's Prometheus instruments.
type metrics struct {
	hostmetrics.Metrics
	diskKills prometheus.Counter
	// createSeconds is the latency of Create, dominated by starting the
	// init and building the root file system.
	createSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	sub := hostmetrics.Subsystem("linux")
	m := &metrics{
		Metrics: hostmetrics.New("linux", "OOM kills in containers over their memory limit."),
		diskKills: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: hostmetrics.Namespace, Subsystem: sub, Name: "disk_kills_total",
			Help: "Containers whose processes were killed for exceeding their disk limit.",
		}),
		createSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: hostmetrics.Namespace, Subsystem: sub, Name: "create_seconds",
			Help:    "Latency of container creation.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	if err := m.Register(reg, "linux", m.diskKills, m.createSeconds); err != nil {
		return nil, err
	}
	return m, nil
}
