package router

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/kiln-paas/kiln/router/table"
)

// ErrBadConfig is wrapped by Config.Validate errors.
var ErrBadConfig = errors.New("router: invalid config")

// Config configures a Router. Start from DefaultConfig.
type Config struct {
	// ID names the router in router.start; "" picks a random one.
	ID string
	// Index is the component index in vcap.component.discover replies.
	Index int
	// Hosts are the router's addresses, advertised in router.start.
	Hosts []string

	// RegisterInterval is advertised in router.start as the interval at
	// which registrars must re-register their routes.
	RegisterInterval time.Duration
	// PruneThreshold is how long an endpoint stays without being
	// re-registered before it is pruned.
	PruneThreshold time.Duration
	// PruneInterval is how often stale endpoints are looked for.
	PruneInterval time.Duration
	// StartInterval is how often router.start is published again, so a
	// registrar that missed the first one still learns of the router.
	StartInterval time.Duration
	// EmptyRouteGrace is how long a route with no endpoint left answers 503
	// (known, no live instance) before it is forgotten and answers 404.
	EmptyRouteGrace time.Duration

	// Strategy chooses among a route's endpoints.
	Strategy table.Strategy
	// MaxAttempts bounds the endpoints tried for one request when
	// connections fail.
	MaxAttempts int
	// FailureBackoff is how long an endpoint that refused a connection is
	// avoided while others are available.
	FailureBackoff time.Duration
	// DialTimeout bounds connecting to a backend.
	DialTimeout time.Duration
	// BackendIdleTimeout bounds how long a backend may stay silent while a
	// response (headers or body) is awaited.
	BackendIdleTimeout time.Duration
	// ClientIdleTimeout closes client connections idle this long between
	// requests or while a request is being read.
	ClientIdleTimeout time.Duration
	// MaxIdleConnsPerBackend is the keep-alive pool size per backend.
	MaxIdleConnsPerBackend int
	// MaxHeaderBytes bounds a request's header; Serve also uses it as
	// each connection's read buffer.
	MaxHeaderBytes int
	// ShutdownTimeout bounds how long Serve waits for requests in flight
	// once its context ends.
	ShutdownTimeout time.Duration

	// StickyCookie is the app session cookie whose presence in a response
	// makes the router pin the client to the instance (JSESSIONID).
	StickyCookie string
	// TLS, when set, makes Serve terminate TLS on its listener. Handler
	// users configure TLS on their own http.Server.
	TLS *tls.Config
	// AccessLog receives one line per request; nil disables the log.
	AccessLog io.Writer
}

// DefaultConfig returns kiln's defaults.
//
// The original routers advertised a 20 s minimum register interval and
// pruned after 120 s (gorouter; the Ruby router swept every 30 s). kiln
// favours fast convergence: registrars re-register every 10 s and an
// endpoint missing three refreshes in a row (30 s) is pruned, so a vanished
// DEA stops receiving traffic within 35 s (threshold plus one 5 s sweep)
// instead of up to 150 s, while one or two lost registrations are tolerated.
// A route emptied by unregistration keeps answering 503 for 2 minutes, long
// enough for a crashed app to be restarted by the health manager without
// its users seeing "unknown host".
func DefaultConfig() Config {
	return Config{
		RegisterInterval:       10 * time.Second,
		PruneThreshold:         30 * time.Second,
		PruneInterval:          5 * time.Second,
		StartInterval:          30 * time.Second,
		EmptyRouteGrace:        2 * time.Minute,
		Strategy:               table.Random,
		MaxAttempts:            3,
		FailureBackoff:         5 * time.Second,
		DialTimeout:            5 * time.Second,
		BackendIdleTimeout:     60 * time.Second, // gorouter's endpoint_timeout
		ClientIdleTimeout:      60 * time.Second, // the Ruby router's inactivity timeout
		MaxIdleConnsPerBackend: 512,
		MaxHeaderBytes:         16 << 10,         // twice nginx's large_client_header_buffers size
		ShutdownTimeout:        10 * time.Second, // the Ruby router's drain time
		StickyCookie:           "JSESSIONID",
	}
}

// Validate reports whether c is usable.
func (c Config) Validate() error {
	switch {
	case c.RegisterInterval < time.Second:
		return fmt.Errorf("%w: RegisterInterval %v below 1s", ErrBadConfig, c.RegisterInterval)
	case c.PruneThreshold <= c.RegisterInterval:
		return fmt.Errorf("%w: PruneThreshold %v must exceed RegisterInterval %v", ErrBadConfig, c.PruneThreshold, c.RegisterInterval)
	case c.PruneInterval <= 0 || c.StartInterval <= 0:
		return fmt.Errorf("%w: PruneInterval and StartInterval must be positive", ErrBadConfig)
	case c.EmptyRouteGrace < 0:
		return fmt.Errorf("%w: negative EmptyRouteGrace", ErrBadConfig)
	case c.Strategy != table.Random && c.Strategy != table.LeastInFlight:
		return fmt.Errorf("%w: unknown Strategy %d", ErrBadConfig, c.Strategy)
	case c.MaxAttempts < 1 || c.MaxAttempts > maxAttempts:
		return fmt.Errorf("%w: MaxAttempts %d not in 1..%d", ErrBadConfig, c.MaxAttempts, maxAttempts)
	case c.FailureBackoff < 0 || c.DialTimeout <= 0 || c.BackendIdleTimeout <= 0 || c.ClientIdleTimeout <= 0 || c.ShutdownTimeout <= 0:
		return fmt.Errorf("%w: timeouts must be positive", ErrBadConfig)
	case c.MaxIdleConnsPerBackend < 1 || c.MaxHeaderBytes < 1024:
		return fmt.Errorf("%w: MaxIdleConnsPerBackend or MaxHeaderBytes too small", ErrBadConfig)
	case c.StickyCookie == "":
		return fmt.Errorf("%w: empty StickyCookie", ErrBadConfig)
	}
	return nil
}

// maxAttempts is the hard ceiling on MaxAttempts: the tried list lives on
// the stack.
const maxAttempts = 8
