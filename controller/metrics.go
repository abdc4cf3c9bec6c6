package controller

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests        atomic.Uint64
	latency         *prometheus.HistogramVec
	errors          *prometheus.CounterVec
	loginFailures   prometheus.Counter
	stagings        *prometheus.CounterVec
	stagingsRunning prometheus.Gauge
	placements      *prometheus.CounterVec
	hmRequests      *prometheus.CounterVec
	blobsCollected  *prometheus.CounterVec
	bytesCollected  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "kiln", Subsystem: "controller", Name: "request_duration_seconds",
			Help: "REST API request latency by route.", Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "controller", Name: "api_errors_total", Help: "API errors by v1 code.",
		}, []string{"code"}),
		loginFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "controller", Name: "login_failures_total", Help: "Failed logins.",
		}),
		stagings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "controller", Name: "stagings_total", Help: "Finished stagings by result.",
		}, []string{"result"}),
		stagingsRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "kiln", Subsystem: "controller", Name: "stagings_running", Help: "Stagings in progress.",
		}),
		placements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "controller", Name: "placements_total", Help: "Instance placements by result.",
		}, []string{"result"}),
		hmRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "controller", Name: "hm_requests_total", Help: "Health manager requests by op.",
		}, []string{"op"}),
		blobsCollected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "controller", Name: "blobs_collected_total", Help: "Unreferenced blobs deleted by the garbage collector, by kind.",
		}, []string{"kind"}),
		bytesCollected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "controller", Name: "blob_bytes_collected_total", Help: "Bytes of the blobs deleted by the garbage collector, by kind.",
		}, []string{"kind"}),
	}
	if reg != nil {
		for _, col := range []prometheus.Collector{m.latency, m.errors, m.loginFailures, m.stagings, m.stagingsRunning, m.placements, m.hmRequests, m.blobsCollected, m.bytesCollected} {
			if err := reg.Register(col); err != nil {
				return nil, fmt.Errorf("controller: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) observe(route string, d time.Duration) {
	m.requests.Add(1)
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

func (m *metrics) apiError(code int) { m.errors.WithLabelValues(strconv.Itoa(code)).Inc() }

func (m *metrics) requestsTotal() uint64 { return m.requests.Load() }
