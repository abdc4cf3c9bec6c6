package healthmgr

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the manager's Prometheus collectors.
type metrics struct {
	drift        *prometheus.CounterVec
	requests     *prometheus.CounterVec
	suppressed   *prometheus.CounterVec
	analysis     *prometheus.HistogramVec
	badMessages  *prometheus.CounterVec
	desiredLoads *prometheus.CounterVec
	crashes      prometheus.Counter
	deasLost     prometheus.Counter
	apps         prometheus.Gauge
	instances    prometheus.Gauge
	deas         prometheus.Gauge
	leader       prometheus.Gauge
	peers        prometheus.Gauge
	desiredUp    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "kiln", "healthmgr"
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, labels)
	}
	single := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
	}
	m := &metrics{
		drift:        counter("drift_total", "Indices to start and instances to stop found by analysis passes, by reason (a finding held back is found again by the next pass).", "reason"),
		requests:     counter("requests_total", "Requests sent to the controllers, by op and reason.", "op", "reason"),
		suppressed:   counter("requests_suppressed_total", "Requests found but not sent, by why.", "why"),
		badMessages:  counter("bad_messages_total", "Bus messages dropped as malformed, by subject.", "subject"),
		desiredLoads: counter("desired_loads_total", "Desired-state reloads, by kind (all, app) and result.", "kind", "result"),
		analysis: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "analysis_seconds",
			Help: "Time of one analysis pass (drift and bookkeeping, not sending), by pass (full, changes).",
			// 25 µs (one app) to 0.8 s (a million instances).
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16),
		}, []string{"pass"}),
		crashes:   single("crashes_total", "Crashes recorded from exits and heartbeats."),
		deasLost:  single("deas_lost_total", "DEAs declared gone after a heartbeat TTL of silence."),
		apps:      gauge("apps", "Apps known from desired or actual state."),
		instances: gauge("instances", "Instances known from heartbeats."),
		deas:      gauge("deas", "DEAs heard from within the heartbeat TTL."),
		leader:    gauge("leader", "1 while this manager may send requests."),
		peers:     gauge("peers", "Health managers heard on the lease subject, this one included."),
		desiredUp: gauge("desired_up", "1 while the last desired-state read succeeded."),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.drift, m.requests, m.suppressed, m.analysis, m.badMessages, m.desiredLoads,
		m.crashes, m.deasLost, m.apps, m.instances, m.deas, m.leader, m.peers, m.desiredUp,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("healthmgr: register metrics: %w", err)
		}
	}
	return m, nil
}
