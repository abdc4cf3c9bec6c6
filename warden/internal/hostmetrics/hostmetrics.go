// Package hostmetrics holds the Prometheus instruments every host backend
// of warden (warden/process, warden/linux) exports, named
// kiln_warden_<backend>_..., and their registration on an injected
// prometheus.Registerer.
package hostmetrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the instruments common to the host backends.
type Metrics struct {
	// Containers is the number of containers the backend holds.
	Containers prometheus.Gauge
	// Started counts processes started in containers.
	Started prometheus.Counter
	// OOMKills counts kills for exceeding a memory limit.
	OOMKills prometheus.Counter
}

// New returns the instruments of the backend called name ("process",
// "linux"), in subsystem warden_<name>; oomHelp says what OOMKills counts
// for this backend.
func New(name, oomHelp string) Metrics {
	sub := Subsystem(name)
	return Metrics{
		Containers: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: sub, Name: "containers",
			Help: "Containers the " + name + " backend holds.",
		}),
		Started: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: sub, Name: "processes_started_total",
			Help: "Processes started in containers.",
		}),
		OOMKills: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: sub, Name: "oom_kills_total",
			Help: oomHelp,
		}),
	}
}

// Namespace is the Prometheus namespace of every kiln metric.
const Namespace = "kiln"

// Subsystem returns the subsystem of the backend called name, for the
// instruments it adds of its own.
func Subsystem(name string) string { return "warden_" + name }

// Register registers m and extra with reg, the backend called name's
// Registerer; a nil reg registers nothing.
func (m Metrics) Register(reg prometheus.Registerer, name string, extra ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range append([]prometheus.Collector{m.Containers, m.Started, m.OOMKills}, extra...) {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("%s: register metrics: %w", name, err)
		}
	}
	return nil
}
