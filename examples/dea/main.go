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
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/internal/rolemain"
	"github.com/kiln-paas/kiln/warden/linux"
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
	cmd := rolemain.Command{Name: "dea", Flags: fset,
		Run: func(ctx context.Context, logger *slog.Logger) error { return run(ctx, o, logger) }}
	os.Exit(cmd.Main(os.Args[1:]))
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	lns, err := rolemain.Listen(o.addr)
	if err != nil {
		return err
	}
	defer lns.Close()
	ln := lns[0]
	b, err := rolemain.ConnectNATS(ctx, o.nats, "dea", logger)
	if err != nil {
		return err
	}
	defer b.Close()
	backend, closeBackend, err := rolemain.Backend(o.backend, dataDir, logger)
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
	rolemain.ServeHTTP(gctx, g, ln, d.Handler(), logger)
	g.Go(func() error { return d.Run(gctx) })
	g.Go(func() error { return rolemain.Announce(os.Stdout, rolemain.HTTPEndpoint("dea", ln)) })
	return g.Wait()
}
