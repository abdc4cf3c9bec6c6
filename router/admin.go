package router

import (
	"encoding/json"
	"net/http"
	"runtime"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler serves the router's status endpoints, meant for a separate
// listener: GET /healthz ("ok"), GET /varz (JSON: the component record
// and counters, as the original components had) and GET /metrics
// (Prometheus).
func (r *Router) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /varz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Varz())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.metrics.registry, promhttp.HandlerOpts{}))
	return mux
}

// Varz is the router's /varz document.
type Varz struct {
	Type             string            `json:"type"`
	Index            int               `json:"index"`
	UUID             string            `json:"uuid"`
	Host             string            `json:"host"`
	Start            string            `json:"start"`
	Uptime           string            `json:"uptime"`
	NumCores         int               `json:"num_cores"`
	Mem              uint64            `json:"mem"` // KB of Go heap in use
	Requests         uint64            `json:"requests"`
	BadRequests      uint64            `json:"bad_requests"`
	URLs             int               `json:"urls"`
	Droplets         int               `json:"droplets"`
	Responses        map[string]uint64 `json:"responses"`
	RouterErrors     map[string]uint64 `json:"router_errors"`
	BackendErrors    uint64            `json:"backend_errors"`
	Registrations    uint64            `json:"registrations"`
	BadRegistrations uint64            `json:"bad_registrations"`
	PrunedEndpoints  uint64            `json:"pruned_endpoints"`
	PruneSuspended   uint64            `json:"prune_suspended"`
	AccessLogDropped uint64            `json:"access_log_dropped"`
}

// Varz returns the counters /varz serves.
func (r *Router) Varz() Varz {
	c := r.Component()
	m := r.metrics
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	v := Varz{
		Type: c.Type, Index: c.Index, UUID: c.UUID, Host: c.Host, Start: c.Start, Uptime: c.Uptime,
		NumCores: runtime.NumCPU(), Mem: ms.HeapInuse / 1024,
		Requests: m.requests(), BadRequests: m.badRequest.Load(),
		URLs: r.table.Routes(), Droplets: r.table.Endpoints(),
		Responses: map[string]uint64{
			"responses_xxx": m.classes[0].Load(), "responses_1xx": m.classes[1].Load(), "responses_2xx": m.classes[2].Load(),
			"responses_3xx": m.classes[3].Load(), "responses_4xx": m.classes[4].Load(), "responses_5xx": m.classes[5].Load(),
		},
		RouterErrors: map[string]uint64{
			"unknown_route": m.notFound.Load(), "no_endpoint": m.noEndpoint.Load(), "bad_gateway": m.badGateway.Load(),
		},
		BackendErrors: m.backendErrors.Load(), Registrations: m.registrations.Load(),
		BadRegistrations: m.badRegistrations.Load(), PrunedEndpoints: m.prunedEndpoints.Load(),
		PruneSuspended: m.pruneSuspended.Load(),
	}
	if r.access != nil {
		v.AccessLogDropped = r.access.Dropped()
	}
	return v
}
