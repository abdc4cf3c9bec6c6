package natsbus

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a connection made by Connect. Start from DefaultConfig:
// its zero value is not valid.
type Config struct {
	// URLs of the NATS servers to use, such as "nats://127.0.0.1:4222".
	// A URL without scheme gets "nats://". When several are given the
	// connection picks among them at random and fails over between them.
	URLs []string
	// Name identifies the connection to the server (it shows in the
	// server's monitoring) and labels this connection's metrics. Use the
	// component's role ("router", "dea"), not a per-instance id, to keep
	// the label set small.
	Name string

	// User and Password authenticate with user/password; Token with a
	// bearer token. Use at most one of the two methods.
	User     string
	Password string
	Token    string

	// Logger receives connection events (kebab-case event names such as
	// "bus-disconnected"). Nil discards them.
	Logger *slog.Logger
	// Registerer receives the connection's Prometheus counters. Nil
	// registers nothing. Connections sharing a Registerer share the
	// counters, which are labelled by Name.
	Registerer prometheus.Registerer

	// PendingLimits bounds the queue of every subscription: a handler
	// that falls behind loses the messages beyond it (counted in
	// Subscription.Dropped and Stats.Dropped) instead of slowing the
	// publisher or the connection.
	PendingLimits PendingLimits

	// RetryOnFailedConnect makes Connect succeed even when no server is
	// reachable yet: the connection then keeps trying in the background,
	// exactly as after a disconnect, and buffers what is published
	// meanwhile (see ReconnectBufSize). This is the dial-tone default, so
	// components can start in any order. A server that answers but
	// rejects the credentials still makes Connect fail at once with
	// ErrAuthorization. When false, Connect returns an error if no server
	// answers.
	RetryOnFailedConnect bool
	// ReconnectWait is the delay before the first reconnect attempt after
	// a disconnect (and between the first attempts of an initial connect
	// that found no server). Each further round over the server list
	// doubles the delay up to MaxReconnectWait. The connection reconnects
	// forever; only Close or Drain stop it.
	ReconnectWait time.Duration
	// MaxReconnectWait caps the reconnect delay.
	MaxReconnectWait time.Duration
	// ReconnectJitter is the fraction, in [0, 1), by which each reconnect
	// delay is randomly shortened, so that the many clients of a
	// restarted server do not all come back at the same instant.
	ReconnectJitter float64
	// ReconnectBufSize is how many bytes published while disconnected are
	// kept to be sent on reconnect; beyond it Publish fails. Negative
	// disables the buffer: publishing while disconnected then fails at
	// once.
	ReconnectBufSize int

	// DialTimeout bounds each attempt to open a TCP connection and
	// complete the NATS handshake.
	DialTimeout time.Duration
	// PingInterval is how often the client pings the server; after
	// MaxPingsOut unanswered pings the connection is considered broken
	// and reconnects. Together they bound how long a silently dead server
	// goes unnoticed.
	PingInterval time.Duration
	// MaxPingsOut is the number of unanswered pings tolerated.
	MaxPingsOut int
	// FlushTimeout bounds Flush when its context has no deadline.
	FlushTimeout time.Duration
	// DrainTimeout bounds Drain when its context has no deadline.
	DrainTimeout time.Duration

	// OnConnectionChange, if set, is called with false when the
	// connection to the server is lost and with true when it is
	// (re)established, including the first time (which may be during
	// Connect or, with RetryOnFailedConnect, any time after). Calls are
	// made one at a time from a single goroutine in the order of the
	// events, and only on a change; none is made for Close or Drain. It
	// must not block (it holds up later events) and must not call
	// Conn.OnConnectionChange. Components that must not act on missing
	// messages while the bus is down, such as the router pruning stale
	// routes, use it (or Conn.OnConnectionChange, or Stats().Connected)
	// to suspend that work.
	OnConnectionChange func(up bool)
}

// PendingLimits bounds a subscription's queue of messages not yet handled.
// A negative value means no limit on that measure; zero is invalid.
type PendingLimits struct {
	Msgs  int // messages
	Bytes int // payload bytes
}

