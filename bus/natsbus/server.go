package natsbus

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerConfig configures an embedded NATS server started by RunServer.
// Start from DefaultServerConfig.
type ServerConfig struct {
	// Host is the interface to listen on. The default, 127.0.0.1, keeps
	// the bus private to the machine; multi-host deployments listen on a
	// routable address (and should use auth).
	Host string
	// Port is the client port; -1 picks a free one (read it back with
	// Server.ClientURL or Server.Port), 0 means NATS's 4222.
	Port int
	// Name is the server's name in its INFO and monitoring; empty uses
	// the generated server id.
	Name string

	// User and Password, or Token, require clients to authenticate.
	// Empty means no authentication.
	User     string
	Password string
	Token    string

	// JetStream enables NATS persistence, with its files in StoreDir
	// (required then). The kernel's bus is fire and forget and does not
	// need it; it is here for embedders who do.
	JetStream bool
	StoreDir  string

	// Logger receives the server's log lines as events
	// "nats-server-notice", "nats-server-warning", "nats-server-error"
	// and "nats-server-debug" (debug only when the logger enables that
	// level). Nil discards them.
	Logger *slog.Logger

	// ReadyTimeout bounds how long RunServer waits for the server to
	// accept connections.
	ReadyTimeout time.Duration
}

// DefaultServerConfig returns a server on 127.0.0.1, a random port, no
// auth, no JetStream.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		Host:         "127.0.0.1",
		Port:         -1,
		ReadyTimeout: 10 * time.Second,
	}
}

// Validate reports the first invalid field, wrapped in ErrInvalidConfig.
func (c ServerConfig) Validate() error {
	switch {
	case c.Host == "":
		return fmt.Errorf("%w: empty host", ErrInvalidConfig)
	case c.Port < -1 || c.Port > 65535:
		return fmt.Errorf("%w: port %d not in [-1, 65535]", ErrInvalidConfig, c.Port)
	case c.Password != "" && c.User == "":
		return fmt.Errorf("%w: password without user", ErrInvalidConfig)
	case c.User != "" && c.Password == "":
		return fmt.Errorf("%w: user without password", ErrInvalidConfig)
	case c.Token != "" && c.User != "":
		return fmt.Errorf("%w: both token and user given", ErrInvalidConfig)
	case c.JetStream && c.StoreDir == "":
		return fmt.Errorf("%w: JetStream needs a store dir", ErrInvalidConfig)
	case c.ReadyTimeout <= 0:
		return fmt.Errorf("%w: ready timeout %v must be positive", ErrInvalidConfig, c.ReadyTimeout)
	}
	return nil
}

// Server is an embedded NATS server. It runs until Shutdown (or until the
// context given to Run ends); the caller owns it and must stop it.
type Server struct {
	ns    *server.Server
	fatal chan string
}

// RunServer starts a NATS server in this process and returns once it
// accepts connections. It returns an error wrapping ErrServerNotReady if
// the server cannot listen (port taken, JetStream store unusable) or is
// not ready within cfg.ReadyTimeout. The server never installs signal
// handlers.
func RunServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:    cfg.Name,
		Host:          cfg.Host,
		Port:          cfg.Port,
		Username:      cfg.User,
		Password:      cfg.Password,
		Authorization: cfg.Token,
		JetStream:     cfg.JetStream,
		StoreDir:      cfg.StoreDir,
		NoSigs:        true,
		// The embedder decides where logs go: only through Logger.
		NoLog: true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsbus: new server: %w", err)
	}
	s := &Server{ns: ns, fatal: make(chan string, 1)}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The logger is installed even when discarding: it is how RunServer
	// learns at once that the server gave up (a taken port, say) instead
	// of waiting out ReadyTimeout.
	ns.SetLoggerV2(&serverLog{log: log, fatal: s.fatal}, log.Enabled(context.Background(), slog.LevelDebug), false, false)
	ns.Start()
	if err := s.waitReady(cfg.ReadyTimeout); err != nil {
		s.Shutdown()
		return nil, err
	}
	return s, nil
}

// ReadyForConnections waits up to timeout for the server to accept
// connections; it returns an error wrapping ErrServerNotReady if it does
// not.
func (s *Server) ReadyForConnections(timeout time.Duration) error {
	return s.waitReady(timeout)
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		// 50 ms per probe: ReadyForConnections sleeps 25 ms between its
		// checks for longer durations but spins for shorter ones.
		if s.ns.ReadyForConnections(50 * time.Millisecond) {
			return nil
		}
		select {
		case msg := <-s.fatal:
			s.fatal <- msg // keep it for later callers
			return fmt.Errorf("%w: %s", ErrServerNotReady, msg)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %v", ErrServerNotReady, timeout)
		}
	}
}

// ClientURL returns the URL clients connect to, such as
// "nats://127.0.0.1:40123", with the actual port when Port was -1.
func (s *Server) ClientURL() string {
	return s.ns.ClientURL()
}

// Port returns the client port the server listens on.
func (s *Server) Port() int {
	if a, ok := s.ns.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// NATSServer returns the underlying nats-server, for monitoring or
// configuration beyond ServerConfig.
func (s *Server) NATSServer() *server.Server {
	return s.ns
}

// Shutdown stops the server, closing every client connection, and waits
// until it has stopped. Calling it again does nothing.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// Run waits until ctx ends, then shuts the server down and returns nil. It
// returns ErrServerStopped if the server stops first (Shutdown was called
// elsewhere), so that an errgroup running it cancels its siblings.
func (s *Server) Run(ctx context.Context) error {
	stopped := make(chan struct{})
	go func() {
		s.ns.WaitForShutdown()
		close(stopped)
	}()
	select {
	case <-ctx.Done():
		s.Shutdown()
		return nil
	case <-stopped:
		return ErrServerStopped
	}
}

// serverLog adapts slog to nats-server's Logger interface.
type serverLog struct {
	log   *slog.Logger
	fatal chan<- string
}

func (l *serverLog) emit(level slog.Level, event, format string, args []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, event, "detail", fmt.Sprintf(format, args...))
	}
}

// Noticef implements server.Logger.
func (l *serverLog) Noticef(format string, v ...any) {
	l.emit(slog.LevelInfo, "nats-server-notice", format, v)
}

// Warnf implements server.Logger.
func (l *serverLog) Warnf(format string, v ...any) {
	l.emit(slog.LevelWarn, "nats-server-warning", format, v)
}

// Fatalf implements server.Logger. nats-server's own logger exits the
// process here; an embedded server must not, so the message is logged
// and handed to RunServer, which reports it as an error.
func (l *serverLog) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error("nats-server-fatal", "detail", msg)
	select {
	case l.fatal <- msg:
	default:
	}
}

// Errorf implements server.Logger.
func (l *serverLog) Errorf(format string, v ...any) {
	l.emit(slog.LevelError, "nats-server-error", format, v)
}

// Debugf implements server.Logger.
func (l *serverLog) Debugf(format string, v ...any) {
	l.emit(slog.LevelDebug, "nats-server-debug", format, v)
}

// Tracef implements server.Logger.
func (l *serverLog) Tracef(format string, v ...any) {
	l.emit(slog.LevelDebug, "nats-server-trace", format, v)
}
