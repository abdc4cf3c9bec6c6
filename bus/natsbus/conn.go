// Package natsbus implements bus.Bus over a NATS connection (nats.go) and
// runs an embedded NATS server (nats-server) for the all-in-one kernel and
// for tests.
//
// A connection is dial tone: by default Connect succeeds even when no
// server is up yet, and the connection reconnects forever with backoff and
// jitter, buffering what is published meanwhile. Components that must not
// act while the bus is unreachable (the router must not prune routes that
// could not be refreshed) watch the connection state through
// Config.OnConnectionChange, Conn.OnConnectionChange or Stats().Connected.
// Slow subscribers lose messages beyond their pending limits instead of
// slowing anyone else; the losses are counted per subscription.
//
// Subjects are checked with bus.ValidateSubject and bus.ValidateLiteral
// before they reach NATS, and NATS errors are mapped to the bus sentinel
// errors (bus.ErrClosed, bus.ErrNoResponders, ...), so callers written
// against membus behave the same here.
//
// RunServer starts an embedded server on 127.0.0.1 and a random port by
// default; RunTestServer does the same for a test, in one line.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kiln-paas/kiln/bus"
)

var _ bus.Bus = (*Conn)(nil)

// Conn is a bus.Bus over a NATS connection. Create it with Connect; every
// method is safe for concurrent use.
type Conn struct {
	nc     *nats.Conn
	cfg    Config
	log    *slog.Logger
	m      *metrics
	dialer *dialer

	closed atomic.Bool   // Close or Drain was called
	done   chan struct{} // closed once the NATS connection is closed
	doneMu sync.Once

	mu      sync.Mutex
	subs    map[*subscription]struct{}
	retired subCounts // counts of subscriptions no longer active

	stateMu   sync.Mutex // serialises state changes with watcher registration
	up        bool
	watchers  []watcher
	nextWatch uint64
}

// watcher is a hook registered with OnConnectionChange.
type watcher struct {
	id uint64
	f  func(up bool)
}

// subCounts are the delivery counters of one or more subscriptions.
type subCounts struct {
	msgs, bytes, dropped uint64
}

// Connect opens a connection configured by cfg. ctx bounds the first
// connection attempt (the dial honours it); it has no effect once Connect
// has returned. With cfg.RetryOnFailedConnect (the default) Connect
// returns a usable, not yet connected Conn when no server answers, and
// connects in the background. It returns an error wrapping
// ErrAuthorization when a server rejects the credentials, and one
// wrapping ErrInvalidConfig for an invalid cfg.
func Connect(ctx context.Context, cfg Config) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("natsbus: connect: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("bus", cfg.Name)
	m, err := newMetrics(cfg.Registerer, cfg.Name)
	if err != nil {
		return nil, err
	}
	c := &Conn{
		cfg:    cfg,
		log:    log,
		m:      m,
		dialer: &dialer{d: net.Dialer{Timeout: cfg.DialTimeout}},
		done:   make(chan struct{}),
		subs:   make(map[*subscription]struct{}),
	}
	c.dialer.ctx.Store(&ctx)
	defer c.dialer.ctx.Store(nil)

	// Try once without retrying, so that an unreachable server and a
	// rejected login can be told apart: the first is normal dial tone,
	// the second a configuration error the caller must see at once.
	opts := c.options()
	opts.RetryOnFailedConnect = false
	nc, err := opts.Connect()
	if err != nil && cfg.RetryOnFailedConnect && !isAuthError(err) && ctx.Err() == nil {
		c.log.Info("bus-connect-deferred", "urls", redacted(cfg.URLs), "err", err)
		opts.RetryOnFailedConnect = true
		nc, err = opts.Connect()
	}
	if err != nil {
		where := fmt.Sprintf("natsbus: connect %v", redacted(cfg.URLs))
		if isAuthError(err) {
			return nil, fmt.Errorf("%s: %w: %w", where, ErrAuthorization, err)
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("%s: %w", where, ctxErr)
		}
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	c.nc = nc
	return c, nil
}

func (c *Conn) options() nats.Options {
	cfg := c.cfg
	o := nats.GetDefaultOptions()
	o.Servers = cfg.URLs
	o.Name = cfg.Name
	o.User = cfg.User
	o.Password = cfg.Password
	o.Token = cfg.Token
	o.MaxReconnect = -1 // forever: dial tone
	o.CustomReconnectDelayCB = func(attempts int) time.Duration {
		return backoff(cfg.ReconnectWait, cfg.MaxReconnectWait, cfg.ReconnectJitter, attempts, rand.Float64)
	}
	// A rejected login keeps being retried: credentials may be fixed on
	// the server side, and a component that silently stopped listening
	// would be worse. Each rejection is logged and counted as an async
	// error.
	o.IgnoreAuthErrorAbort = true
	o.ReconnectBufSize = cfg.ReconnectBufSize
	o.Timeout = cfg.DialTimeout
	o.CustomDialer = c.dialer
	o.PingInterval = cfg.PingInterval
	o.MaxPingsOut = cfg.MaxPingsOut
	o.DrainTimeout = cfg.DrainTimeout
	o.ConnectedCB = c.onConnected
	o.DisconnectedErrCB = c.onDisconnected
	o.ReconnectedCB = c.onReconnected
	o.ReconnectErrCB = c.onReconnectFailed
	o.ClosedCB = c.onClosed
	o.AsyncErrorCB = c.onAsyncError
	o.LameDuckModeHandler = c.onLameDuck
	return o
}

// backoff returns the delay before reconnect round attempt (1-based):
// wait doubled per round, capped at max, then shortened by a random
// fraction of itself below jitter. rnd returns a number in [0, 1).
func backoff(wait, max time.Duration, jitter float64, attempt int, rnd func() float64) time.Duration {
	d := wait
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d - time.Duration(jitter*rnd()*float64(d))
}

// redacted returns urls with any password in them masked, for logs and
// errors.
func redacted(urls []string) []string {
	out := make([]string, len(urls))
	for i, raw := range urls {
		out[i] = raw
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			out[i] = u.Redacted()
		}
	}
	return out
}

