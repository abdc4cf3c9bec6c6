package linux

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the backend's Prometheus instruments.
type metrics struct {
	containers prometheus.Gauge
	started    prometheus.Counter
	oomKills   prometheus.Counter
	diskKills  prometheus.Counter
	// createSeconds is the latency of Create, dominated by starting the
	// init and building the root file system.
	createSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		containers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "kiln", Subsystem: "warden_linux", Name: "containers",
			Help: "Containers the linux backend holds.",
		}),
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "warden_linux", Name: "processes_started_total",
			Help: "Processes started in containers.",
		}),
		oomKills: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "warden_linux", Name: "oom_kills_total",
			Help: "OOM kills in containers over their memory limit.",
		}),
		diskKills: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "warden_linux", Name: "disk_kills_total",
			Help: "Containers whose processes were killed for exceeding their disk limit.",
		}),
		createSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "kiln", Subsystem: "warden_linux", Name: "create_seconds",
			Help:    "Latency of container creation.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.containers, m.started, m.oomKills, m.diskKills, m.createSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("linux: register metrics: %w", err)
		}
	}
	return m, nil
}
