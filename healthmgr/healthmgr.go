// Package healthmgr is the health manager agent: it watches what runs, compares
// it with what the controller wants, and asks the controller to fix the
// difference. It never changes anything itself (PROTOCOL.md §4.1).
//
// Actual state comes from the bus: dea.heartbeat (instances and their
// states), droplet.exited (crashes and stops, acted on at once) and
// dea.advertise (which DEAs are alive). Desired state comes from a
// DesiredSource, by default the controller's bulk API (NewBulkSource),
// reloaded periodically and on droplet.updated notices. The pure core
// healthmgr/drift compares the two on every relevant change and on a
// timer; the resulting START and STOP requests go to the controllers on
// cloudcontrollers.hm.requests, carrying the version, last_updated and
// indices or instance ids the controller needs to validate and
// de-duplicate them.
//
// The manager answers healthmanager.status (flapping indices, crashed
// instances) and healthmanager.health (running counts) for the controller.
// Several managers may share a bus: with Config.LeaderElection they elect
// the oldest as the only one that sends requests.
package healthmgr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/healthmgr/drift"
	"github.com/kiln-paas/kiln/internal/component"
)

// Manager is a health manager. Create it with New and start it with Run.
type Manager struct {
	cfg    Config
	bus    bus.Bus
	src    DesiredSource
	appSrc AppSource // src, when it can read one app
	log    *slog.Logger
	clock  Clock
	m      *metrics
	comp   *component.Component
	gather prometheus.Gatherer

	running atomic.Bool

	// Signals to the loops; each has room for one pending signal.
	kickSoon  chan struct{} // analyse changed apps after AnalysisDebounce
	kickFull  chan struct{} // full pass at once
	reloadAll chan struct{} // full desired reload after ReloadDebounce
	reloadApp chan string   // one app's desired reload

	// Analysis passes (see pass): fullMu lets one full pass run at a
	// time; sendMu is held while a pass sends, taken before mu is
	// released. Lock order: fullMu, mu, sendMu.
	fullMu sync.Mutex
	sendMu sync.Mutex

	mu    sync.Mutex
	apps  map[string]*appState
	hist  *drift.History
	deas  map[string]time.Time // DEA id → last heard
	gone  map[string]time.Time // exited instance id → last mentioned
	dirty map[string]struct{}  // apps changed since their last analysis
	// Desired-state health: loaded once, and whether the last read worked.
	desiredLoaded, desiredOK bool
	desiredAt                time.Time
	// Acting: the manager sends requests only from actFrom on, while the
	// bus is up, and while it leads.
	startedAt, actFrom time.Time
	busUp, leading     bool
	peers              map[string]peer
	lastPass           time.Time
	// Scratch for full passes' inputs, reused from pass to pass; guarded
	// by fullMu (a pass reads them without mu).
	desiredBuf []drift.App
	actualBuf  []drift.Instance
}

// New returns a manager; Run starts it. deps.Bus and deps.Desired are
// required. The manager owns none of its dependencies: it neither closes the
// bus nor stops the source.
func New(cfg Config, deps Deps) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Bus == nil || deps.Desired == nil {
		return nil, fmt.Errorf("%w: Deps.Bus and Deps.Desired are required", ErrMissingDependency)
	}
	met, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:       cfg,
		bus:       deps.Bus,
		src:       deps.Desired,
		log:       deps.Logger,
		clock:     deps.Clock,
		m:         met,
		kickSoon:  make(chan struct{}, 1),
		kickFull:  make(chan struct{}, 1),
		reloadAll: make(chan struct{}, 1),
		// Enough for a burst of app updates; beyond it a full reload
		// covers the rest.
		reloadApp: make(chan string, 256),
		apps:      make(map[string]*appState),
		hist:      drift.NewHistory(),
		deas:      make(map[string]time.Time),
		gone:      make(map[string]time.Time),
		dirty:     make(map[string]struct{}),
		peers:     make(map[string]peer),
		busUp:     true,
	}
	m.appSrc, _ = deps.Desired.(AppSource)
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.clock == nil {
		m.clock = SystemClock{}
	}
	m.gather, _ = deps.Registerer.(prometheus.Gatherer)
	m.comp = component.New(component.Config{
		Type: "HealthManager", Index: cfg.Index, Host: cfg.Host,
		User: cfg.StatusUser, Password: cfg.StatusPassword, Logger: m.log,
	}, m.healthy, m.varz)
	return m, nil
}

// ID returns the manager's component id, also its identity in leader
// election.
func (m *Manager) ID() string { return m.comp.UUID() }

// Handler serves /healthz, /varz and, when Deps.Registerer is a
// prometheus.Gatherer, /metrics.
func (m *Manager) Handler() http.Handler { return m.comp.Handler(m.gather) }

