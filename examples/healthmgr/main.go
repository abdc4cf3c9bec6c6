// Command healthmgr runs one kiln health manager on an external NATS bus:
// it compares what DEAs report with what the controller wants (read from the
// controller's bulk API) and asks the controller to start or stop instances.
//
//	go run ./examples/healthmgr --nats nats://10.0.0.2:4222 --controller http://10.0.0.3:9022
//
// When it runs it prints its status endpoint (/healthz, /varz, /metrics) and
// "ready":
//
//	healthmgr=http://127.0.0.1:9026
//	ready
//
// Several health managers may share a bus; they elect a leader unless
// --leader-election=false. Every flag has an environment variable, KILN_ and
// the flag's name in upper case with dashes as underscores (--startup-wait
// is KILN_STARTUP_WAIT); a flag on the command line wins. Port 0 picks a
// free port.
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
	"github.com/kiln-paas/kiln/healthmgr"
)

type options struct {
	nats           string
	controller     string
	addr           string
	index          int
	startupWait    time.Duration
	grace          time.Duration
	heartbeatTTL   time.Duration
	leaderElection bool
	logLevel       string
}

func main() {
	var o options
	def := healthmgr.DefaultConfig()
	fset := flag.NewFlagSet("healthmgr", flag.ExitOnError)
	fset.StringVar(&o.nats, "nats", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated")
	fset.StringVar(&o.controller, "controller", "http://127.0.0.1:9022", "controller URL (its bulk API)")
	fset.StringVar(&o.addr, "addr", "127.0.0.1:9026", "status listen address")
	fset.IntVar(&o.index, "index", 0, "component index")
	fset.DurationVar(&o.startupWait, "startup-wait", def.StartupWait, "how long to only listen after starting")
	fset.DurationVar(&o.grace, "grace", def.Policy.Grace, "how long an app updated recently is left alone")
	fset.DurationVar(&o.heartbeatTTL, "heartbeat-ttl", def.Policy.HeartbeatTTL, "after this long without a heartbeat an instance is gone")
	fset.BoolVar(&o.leaderElection, "leader-election", def.LeaderElection, "elect one acting manager among those on the bus")
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
		logger.Error("healthmgr-failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	busCfg := natsbus.DefaultConfig()
	busCfg.URLs = strings.Split(o.nats, ",")
	busCfg.Name = "healthmgr"
	busCfg.Logger = logger.With("role", "bus")
	b, err := natsbus.Connect(ctx, busCfg)
	if err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	defer b.Close()
	src, err := healthmgr.NewBulkSource(o.controller, b, nil)
	if err != nil {
		return err
	}
	cfg := healthmgr.DefaultConfig()
	cfg.Index = o.index
	cfg.Host = ln.Addr().String()
	cfg.StartupWait = o.startupWait
	cfg.Policy.Grace = o.grace
	cfg.Policy.HeartbeatTTL = o.heartbeatTTL
	cfg.LeaderElection = o.leaderElection
	hm, err := healthmgr.New(cfg, healthmgr.Deps{Bus: b, Desired: src, Logger: logger.With("role", "healthmgr"), Registerer: prometheus.NewRegistry()})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	serveHTTP(g, gctx, ln, hm.Handler())
	g.Go(func() error { return hm.Run(gctx) })
	fmt.Printf("healthmgr=http://%s\nready\n", ln.Addr())
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
