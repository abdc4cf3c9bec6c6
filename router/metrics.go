package router

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are plain atomics on the request path, exposed to Prometheus
// through CounterFuncs so a request costs a few atomic adds, plus one
// histogram observation for latency.
type metrics struct {
	classes [6]atomic.Uint64 // responses by status class; [0] is anything else

	notFound, noEndpoint, badGateway, badRequest atomic.Uint64
	backendErrors                                atomic.Uint64

	registrations, refreshes, unregistrations, badRegistrations atomic.Uint64
	prunedEndpoints, prunedRoutes, pruneSuspended               atomic.Uint64

	latency  prometheus.Histogram
	registry *prometheus.Registry // served by AdminHandler
}

func (m *metrics) requests() uint64 {
	var n uint64
	for i := range m.classes {
		n += m.classes[i].Load()
	}
	return n
}

func (m *metrics) observe(status int, d time.Duration) {
	c := status / 100
	if c < 1 || c > 5 {
		c = 0
	}
	m.classes[c].Add(1)
	m.latency.Observe(d.Seconds())
}

func newMetrics(r *Router, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{registry: prometheus.NewRegistry()}
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "kiln", Subsystem: "router", Name: "request_duration_seconds",
		Help:    "Time from receiving a request to having its response headers from the backend.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	counter := func(name, help string, labels prometheus.Labels, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "router", Name: name, Help: help, ConstLabels: labels,
		}, func() float64 { return float64(v.Load()) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "kiln", Subsystem: "router", Name: name, Help: help}, f)
	}
	cs := []prometheus.Collector{m.latency}
	for i, class := range []string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		cs = append(cs, counter("requests_total", "Requests answered, by status class.", prometheus.Labels{"class": class}, &m.classes[i]))
	}
	for reason, v := range map[string]*atomic.Uint64{
		"unknown_route": &m.notFound, "no_endpoint": &m.noEndpoint, "bad_gateway": &m.badGateway, "bad_request": &m.badRequest,
	} {
		cs = append(cs, counter("router_errors_total", "Requests the router answered itself, by reason.", prometheus.Labels{"reason": reason}, v))
	}
	cs = append(cs,
		counter("backend_errors_total", "Failed attempts to reach a backend (connect or transport errors).", nil, &m.backendErrors),
		counter("registrations_total", "Endpoints added by router.register.", nil, &m.registrations),
		counter("refreshes_total", "Endpoints refreshed by router.register.", nil, &m.refreshes),
		counter("unregistrations_total", "Endpoints removed by router.unregister.", nil, &m.unregistrations),
		counter("bad_registrations_total", "router.register or router.unregister messages dropped as invalid.", nil, &m.badRegistrations),
		counter("pruned_endpoints_total", "Endpoints pruned for not re-registering in time.", nil, &m.prunedEndpoints),
		counter("pruned_routes_total", "Routes forgotten after staying empty past the grace period.", nil, &m.prunedRoutes),
		counter("prune_suspended_total", "Prune rounds skipped because the bus was down.", nil, &m.pruneSuspended),
		gauge("routes", "Routes in the table.", func() float64 { return float64(r.table.Routes()) }),
		gauge("endpoints", "Endpoints in the table.", func() float64 { return float64(r.table.Endpoints()) }),
	)
	if r.access != nil {
		cs = append(cs, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "router", Name: "access_log_dropped_total",
			Help: "Access log lines dropped because the writer fell behind.",
		}, func() float64 { return float64(r.access.Dropped()) }))
	}
	for _, c := range cs {
		if err := m.registry.Register(c); err != nil {
			return nil, fmt.Errorf("router: metrics: %w", err)
		}
		if reg != nil {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("router: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
