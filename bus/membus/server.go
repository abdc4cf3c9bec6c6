// Package membus is an in-process implementation of bus.Bus with the
// semantics of NATS: the fake every kiln test runs on and the bus of a kernel
// that lives in one process.
//
// A Server is the shared bus; each component holds its own Conn to it, just
// as it would hold its own NATS connection. Every subscription has a bounded
// pending queue and one delivery goroutine, so its handler runs in publish
// order and never on the publisher's goroutine; a subscriber that falls more
// than Config.PendingLimit messages behind loses messages, which are counted
// (Subscription.Dropped, Stats.Dropped) and reported (Config.Logger,
// Config.OnSlowConsumer). A publisher never blocks.
//
// Subjects are matched with a token trie and a bounded, generation-checked
// cache of results, so publishing does not scan the subscriptions.
//
// Tests can take the bus down and bring it back with Server.SetConnected to
// exercise a component's "bus down" handling; see SetConnected.
package membus

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/kiln-paas/kiln/bus"
)

// Config configures a Server. Zero fields take the values of DefaultConfig.
type Config struct {
	// PendingLimit is how many messages a subscription may hold waiting
	// for its handler before new ones are dropped. The default, 65536,
	// is about an eighth of nats.go's per-subscription default
	// (DefaultSubPendingMsgsLimit, 500,000 messages): large enough to absorb bursts
	// such as a router.register storm from hundreds of DEAs, small enough
	// that a wedged handler holds megabytes, not gigabytes.
	PendingLimit int
	// Logger receives a "slow-consumer" warning when a subscription starts
	// dropping messages. Nil discards logs.
	Logger *slog.Logger
	// OnSlowConsumer, if set, is called when a subscription starts
	// dropping messages (once per episode: again only after the queue has
	// had room). It runs on the publisher's goroutine and must not block.
	OnSlowConsumer func(sub bus.Subscription)
}

// DefaultConfig returns the default configuration.
func DefaultConfig() Config {
	return Config{PendingLimit: 65536}
}

// ErrBadConfig is returned by Config.Validate for an invalid configuration.
var ErrBadConfig = errors.New("membus: invalid config")

// Validate reports whether c is usable; zero fields are, as they take
// defaults.
func (c Config) Validate() error {
	if c.PendingLimit < 0 {
		return fmt.Errorf("%w: negative PendingLimit %d", ErrBadConfig, c.PendingLimit)
	}
	return nil
}

// Server is an in-process bus shared by the connections made with Connect.
// It has no goroutines of its own; each subscription has one.
type Server struct {
	cfg  Config
	log  *slog.Logger
	subs *sublist

	up atomic.Bool // see SetConnected

	mu     sync.Mutex
	conns  map[*Conn]struct{}
	closed bool
}

// NewServer returns a running bus. Zero fields of cfg take defaults. It
// panics if cfg.Validate fails: the signature has no room for an error, and
// an invalid limit is a programming mistake, like a bad regexp given to
// regexp.MustCompile.
func NewServer(cfg Config) *Server {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if cfg.PendingLimit == 0 {
		cfg.PendingLimit = DefaultConfig().PendingLimit
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, subs: newSublist(), conns: make(map[*Conn]struct{})}
	s.up.Store(true)
	return s
}

// New returns a connection to a fresh private Server with the default
// configuration: the one-line bus for a unit test.
func New() *Conn {
	return NewServer(DefaultConfig()).Connect()
}

// Connect returns a new connection to s. A connection to a closed server is
// returned closed.
func (s *Server) Connect() *Conn {
	c := newConn(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.markClosed()
		return c
	}
	s.conns[c] = struct{}{}
	return c
}

// Close closes every connection of s; later connections are born closed.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close() // never fails
	}
}

// SetConnected simulates the bus becoming unreachable (false) and reachable
// again (true), as a NATS client sees its server go away and come back.
//
// While the bus is down, every connection reports Stats().Connected false,
// messages published by anyone are lost (Publish still returns nil: the bus
// is fire and forget, and a component must survive such a loss), Request
// waits for its context as a request to an unreachable server would, and
// Flush waits until the bus is up again or its context ends. Subscriptions
// survive and receive again once the bus is back, and messages already
// queued for a handler are still delivered. Each down-to-up transition counts
// one reconnect in Stats().Reconnects. Every connection's
// OnConnectionChange hooks run on the caller's goroutine after the change.
// Setting the current state again does nothing.
func (s *Server) SetConnected(up bool) {
	if s.up.Swap(up) == up {
		return
	}
	s.mu.Lock()
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.connectionChanged(up)
	}
}

// forget removes a closed connection.
func (s *Server) forget(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}
