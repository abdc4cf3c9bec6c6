// Package router is kiln's HTTP router: a reverse proxy in front of every
// app instance and component, fed by router.register and router.unregister
// messages on the bus.
//
// A Router keeps the route table (package router/table), announces itself
// with router.start so registrars re-register, prunes endpoints that stop
// refreshing (never while the bus is down: the last known table keeps
// serving), and proxies requests with random or least-in-flight balancing,
// sticky sessions, bounded retries on connection failures and clear
// 404/503/502 answers. It serves through Serve (a tuned HTTP/1.1 server for
// a listener of its own, with optional TLS) or Handler (a net/http handler
// for embedding, HTTP/2 or custom TLS); both share the table, selection and
// header rules. Its access log is package router/accesslog.
package router

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/router/accesslog"
	"github.com/kiln-paas/kiln/router/table"
)

// Version is the router version announced in router.start.
const Version = 1.0

// Deps are a Router's dependencies.
type Deps struct {
	// Bus carries registrations; required.
	Bus bus.Bus
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the router's Prometheus metrics; nil registers
	// them nowhere (AdminHandler still serves them).
	Registerer prometheus.Registerer
	// Clock drives pruning and router.start; nil is the system clock.
	Clock Clock
}

// Router is a bus-fed HTTP router. Create it with New; run its bus side
// with Run and serve requests with Serve or Handler.
type Router struct {
	cfg     Config
	bus     bus.Bus
	log     *slog.Logger
	clock   Clock
	table   *table.Table
	metrics *metrics
	access  *accesslog.Logger // nil when disabled
	started time.Time
	uuid    string

	backends sync.Map // addr -> *fastBackend, for the Serve path
	httpTr   *http.Transport
	ids      idGen
	tun      tunnels

	running atomic.Bool
	mu      sync.Mutex // guards busDown and lastReconnects
	busDown bool
	lastRec uint64
}

// New returns a Router after validating cfg (errors wrap ErrBadConfig). It starts
// no goroutine until Run or Serve.
func New(cfg Config, d Deps) (*Router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Bus == nil {
		return nil, fmt.Errorf("%w: nil bus", ErrBadConfig)
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Clock == nil {
		d.Clock = systemClock{}
	}
	if cfg.ID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:]) // never fails
		cfg.ID = hex.EncodeToString(b[:])
	}
	r := &Router{
		cfg:     cfg,
		bus:     d.Bus,
		log:     d.Logger,
		clock:   d.Clock,
		table:   table.New(),
		started: d.Clock.Now(),
		uuid:    strconv.Itoa(cfg.Index) + "-" + cfg.ID,
	}
	if cfg.AccessLog != nil {
		r.access = accesslog.New(cfg.AccessLog, 0)
	}
	r.httpTr = r.newTransport()
	m, err := newMetrics(r, d.Registerer)
	if err != nil {
		return nil, err
	}
	r.metrics = m
	return r, nil
}

// Table returns the router's route table, for inspection.
func (r *Router) Table() *table.Table { return r.table }

// Hello returns the router.start message of this router.
func (r *Router) Hello() protocol.RouterHello {
	return protocol.RouterHello{
		ID:                               r.cfg.ID,
		Version:                          Version,
		Hosts:                            r.cfg.Hosts,
		MinimumRegisterIntervalInSeconds: int(r.cfg.RegisterInterval / time.Second),
		PruneThresholdInSeconds:          int(r.cfg.PruneThreshold / time.Second),
	}
}

// Component returns the router's vcap.component.discover record.
func (r *Router) Component() protocol.Component {
	host := ""
	if len(r.cfg.Hosts) > 0 {
		host = r.cfg.Hosts[0]
	}
	up := r.clock.Now().Sub(r.started)
	return protocol.Component{
		Type:  "Router",
		Index: r.cfg.Index,
		UUID:  r.uuid,
		Host:  host,
		Start: r.started.UTC().Format(time.RFC3339),
		Uptime: fmt.Sprintf("%dd:%dh:%dm:%ds", int(up.Hours())/24, int(up.Hours())%24,
			int(up.Minutes())%60, int(up.Seconds())%60),
	}
}

// Register applies a router.register message: every URI gains (or
// refreshes) the endpoint. Invalid messages are refused with an error
// wrapping protocol.ErrInvalid and counted.
func (r *Router) Register(m *protocol.Register) error {
	if err := m.Validate(); err != nil {
		r.metrics.badRegistrations.Add(1)
		return err
	}
	info := endpointInfo(m)
	now := r.clock.Now()
	for _, u := range m.URIs {
		if r.table.Upsert(u, info, now) {
			r.metrics.registrations.Add(1)
			r.log.Debug("endpoint-registered", "uri", u, "addr", info.Addr, "app", info.AppID)
		} else {
			r.metrics.refreshes.Add(1)
		}
	}
	return nil
}

// Unregister applies a router.unregister message.
func (r *Router) Unregister(m *protocol.Register) error {
	if err := m.Validate(); err != nil {
		r.metrics.badRegistrations.Add(1)
		return err
	}
	addr := m.Addr()
	now := r.clock.Now()
	for _, u := range m.URIs {
		if r.table.Remove(u, addr, now) {
			r.metrics.unregistrations.Add(1)
			r.log.Debug("endpoint-unregistered", "uri", u, "addr", addr)
		}
	}
	return nil
}

func endpointInfo(m *protocol.Register) table.EndpointInfo {
	idx := -1
	if n, err := strconv.Atoi(m.PrivateInstanceIndex); err == nil && n >= 0 {
		idx = n
	}
	return table.EndpointInfo{
		Addr:              m.Addr(),
		AppID:             string(m.App),
		PrivateInstanceID: m.PrivateInstanceID,
		Index:             idx,
		Tags:              m.Tags,
	}
}

