// Package controller is kiln's cloud controller, "the king" of the kernel:
// the only component that changes desired state. It presents the v1 REST
// API of the original platform (PROTOCOL.md §1) so that clients written for
// it work unchanged, keeps users, apps and services in a store.Store and bits
// in a blobstore.Blobstore, assembles pushed packages with resource matching,
// stages them asynchronously through a Stager, places instances on DEAs with
// dea.discover and starts, stops, scales and updates them over the bus, rolls
// out new versions index by index without downtime, and answers health
// managers (cloudcontrollers.hm.requests and the bulk API).
//
// Build one with New, serve Handler on HTTP, and call Run for its bus work:
//
//	c, err := controller.New(cfg, controller.Deps{Bus: b, Store: st, Blobs: bs, Stager: stg})
//	go http.Serve(ln, c.Handler())
//	err = c.Run(ctx)
//
// kiln extensions that v1 clients ignore: GET /apps/:name/logs and
// /apps/:name/staging_log (with ?follow=true as server-sent events),
// POST /apps/:name/restart (rolling restart), GET /apps/:name/droplets and
// POST /apps/:name/rollback, GET /apps/:name/events, POST
// /services/v1/brokers, and the signed /staged_droplets URLs DEAs download
// from (?expires=<unix>&signature=<hex HMAC>).
//
// The bulk API pages desired state in app-id order; its bulk_token is
// {"cursor": "<opaque>"} and is empty ({}) after the last page. Health
// managers pass it back verbatim, as they did the original's {"id": n}.
package controller

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/internal/component"
)

// maxHMRequests bounds health manager requests handled at once: each may
// wait for dea.discover rounds, and a burst after an outage should not turn
// into thousands of goroutines.
const maxHMRequests = 64

// Controller is a cloud controller. It is safe for concurrent use.
type Controller struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	now  func() time.Time
	key  []byte
	// dummyHash is what unknown users' passwords are compared against.
	dummyHash []byte
	bulkPW    string
	routes    []route
	comp      *component.Component
	m         *metrics
	gatherer  prometheus.Gatherer

	hc      *http.Client
	hmSem   chan struct{}
	logins  *limiter
	actual  *actualState
	logs    *logHub
	stager  *stagingQueue
	rollout *rollouts

	// bg runs background work (staging, placement, rollouts); it lives
	// until Run returns.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bgMu     sync.Mutex
	bgWG     sync.WaitGroup
	bgClosed bool
}

