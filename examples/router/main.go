// Command router runs one kiln router: the HTTP reverse proxy in front of
// every app instance, fed by route registrations on an external NATS bus.
//
//	go run ./examples/router --nats nats://10.0.0.2:4222 --addr :80
//
// When it serves it prints its endpoints and "ready":
//
//	router=http://127.0.0.1:8080
//	admin=http://127.0.0.1:8082
//	ready
//
// The admin endpoint serves /healthz, /varz and /metrics. Every flag has an
// environment variable, KILN_ and the flag's name in upper case with dashes
// as underscores (--empty-route-grace is KILN_EMPTY_ROUTE_GRACE); a flag on
// the command line wins. Port 0 picks a free port. SIGTERM or Ctrl-C drains
// requests in flight and exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/bus/natsbus"
	"github.com/kiln-paas/kiln/router"
)

type options struct {
	nats            string
	addr, adminAddr string
	index           int
	emptyRouteGrace time.Duration
	pruneThreshold  time.Duration
	accessLog       bool
	logLevel        string
}

func main() {
	var o options
	fset := flag.NewFlagSet("router", flag.ExitOnError)
	fset.StringVar(&o.nats, "nats", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated")
	fset.StringVar(&o.addr, "addr", "127.0.0.1:8080", "proxy listen address")
	fset.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:8082", "status listen address (/healthz, /varz, /metrics)")
	fset.IntVar(&o.index, "index", 0, "component index")
	fset.DurationVar(&o.emptyRouteGrace, "empty-route-grace", router.DefaultConfig().EmptyRouteGrace, "how long a route without instances answers 503 before 404")
	fset.DurationVar(&o.pruneThreshold, "prune-threshold", router.DefaultConfig().PruneThreshold, "how long an endpoint lives without being re-registered")
	fset.BoolVar(&o.accessLog, "access-log", false, "write the access log to stdout")
	fset.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	_ = fset.Parse(os.Args[1:])
	if err := applyEnv(fset); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	logger := newLogger(o.logLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, logger); err != nil {
		logger.Error("router-failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	adminLn, err := net.Listen("tcp", o.adminAddr)
	if err != nil {
		return fmt.Errorf("listen admin: %w", err)
	}
	defer adminLn.Close()

	busCfg := natsbus.DefaultConfig()
	busCfg.URLs = strings.Split(o.nats, ",")
	busCfg.Name = "router"
	busCfg.Logger = logger.With("role", "bus")
	b, err := natsbus.Connect(ctx, busCfg)
	if err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	defer b.Close()

	cfg := router.DefaultConfig()
	cfg.Index = o.index
	cfg.Hosts = []string{ln.Addr().String()}
	cfg.EmptyRouteGrace = o.emptyRouteGrace
	cfg.PruneThreshold = o.pruneThreshold
	if o.accessLog {
		cfg.AccessLog = os.Stdout
	}
	rt, err := router.New(cfg, router.Deps{Bus: b, Logger: logger.With("role", "router"), Registerer: prometheus.NewRegistry()})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return rt.Run(gctx) })
	g.Go(func() error { return rt.Serve(gctx, ln) })
	serveHTTP(g, gctx, adminLn, rt.AdminHandler())
	fmt.Printf("router=http://%s\nadmin=http://%s\nready\n", ln.Addr(), adminLn.Addr())
	return g.Wait()
}

// applyEnv sets every flag not given on the command line from its KILN_*
// variable.
func applyEnv(fset *flag.FlagSet) error {
	given := map[string]bool{}
	fset.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fset.VisitAll(func(f *flag.Flag) {
		name := "KILN_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && !given[f.Name] {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// serveHTTP serves h on ln in g until ctx ends, then shuts down gracefully.
func serveHTTP(g *errgroup.Group, ctx context.Context, ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
}
