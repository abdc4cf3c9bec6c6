package dea

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	messages        *prometheus.CounterVec
	badMessages     *prometheus.CounterVec
	discoverReplies prometheus.Counter
	discoverDecline *prometheus.CounterVec
	starts          *prometheus.CounterVec
	startSeconds    prometheus.Histogram
	crashes         prometheus.Counter
	stops           prometheus.Counter
	logLines        prometheus.Counter
	logDropped      prometheus.Counter
	dropletFetches  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, d *DEA) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_dea_messages_total", Help: "Bus messages handled, by subject.",
		}, []string{"subject"}),
		badMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_dea_bad_messages_total", Help: "Malformed or invalid bus messages dropped, by subject.",
		}, []string{"subject"}),
		discoverReplies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kiln_dea_discover_replies_total", Help: "dea.discover requests answered.",
		}),
		discoverDecline: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_dea_discover_declined_total", Help: "dea.discover requests left unanswered, by reason.",
		}, []string{"reason"}),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_dea_starts_total", Help: "Instance starts, by result (running, failed, refused).",
		}, []string{"result"}),
		startSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kiln_dea_start_seconds", Help: "Time from start message to RUNNING.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
		crashes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kiln_dea_crashes_total", Help: "Instances that exited without being asked to.",
		}),
		stops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kiln_dea_stops_total", Help: "Instances stopped on request.",
		}),
		logLines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kiln_dea_log_lines_total", Help: "App log lines published on the bus.",
		}),
		logDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kiln_dea_log_lines_dropped_total", Help: "App log lines dropped by the per-instance rate limit.",
		}),
		dropletFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kiln_dea_droplet_fetches_total", Help: "Droplet lookups, by result (hit, miss).",
		}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	gauges := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kiln_dea_reserved_memory_mb", Help: "Memory reserved by instances and discover holds.",
		}, func() float64 { l := d.load(); return float64(l.MemoryMB + l.HeldMemoryMB) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kiln_dea_cpu_load", Help: "Host CPU utilisation (0 to 1) used in placement and adverts.",
		}, func() float64 { return d.load().CPU }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kiln_dea_instances", Help: "Instances tracked, in every state.",
		}, func() float64 { return float64(d.instanceCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kiln_dea_droplet_cache_bytes", Help: "Bytes in the droplet cache.",
		}, func() float64 { n, _ := d.cache.size(); return float64(n) }),
	}
	for _, c := range append(gauges, m.messages, m.badMessages, m.discoverReplies, m.discoverDecline,
		m.starts, m.startSeconds, m.crashes, m.stops, m.logLines, m.logDropped, m.dropletFetches) {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("dea: metrics already registered (one Registerer per DEA): %w", err)
			}
			return nil, fmt.Errorf("dea: register metrics: %w", err)
		}
	}
	return m, nil
}