// Run subscribes to the router's subjects, publishes router.start at once
// and every StartInterval, prunes stale endpoints every PruneInterval
// (suspending pruning while the bus is down) and writes the access log. It
// returns nil after ctx ends, or an error if subscribing fails. Run may be
// called once.
func (r *Router) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("router: Run called twice")
	}
	subs, err := r.subscribe()
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe() // the bus may already be closed
		}
	}()
	if err != nil {
		return err
	}
	r.publishStart("boot")

	g, ctx := errgroup.WithContext(ctx)
	if r.access != nil {
		g.Go(func() error {
			if err := r.access.Run(ctx); err != nil {
				r.log.Error("access-log-failed", "err", err)
			}
			return nil
		})
	}
	g.Go(func() error { r.loop(ctx); return nil })
	return g.Wait()
}

func (r *Router) subscribe() ([]bus.Subscription, error) {
	var subs []bus.Subscription
	for _, s := range []struct {
		subject string
		h       bus.Handler
	}{
		{protocol.RouterRegister, r.onRegister},
		{protocol.RouterUnregister, r.onUnregister},
		{protocol.RouterGreet, r.onGreet},
		{protocol.ComponentDiscover, r.onDiscover},
	} {
		sub, err := r.bus.Subscribe(s.subject, s.h)
		if err != nil {
			return subs, fmt.Errorf("router: subscribe %s: %w", s.subject, err)
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

func (r *Router) onRegister(m *bus.Msg) {
	msg, err := protocol.Decode[protocol.Register](m.Data)
	if err == nil {
		err = r.Register(&msg)
	} else {
		r.metrics.badRegistrations.Add(1)
	}
	if err != nil {
		r.log.Warn("registration-dropped", "subject", m.Subject, "err", err)
	}
}

func (r *Router) onUnregister(m *bus.Msg) {
	msg, err := protocol.Decode[protocol.Register](m.Data)
	if err == nil {
		err = r.Unregister(&msg)
	} else {
		r.metrics.badRegistrations.Add(1)
	}
	if err != nil {
		r.log.Warn("unregistration-dropped", "subject", m.Subject, "err", err)
	}
}

func (r *Router) onGreet(m *bus.Msg) {
	if err := bus.RespondJSON(r.bus, m, r.Hello()); err != nil {
		r.log.Warn("greet-reply-failed", "err", err)
	}
}

func (r *Router) onDiscover(m *bus.Msg) {
	if err := bus.RespondJSON(r.bus, m, r.Component()); err != nil {
		r.log.Warn("discover-reply-failed", "err", err)
	}
}

func (r *Router) publishStart(why string) {
	if err := bus.PublishJSON(r.bus, protocol.RouterStart, r.Hello()); err != nil {
		r.log.Warn("router-start-failed", "reason", why, "err", err)
		return
	}
	r.log.Debug("router-start-published", "reason", why)
}

func (r *Router) loop(ctx context.Context) {
	prune := r.clock.NewTicker(r.cfg.PruneInterval)
	defer prune.Stop()
	start := r.clock.NewTicker(r.cfg.StartInterval)
	defer start.Stop()
	r.lastRec = r.bus.Stats().Reconnects
	for {
		select {
		case <-ctx.Done():
			return
		case <-prune.C():
			r.Prune()
		case <-start.C():
			r.publishStart("interval")
		}
	}
}

// Prune removes stale endpoints now, unless the bus is down. When the bus
// has come back since the last call (it was seen down, or it reconnected in
// between), every endpoint is refreshed instead and router.start published,
// so registrars re-register before anything they refreshed during the
// outage can be pruned. Run calls it every PruneInterval; it returns the
// number of endpoints removed.
func (r *Router) Prune() int {
	st := r.bus.Stats()
	now := r.clock.Now()
	r.mu.Lock()
	reconnected := st.Reconnects != r.lastRec
	r.lastRec = st.Reconnects
	wasDown := r.busDown
	r.busDown = !st.Connected
	r.mu.Unlock()
	switch {
	case !st.Connected:
		r.metrics.pruneSuspended.Add(1)
		if !wasDown {
			r.log.Warn("prune-suspended", "endpoints", r.table.Endpoints())
		}
		return 0
	case wasDown || reconnected:
		r.table.Touch(now)
		r.log.Info("prune-resumed", "endpoints", r.table.Endpoints())
		r.publishStart("reconnect")
		return 0
	}
	res := r.table.Prune(now, r.cfg.PruneThreshold, r.cfg.EmptyRouteGrace)
	r.metrics.prunedEndpoints.Add(uint64(res.Endpoints))
	r.metrics.prunedRoutes.Add(uint64(res.Routes))
	r.pruneBackends()
	if res.Endpoints > 0 || res.Routes > 0 {
		r.log.Info("endpoints-pruned", "endpoints", res.Endpoints, "routes", res.Routes)
	}
	return res.Endpoints
}

// pruneBackends closes connection pools of addresses no longer routed.
func (r *Router) pruneBackends() {
	live := map[string]bool{}
	r.table.Walk(func(p *table.Pool) {
		for _, e := range p.Endpoints() {
			live[e.Addr] = true
		}
	})
	r.backends.Range(func(k, v any) bool {
		if !live[k.(string)] {
			r.backends.Delete(k)
			v.(*fastBackend).close()
		}
		return true
	})
}

// dialer returns a dialer honouring DialTimeout.
func (r *Router) dialer() *net.Dialer {
	return &net.Dialer{Timeout: r.cfg.DialTimeout, KeepAlive: 30 * time.Second}
}