// DefaultConfig returns the configuration used by the kernel: the local
// default server, dial tone (start before the server, reconnect forever)
// and quick recovery.
func DefaultConfig() Config {
	return Config{
		URLs: []string{"nats://127.0.0.1:4222"},
		Name: "kiln",
		// 64 Ki messages or 64 MiB per subscription: seconds of backlog
		// for any kernel subscriber at its expected rate, yet a bounded
		// amount of memory when one hangs.
		PendingLimits:        PendingLimits{Msgs: 64 * 1024, Bytes: 64 << 20},
		RetryOnFailedConnect: true,
		// Recovery time matters more than reconnect traffic: retry after
		// 250 ms, then back off to 5 s (250 ms doubled 5 times is 8 s,
		// capped), so a server restart costs clients well under a second
		// and an outage costs the server one attempt per client per 5 s.
		ReconnectWait:    250 * time.Millisecond,
		MaxReconnectWait: 5 * time.Second,
		ReconnectJitter:  0.5,
		ReconnectBufSize: 8 << 20, // the nats.go default
		DialTimeout:      2 * time.Second,
		// 20 s × 2 pings: a dead server is noticed within about a minute,
		// well before the router's 120 s route staleness threshold.
		PingInterval: 20 * time.Second,
		MaxPingsOut:  2,
		FlushTimeout: 10 * time.Second,
		DrainTimeout: 30 * time.Second,
	}
}

// Validate reports the first invalid field, wrapped in ErrInvalidConfig.
func (c Config) Validate() error {
	if len(c.URLs) == 0 {
		return fmt.Errorf("%w: no server URLs", ErrInvalidConfig)
	}
	for _, u := range c.URLs {
		if err := validateURL(u); err != nil {
			return err
		}
	}
	switch {
	case c.Password != "" && c.User == "":
		return fmt.Errorf("%w: password without user", ErrInvalidConfig)
	case c.Token != "" && c.User != "":
		return fmt.Errorf("%w: both token and user given", ErrInvalidConfig)
	case c.PendingLimits.Msgs == 0 || c.PendingLimits.Bytes == 0:
		return fmt.Errorf("%w: pending limits must be non-zero (negative for no limit)", ErrInvalidConfig)
	case c.ReconnectWait <= 0:
		return fmt.Errorf("%w: reconnect wait %v must be positive", ErrInvalidConfig, c.ReconnectWait)
	case c.MaxReconnectWait < c.ReconnectWait:
		return fmt.Errorf("%w: max reconnect wait %v below reconnect wait %v", ErrInvalidConfig, c.MaxReconnectWait, c.ReconnectWait)
	case c.ReconnectJitter < 0 || c.ReconnectJitter >= 1:
		return fmt.Errorf("%w: reconnect jitter %v not in [0, 1)", ErrInvalidConfig, c.ReconnectJitter)
	case c.ReconnectBufSize == 0:
		return fmt.Errorf("%w: reconnect buffer size must be non-zero (negative to disable)", ErrInvalidConfig)
	case c.DialTimeout <= 0:
		return fmt.Errorf("%w: dial timeout %v must be positive", ErrInvalidConfig, c.DialTimeout)
	case c.PingInterval <= 0:
		return fmt.Errorf("%w: ping interval %v must be positive", ErrInvalidConfig, c.PingInterval)
	case c.MaxPingsOut <= 0:
		return fmt.Errorf("%w: max pings out %d must be positive", ErrInvalidConfig, c.MaxPingsOut)
	case c.FlushTimeout <= 0:
		return fmt.Errorf("%w: flush timeout %v must be positive", ErrInvalidConfig, c.FlushTimeout)
	case c.DrainTimeout <= 0:
		return fmt.Errorf("%w: drain timeout %v must be positive", ErrInvalidConfig, c.DrainTimeout)
	}
	return nil
}

func validateURL(raw string) error {
	s := raw
	if !strings.Contains(s, "://") {
		s = "nats://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%w: server URL %q: %w", ErrInvalidConfig, raw, err)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("%w: server URL %q: unsupported scheme %q", ErrInvalidConfig, raw, u.Scheme)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%w: server URL %q: no host", ErrInvalidConfig, raw)
	}
	return nil
}