// Run subscribes to the bus, publishes healthmanager.start so DEAs
// heartbeat at once, announces the component, and keeps the manager
// running until ctx ends; it then unsubscribes and returns nil. A Manager
// runs once; a second call returns ErrRunning.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	now := m.clock.Now()
	m.mu.Lock()
	m.startedAt, m.actFrom = now, now.Add(m.cfg.StartupWait)
	m.mu.Unlock()

	subs, err := m.subscribe()
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe() // the bus may be closed already
		}
	}()
	if err != nil {
		return err
	}
	if cn, ok := m.bus.(bus.ConnectionNotifier); ok {
		defer cn.OnConnectionChange(m.onConnection)()
	}
	m.log.Info("healthmgr-starting", "id", m.ID(), "startup_wait", m.cfg.StartupWait, "leader_election", m.cfg.LeaderElection)
	m.publish(protocol.HealthManagerStart, struct{}{})

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return m.comp.Announce(ctx, m.bus) })
	g.Go(func() error { return m.desiredLoop(ctx) })
	g.Go(func() error { return m.analysisLoop(ctx) })
	if m.cfg.LeaderElection {
		g.Go(func() error { return m.leaseLoop(ctx) })
	} else {
		m.mu.Lock()
		m.setLeading(true)
		m.mu.Unlock()
	}
	err = g.Wait()
	m.log.Info("healthmgr-stopped")
	return err
}

// subscribe registers the bus handlers. Queries go to one member of the
// queue group, so one manager answers each.
func (m *Manager) subscribe() ([]bus.Subscription, error) {
	var subs []bus.Subscription
	for _, s := range []struct {
		subject, queue string
		h              bus.Handler
	}{
		{protocol.DEAHeartbeat, "", m.onHeartbeat},
		{protocol.DropletExited, "", m.onExited},
		{protocol.DEAAdvertise, "", m.onAdvertise},
		{protocol.DropletUpdated, "", m.onUpdated},
		{protocol.HMRequests, "", m.onPeerRequest},
		{protocol.HealthManagerStatus, QueryQueue, m.onStatus},
		{protocol.HealthManagerHealth, QueryQueue, m.onHealth},
		{LeaseSubject, "", m.onLease},
	} {
		var sub bus.Subscription
		var err error
		if s.queue == "" {
			sub, err = m.bus.Subscribe(s.subject, s.h)
		} else {
			sub, err = m.bus.QueueSubscribe(s.subject, s.queue, s.h)
		}
		if err != nil {
			return subs, fmt.Errorf("healthmgr: subscribe %s: %w", s.subject, err)
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// QueryQueue is the queue group health managers answer healthmanager.status
// and healthmanager.health in, so each query gets one manager's answer.
const QueryQueue = "healthmanagers"

// onConnection follows the bus: while it is down nothing is sent, and once
// it is back the manager waits StartupWait again, since it missed
// heartbeats and exits meanwhile.
func (m *Manager) onConnection(up bool) {
	now := m.clock.Now()
	m.mu.Lock()
	m.busUp = up
	if up {
		m.actFrom = now.Add(m.cfg.StartupWait)
	}
	m.mu.Unlock()
	if !up {
		m.log.Warn("bus-down")
		return
	}
	m.log.Info("bus-up", "acting_from", now.Add(m.cfg.StartupWait))
	m.publish(protocol.HealthManagerStart, struct{}{})
	kick(m.kickFull)
}

func (m *Manager) publish(subject string, v any) {
	if err := bus.PublishJSON(m.bus, subject, v); err != nil {
		m.log.Warn("publish-failed", "subject", subject, "error", err)
	}
}

// kick leaves a signal on c unless one is pending.
func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

var errNotRunning = errors.New("not running")

// healthy backs /healthz: the manager is running, the bus is up and the
// desired state could be read.
func (m *Manager) healthy() error {
	if !m.running.Load() {
		return errNotRunning
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case !m.busUp:
		return errors.New("bus down")
	case !m.desiredOK:
		return errors.New("desired state unavailable")
	}
	return nil
}

// varz adds the manager's figures to /varz.
func (m *Manager) varz() map[string]any {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, a := range m.apps {
		n += a.instances.len()
	}
	return map[string]any{
		"apps":          len(m.apps),
		"instances":     n,
		"deas":          len(m.deas),
		"leader":        m.leading,
		"acting":        m.busUp && m.leading && !now.Before(m.actFrom),
		"desired_ok":    m.desiredOK,
		"desired_at":    m.desiredAt.UTC().Format(time.RFC3339),
		"last_analysis": m.lastPass.UTC().Format(time.RFC3339),
	}
}
