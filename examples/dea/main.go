// Command dea runs one kiln droplet execution agent on an external NATS
// bus: it answers placement requests, fetches droplets from the
// controller, runs app instances in containers and registers their routes.
//
//	go run ./examples/dea --nats nats://10.0.0.2:4222 --data-dir /var/lib/kiln-dea \
//	    --addr 10.0.0.4:9025 --memory-mb 8192
//
// When it serves it prints its endpoint (the file server and /healthz,
// /varz, /metrics) and "ready":
//
//	dea=http://127.0.0.1:9025
//	ready
//
// The backend is warden/linux (namespaces and cgroups) with --backend linux,
// or auto when the host allows it (root on Linux), else warden/process, with
// a warning. Every flag has an environment variable, KILN_ and the flag's
// name in upper case with dashes as underscores (--memory-mb is
// KILN_MEMORY_MB); a flag on the command line wins. Port 0 picks a free
// port. SIGTERM or Ctrl-C stops the instances (routes unregistered first;
// with --leave-running they keep running for the next DEA on --data-dir).
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
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/bus/natsbus"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/linux"
	"github.com/kiln-paas/kiln/warden/process"
)

type options struct {
	nats              string
	addr              string
	host              string
	dataDir           string
	backend           string
	memoryMB          int
	index             int
	heartbeatInterval time.Duration
	leaveRunning      bool
	logLevel          string
}

func main() {
	linux.Init() // a re-executed copy becomes a container init here
	var o options
	fset := flag.NewFlagSet("dea", flag.ExitOnError)
	fset.StringVar(&o.nats, "nats", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated")
	fset.StringVar(&o.addr, "addr", "127.0.0.1:9025", "file server and status listen address")
	fset.StringVar(&o.host, "host", "", "address routers use to reach instances (default: the backend's host IP)")
	fset.StringVar(&o.dataDir, "data-dir", "kiln-dea", "directory for droplets, containers and the snapshot")
	fset.StringVar(&o.backend, "backend", "auto", "container backend: auto, linux or process")
	fset.IntVar(&o.memoryMB, "memory-mb", 4096, "memory offered to apps, in MB")
	fset.IntVar(&o.index, "index", 0, "component index")
	fset.DurationVar(&o.heartbeatInterval, "heartbeat-interval", dea.DefaultConfig().HeartbeatInterval, "period of dea.heartbeat")
	fset.BoolVar(&o.leaveRunning, "leave-running", false, "leave instances running at exit for the next DEA on data-dir")
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
		logger.Error("dea-failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()

	busCfg := natsbus.DefaultConfig()
	busCfg.URLs = strings.Split(o.nats, ",")
	busCfg.Name = "dea"
	busCfg.Logger = logger.With("role", "bus")
	b, err := natsbus.Connect(ctx, busCfg)
	if err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	defer b.Close()

	backend, closeBackend, err := newBackend(o.backend, dataDir, logger)
	if err != nil {
		return err
	}
	defer closeBackend()

	cfg := dea.DefaultConfig()
	cfg.BaseDir = filepath.Join(dataDir, "dea")
	cfg.Index = o.index
	cfg.Host = o.host
	cfg.FileServerURL = "http://" + ln.Addr().String()
	cfg.MemoryMB = o.memoryMB
	cfg.HeartbeatInterval = o.heartbeatInterval
	cfg.LeaveRunning = o.leaveRunning
	cfg.HealthCheckInterval = 10 * time.Millisecond
	d, err := dea.New(cfg, dea.Deps{Bus: b, Backend: backend, Logger: logger.With("role", "dea"), Registerer: prometheus.NewRegistry()})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	serveHTTP(g, gctx, ln, d.Handler())
	g.Go(func() error { return d.Run(gctx) })
	fmt.Printf("dea=http://%s\nready\n", ln.Addr())
	return g.Wait()
}

// newBackend returns the container backend and its closer.
func newBackend(kind, dataDir string, logger *slog.Logger) (warden.Backend, func(), error) {
	useLinux := kind == "linux"
	switch kind {
	case "auto":
		if err := linux.Check(); err != nil {
			logger.Warn("warden-linux-unavailable", "err", err, "fallback", "warden/process (no isolation)")
		} else {
			useLinux = true
		}
	case "linux":
	case "process":
		logger.Warn("warden-process", "note", "apps run as plain host processes without isolation")
	default:
		return nil, nil, fmt.Errorf("unknown backend %q (auto, linux or process)", kind)
	}
	if useLinux {
		cfg := linux.DefaultConfig()
		cfg.Root = filepath.Join(dataDir, "containers-linux")
		cfg.Logger = logger.With("role", "warden")
		b, err := linux.New(cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("warden/linux: %w", err)
		}
		return b, func() { _ = b.Close() }, nil
	}
	cfg := process.DefaultConfig()
	cfg.Root = filepath.Join(dataDir, "containers")
	cfg.ExitPollInterval = 100 * time.Millisecond
	cfg.Logger = logger.With("role", "warden")
	b, err := process.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("warden/process: %w", err)
	}
	return b, func() { _ = b.Close() }, nil
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