func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired)
}

// dialer opens TCP connections for nats.go, honouring Connect's context
// while Connect runs.
type dialer struct {
	d   net.Dialer
	ctx atomic.Pointer[context.Context]
}

// Dial implements nats.CustomDialer.
func (d *dialer) Dial(network, address string) (net.Conn, error) {
	ctx := context.Background()
	if p := d.ctx.Load(); p != nil {
		ctx = *p
	}
	return d.d.DialContext(ctx, network, address)
}

// Publish implements bus.Bus.
func (c *Conn) Publish(subject string, data []byte) error {
	if c.closed.Load() {
		return fmt.Errorf("natsbus: publish %s: %w", subject, bus.ErrClosed)
	}
	if err := bus.ValidateLiteral(subject); err != nil {
		return fmt.Errorf("natsbus: publish: %w", err)
	}
	if err := c.nc.Publish(subject, data); err != nil {
		return mapErr("publish", subject, err)
	}
	return nil
}

// PublishRequest implements bus.Bus.
func (c *Conn) PublishRequest(subject, reply string, data []byte) error {
	if c.closed.Load() {
		return fmt.Errorf("natsbus: publish %s: %w", subject, bus.ErrClosed)
	}
	if err := bus.ValidateLiteral(subject); err != nil {
		return fmt.Errorf("natsbus: publish: %w", err)
	}
	if err := bus.ValidateLiteral(reply); err != nil {
		return fmt.Errorf("natsbus: publish %s: reply: %w", subject, err)
	}
	if err := c.nc.PublishRequest(subject, reply, data); err != nil {
		return mapErr("publish", subject, err)
	}
	return nil
}

// Request implements bus.Bus. While the connection is down the request is
// buffered like any publish and Request waits for ctx.
func (c *Conn) Request(ctx context.Context, subject string, data []byte) (*bus.Msg, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("natsbus: request %s: %w", subject, bus.ErrClosed)
	}
	if err := bus.ValidateLiteral(subject); err != nil {
		return nil, fmt.Errorf("natsbus: request: %w", err)
	}
	m, err := c.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("natsbus: request %s: %w", subject, ctxErr)
		}
		return nil, mapErr("request", subject, err)
	}
	return &bus.Msg{Subject: m.Subject, Reply: m.Reply, Data: m.Data}, nil
}

// NewInbox implements bus.Bus.
func (c *Conn) NewInbox() string {
	return c.nc.NewInbox()
}

// Flush implements bus.Bus: it returns once the server has answered a
// ping sent after everything published before. Without a deadline on ctx
// it gives up after Config.FlushTimeout.
func (c *Conn) Flush(ctx context.Context) error {
	if c.closed.Load() {
		return fmt.Errorf("natsbus: flush: %w", bus.ErrClosed)
	}
	fctx := ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(ctx, c.cfg.FlushTimeout)
		defer cancel()
	}
	if err := c.nc.FlushWithContext(fctx); err != nil {
		if ctxErr := fctx.Err(); ctxErr != nil {
			return fmt.Errorf("natsbus: flush: %w", ctxErr)
		}
		return mapErr("flush", "", err)
	}
	return nil
}