// New returns a controller. It validates cfg and checks that the required
// dependencies are present. The controller does not own its dependencies:
// the caller closes the bus, store and blobstore after Run returns.
func New(cfg Config, deps Deps) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Bus == nil || deps.Store == nil || deps.Blobs == nil || deps.Stager == nil {
		return nil, fmt.Errorf("controller: Bus, Store, Blobs and Stager are required")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := cfg.TokenKey
	if len(key) == 0 {
		key = randomBytes(32)
	}
	bulkPW := cfg.BulkPassword
	if bulkPW == "" {
		bulkPW = hex.EncodeToString(randomBytes(16))
	}
	c := &Controller{
		cfg:    cfg,
		deps:   deps,
		log:    log,
		now:    deps.Now,
		key:    key,
		bulkPW: bulkPW,
		hc:     &http.Client{Timeout: 30 * time.Second},
		hmSem:  make(chan struct{}, maxHMRequests),
		logins: newLimiter(cfg.LoginFailures, cfg.LoginWindow),
		actual: newActualState(),
		logs:   newLogHub(cfg.LogLines),
	}
	c.dummyHash, _ = bcrypt.GenerateFromPassword(randomBytes(16), cfg.BcryptCost)
	c.stager = newStagingQueue(c, cfg.MaxConcurrentStaging)
	c.rollout = newRollouts()
	reg := deps.Registerer
	if g, ok := reg.(prometheus.Gatherer); ok {
		c.gatherer = g
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	c.m = m
	host := cfg.StatusHost
	if host == "" {
		u, _ := url.Parse(cfg.ExternalURL) // checked by Validate
		host = u.Host
	}
	c.comp = component.New(component.Config{Type: "CloudController", Index: cfg.Index, Host: host,
		User: cfg.StatusUser, Password: cfg.StatusPassword, Logger: log}, nil, c.varz)
	c.bgCtx, c.bgCancel = context.WithCancel(context.Background())
	c.routes = c.routeTable()
	return c, nil
}

// Handler returns the HTTP handler of the REST API, the droplet downloads
// and the bulk API.
func (c *Controller) Handler() http.Handler { return http.HandlerFunc(c.serveHTTP) }

// StatusHandler returns the component status handler (/healthz, /varz and,
// when the Registerer is also a Gatherer, /metrics).
func (c *Controller) StatusHandler() http.Handler { return c.comp.Handler(c.gatherer) }

// BulkCredentials returns the HTTP basic credentials of the bulk API.
func (c *Controller) BulkCredentials() protocol.BulkCredentials {
	return protocol.BulkCredentials{User: c.cfg.BulkUser, Password: c.bulkPW}
}

// Run subscribes to the bus (health manager requests in queue group "cc",
// bulk credential requests, heartbeats, exits and log lines), announces the
// component, collects unreferenced blobs every Config.GCInterval (see
// CollectGarbage), and serves until ctx ends. Then it stops background work
// (stagings, placements, rollouts) and waits for it.
func (c *Controller) Run(ctx context.Context) error {
	b := c.deps.Bus
	type sub struct {
		subject, queue string
		h              bus.Handler
	}
	subs := []sub{
		{protocol.HMRequests, protocol.ControllerQueue, c.onHMRequest},
		{protocol.BulkCredentialsSubject, "", c.onBulkCredentials},
		{protocol.DEAHeartbeat, "", c.onHeartbeat},
		{protocol.DropletExited, "", c.onExited},
		{"logs.*", "", c.onLogLine},
	}
	var active []bus.Subscription
	defer func() {
		for _, s := range active {
			_ = s.Unsubscribe()
		}
		c.stopBackground()
	}()
	for _, s := range subs {
		var (
			bs  bus.Subscription
			err error
		)
		if s.queue != "" {
			bs, err = b.QueueSubscribe(s.subject, s.queue, s.h)
		} else {
			bs, err = b.Subscribe(s.subject, s.h)
		}
		if err != nil {
			return fmt.Errorf("controller: subscribe %s: %w", s.subject, err)
		}
		active = append(active, bs)
	}
	if cn, ok := b.(bus.ConnectionNotifier); ok {
		// Subscriptions survive a reconnect; tell the others we are back.
		remove := cn.OnConnectionChange(func(up bool) {
			if !up {
				c.log.Warn("bus-disconnected")
				return
			}
			c.log.Info("bus-reconnected")
			c.publish(protocol.ComponentAnnounce, c.comp.Record())
		})
		defer remove()
	}
	if err := b.Flush(ctx); err != nil && ctx.Err() == nil {
		c.log.Warn("bus-flush-failed", "error", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.comp.Announce(gctx, b) })
	g.Go(func() error { return c.prune(gctx) })
	if len(c.cfg.RouteURIs) > 0 {
		g.Go(func() error { return c.registerRoutes(gctx) })
	}
	if c.cfg.GCInterval > 0 {
		g.Go(func() error { return c.collectPeriodically(gctx) })
	}
	g.Go(func() error {
		if err := c.resumeStaging(gctx); err != nil {
			c.log.Warn("resume-staging-failed", "error", err)
		}
		return nil
	})
	c.log.Info("controller-started", "url", c.cfg.ExternalURL)
	<-ctx.Done()
	err := g.Wait()
	c.log.Info("controller-stopped")
	return err
}

// registerRoutes keeps the controller's own routes registered with the
// routers until ctx ends, then unregisters them.
func (c *Controller) registerRoutes(ctx context.Context) error {
	reg := protocol.Register{Host: c.cfg.RouteHost, Port: c.cfg.RoutePort, URIs: c.cfg.RouteURIs, Tags: map[string]string{"component": "CloudController"}}
	again := make(chan struct{}, 1)
	sub, err := c.deps.Bus.Subscribe(protocol.RouterStart, func(*bus.Msg) {
		select {
		case again <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return fmt.Errorf("controller: subscribe %s: %w", protocol.RouterStart, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	t := time.NewTicker(c.cfg.RegisterInterval)
	defer t.Stop()
	for {
		c.publish(protocol.RouterRegister, reg)
		select {
		case <-ctx.Done():
			c.publish(protocol.RouterUnregister, reg)
			return nil
		case <-t.C:
		case <-again:
		}
	}
}

// prune drops stale instances and expired token revocations periodically.
func (c *Controller) prune(ctx context.Context) error {
	t := time.NewTicker(c.cfg.HeartbeatTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			c.actual.expire(c.now().Add(-c.cfg.HeartbeatTTL))
			if _, err := c.deps.Store.PruneRevocations(ctx, c.now()); err != nil && ctx.Err() == nil {
				c.log.Warn("prune-revocations-failed", "error", err)
			}
		}
	}
}

// goBackground runs f in the background until Run returns. It reports false
// if the controller is already shutting down.
func (c *Controller) goBackground(f func(ctx context.Context)) bool {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.bgClosed {
		return false
	}
	c.bgWG.Add(1)
	go func() {
		defer c.bgWG.Done()
		f(c.bgCtx)
	}()
	return true
}

func (c *Controller) stopBackground() {
	c.bgMu.Lock()
	c.bgClosed = true
	c.bgMu.Unlock()
	c.bgCancel()
	c.bgWG.Wait()
}

func (c *Controller) onBulkCredentials(m *bus.Msg) {
	if m.Reply == "" {
		return
	}
	if err := bus.RespondJSON(c.deps.Bus, m, c.BulkCredentials()); err != nil {
		c.log.Warn("bulk-credentials-reply-failed", "error", err)
	}
}

func (c *Controller) varz() map[string]any {
	return map[string]any{
		"requests":           c.m.requestsTotal(),
		"running_stage_cmds": c.stager.running(),
		"pending_stage_cmds": c.stager.pending(),
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	return b
}
