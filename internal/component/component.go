// Package component gives every kiln role what the original components all
// had: an identity announced on the bus (vcap.component.announce, answers to
// vcap.component.discover) and a status endpoint with /healthz, /varz and
// Prometheus /metrics.
package component

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

// Config describes a component.
type Config struct {
	// Type is the component type: "DEA", "Router", "CloudController",
	// "HealthManager", or another name.
	Type string
	// Index distinguishes components of one type (default 0).
	Index int
	// UUID is the component's id; empty means a fresh "<index>-<hex>" id.
	UUID string
	// Host is the status endpoint's "ip:port" as others should reach it.
	Host string
	// User and Password protect /varz (not /healthz) with basic auth when
	// both are set.
	User, Password string
	// Logger receives the component's own log lines; nil discards them.
	Logger *slog.Logger
}

// Component is a running component's identity and status.
type Component struct {
	cfg   Config
	start time.Time
	log   *slog.Logger

	mu      sync.Mutex
	varzAt  time.Time
	varz    []byte
	healthy func() error
	extra   func() map[string]any
}

// New returns a component with cfg. healthy reports whether the component
// can serve (nil = always healthy); extra returns the component-specific
// /varz fields (nil = none).
func New(cfg Config, healthy func() error, extra func() map[string]any) *Component {
	if cfg.UUID == "" {
		cfg.UUID = fmt.Sprintf("%d-%s", cfg.Index, strings.ReplaceAll(uuid.NewString(), "-", ""))
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Component{cfg: cfg, start: time.Now(), log: log, healthy: healthy, extra: extra}
}

// UUID returns the component's id.
func (c *Component) UUID() string { return c.cfg.UUID }

// Record returns the component's discover record with its current uptime.
func (c *Component) Record() protocol.Component {
	var creds []string
	if c.cfg.User != "" {
		creds = []string{c.cfg.User, c.cfg.Password}
	}
	return protocol.Component{
		Type:        c.cfg.Type,
		Index:       c.cfg.Index,
		UUID:        c.cfg.UUID,
		Host:        c.cfg.Host,
		Credentials: creds,
		Start:       c.start.UTC().Format(time.RFC3339),
		Uptime:      Uptime(time.Since(c.start)),
	}
}

// Uptime formats d as the original components did: "<d>d:<h>h:<m>m:<s>s".
func Uptime(d time.Duration) string {
	s := int64(d / time.Second)
	return fmt.Sprintf("%dd:%dh:%dm:%ds", s/86400, s%86400/3600, s%3600/60, s%60)
}

// Announce publishes the record on vcap.component.announce and answers
// vcap.component.discover until ctx ends.
func (c *Component) Announce(ctx context.Context, b bus.Bus) error {
	sub, err := b.Subscribe(protocol.ComponentDiscover, func(m *bus.Msg) {
		if m.Reply == "" {
			return
		}
		if err := bus.RespondJSON(b, m, c.Record()); err != nil {
			c.log.Warn("component-discover-reply-failed", "error", err)
		}
	})
	if err != nil {
		return fmt.Errorf("component %s: subscribe discover: %w", c.cfg.Type, err)
	}
	if err := bus.PublishJSON(b, protocol.ComponentAnnounce, c.Record()); err != nil {
		c.log.Warn("component-announce-failed", "error", err)
	}
	<-ctx.Done()
	_ = sub.Unsubscribe()
	return nil
}

// Handler serves /healthz, /varz and, when g is not nil, /metrics.
func (c *Component) Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", c.serveHealthz)
	mux.HandleFunc("GET /varz", c.auth(c.serveVarz))
	if g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	return mux
}

func (c *Component) auth(h http.HandlerFunc) http.HandlerFunc {
	if c.cfg.User == "" || c.cfg.Password == "" {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(c.cfg.User)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(c.cfg.Password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+c.cfg.Type+`"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

func (c *Component) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if c.healthy != nil {
		if err := c.healthy(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "unhealthy", "error": err.Error()})
			return
		}
	}
	_, _ = w.Write([]byte("ok\n"))
}

func (c *Component) serveVarz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(c.Varz())
}

// Varz returns the /varz document, recomputed at most once per second as
// the original components did.
func (c *Component) Varz() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.varz != nil && time.Since(c.varzAt) < time.Second {
		return c.varz
	}
	rec := c.Record()
	v := map[string]any{
		"type":      rec.Type,
		"index":     rec.Index,
		"uuid":      rec.UUID,
		"host":      rec.Host,
		"start":     rec.Start,
		"uptime":    rec.Uptime,
		"num_cores": runtime.NumCPU(),
		"mem":       rssKB(),
		"cpu":       cpuPercent(time.Since(c.start)),
	}
	if c.extra != nil {
		for k, x := range c.extra() {
			v[k] = x
		}
	}
	data, err := json.Marshal(v)
	if err != nil {
		data = []byte(`{"error":"varz encoding failed"}`)
	}
	c.varz, c.varzAt = data, time.Now()
	return data
}

// rssKB reads the resident set size from /proc; 0 where unavailable.
func rssKB() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// cpuPercent is the process's average CPU use since it started.
func cpuPercent(up time.Duration) float64 {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil || up <= 0 {
		return 0
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	const ticks = 100 // USER_HZ on Linux
	return (ut + st) / ticks / up.Seconds() * 100
}
