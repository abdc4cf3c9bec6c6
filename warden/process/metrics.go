package process

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the backend's Prometheus instruments.
type metrics struct {
	containers prometheus.Gauge
	started    prometheus.Counter
	oomKills   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		containers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "kiln", Subsystem: "warden_process", Name: "containers",
			Help: "Containers the process backend holds.",
		}),
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "warden_process", Name: "processes_started_total",
			Help: "Processes started in containers.",
		}),
		oomKills: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "warden_process", Name: "oom_kills_total",
			Help: "Containers killed for exceeding their memory limit.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.containers, m.started, m.oomKills} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("process: register metrics: %w", err)
		}
	}
	return m, nil
}