// Stats implements bus.Bus. InMsgs and InBytes count messages handed to
// handlers (not those dropped or internal to Request); OutMsgs, OutBytes
// and Reconnects come from the NATS connection.
func (c *Conn) Stats() bus.Stats {
	ns := c.nc.Stats()
	closed := c.closed.Load()
	c.mu.Lock()
	sum := c.retired
	n := len(c.subs)
	for s := range c.subs {
		sum.add(s.counts())
	}
	c.mu.Unlock()
	if closed {
		n = 0
	}
	return bus.Stats{
		InMsgs:        sum.msgs,
		OutMsgs:       ns.OutMsgs,
		InBytes:       sum.bytes,
		OutBytes:      ns.OutBytes,
		Dropped:       sum.dropped,
		Reconnects:    ns.Reconnects,
		Subscriptions: n,
		Connected:     !closed && c.nc.IsConnected(),
	}
}

func (s *subCounts) add(o subCounts) {
	s.msgs += o.msgs
	s.bytes += o.bytes
	s.dropped += o.dropped
}

// Connected reports whether the connection is currently up.
func (c *Conn) Connected() bool {
	return !c.closed.Load() && c.nc.IsConnected()
}

// OnConnectionChange registers f to be called, like
// Config.OnConnectionChange, with false when the connection to the server
// is lost and true when it is re-established, until the returned remove
// is called (calling remove again does nothing). It has the signature of
// membus.Conn.OnConnectionChange, so a component can look for either
// through one interface. f is not called with the current state (read
// Connected for that) nor for Close and Drain. Hooks run one at a time on
// the connection's event goroutine, in registration order after
// Config.OnConnectionChange; they must not block and must not register or
// remove hooks.
func (c *Conn) OnConnectionChange(f func(up bool)) (remove func()) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	id := c.nextWatch
	c.nextWatch++
	c.watchers = append(c.watchers, watcher{id: id, f: f})
	return func() {
		c.stateMu.Lock()
		defer c.stateMu.Unlock()
		c.watchers = slices.DeleteFunc(c.watchers, func(w watcher) bool { return w.id == id })
	}
}

// NATS returns the underlying NATS connection, for features beyond
// bus.Bus (JetStream, headers). Closing it directly closes c.
func (c *Conn) NATS() *nats.Conn {
	return c.nc
}

// Drain implements bus.Bus: subscriptions stop receiving, handlers finish
// what is queued, pending publishes are flushed, then the connection
// closes. When ctx ends first (or Config.DrainTimeout passes, if ctx has
// no deadline) the connection is closed at once and the context's error
// returned. Draining while disconnected closes at once and returns an
// error, since nothing can be flushed.
func (c *Conn) Drain(ctx context.Context) error {
	if !c.closed.CompareAndSwap(false, true) {
		return fmt.Errorf("natsbus: drain: %w", bus.ErrClosed)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.DrainTimeout)
		defer cancel()
	}
	c.snapshotDropped() // NATS forgets the counts as it unsubscribes
	if err := c.nc.Drain(); err != nil {
		c.closeNATS()
		return mapErr("drain", "", err)
	}
	select {
	case <-c.done:
		if err := c.nc.LastError(); errors.Is(err, nats.ErrDrainTimeout) {
			return fmt.Errorf("natsbus: drain: %w", err)
		}
		return nil
	case <-ctx.Done():
		c.closeNATS()
		return fmt.Errorf("natsbus: drain: %w", ctx.Err())
	}
}

// Close implements bus.Bus. It also cuts short a Drain in progress.
func (c *Conn) Close() error {
	c.closed.Store(true)
	c.closeNATS()
	return nil
}

func (c *Conn) closeNATS() {
	c.snapshotDropped()
	c.nc.Close()
}

// snapshotDropped records every subscription's drop count while NATS can
// still report it (it cannot once the connection is closed).
func (c *Conn) snapshotDropped() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := range c.subs {
		s.readDropped()
	}
}

// mapErr wraps a NATS error, adding the bus sentinel error it stands for.
func mapErr(op, subject string, err error) error {
	var sentinel error
	switch {
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrConnectionReconnecting) && op == "drain":
		sentinel = bus.ErrClosed
	case errors.Is(err, nats.ErrNoResponders):
		sentinel = bus.ErrNoResponders
	case errors.Is(err, nats.ErrBadSubject):
		sentinel = bus.ErrBadSubject
	case errors.Is(err, nats.ErrBadSubscription):
		sentinel = bus.ErrBadSubscription
	case isAuthError(err):
		sentinel = ErrAuthorization
	}
	where := "natsbus: " + op
	if subject != "" {
		where += " " + subject
	}
	if sentinel == nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	return fmt.Errorf("%s: %w (%w)", where, sentinel, err)
}
