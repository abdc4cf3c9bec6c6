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
	"flag"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/healthmgr"
	"github.com/kiln-paas/kiln/internal/rolemain"
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
	cmd := rolemain.Command{Name: "healthmgr", Flags: fset,
		Run: func(ctx context.Context, logger *slog.Logger) error { return run(ctx, o, logger) }}
	os.Exit(cmd.Main(os.Args[1:]))
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	lns, err := rolemain.Listen(o.addr)
	if err != nil {
		return err
	}
	defer lns.Close()
	ln := lns[0]
	b, err := rolemain.ConnectNATS(ctx, o.nats, "healthmgr", logger)
	if err != nil {
		return err
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
	rolemain.ServeHTTP(gctx, g, ln, hm.Handler(), logger)
	g.Go(func() error { return hm.Run(gctx) })
	g.Go(func() error { return rolemain.Announce(os.Stdout, rolemain.HTTPEndpoint("healthmgr", ln)) })
	return g.Wait()
}
