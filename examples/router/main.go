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
	"flag"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/internal/rolemain"
	"github.com/kiln-paas/kiln/router"
)

type options struct {
	nats            string
	addr, adminAddr string
	index           int
	emptyRouteGrace time.Duration
	pruneThreshold  time.Duration
	accessLog       bool
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
	cmd := rolemain.Command{Name: "router", Flags: fset,
		Run: func(ctx context.Context, logger *slog.Logger) error { return run(ctx, o, logger) }}
	os.Exit(cmd.Main(os.Args[1:]))
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	lns, err := rolemain.Listen(o.addr, o.adminAddr)
	if err != nil {
		return err
	}
	defer lns.Close()
	ln, adminLn := lns[0], lns[1]
	b, err := rolemain.ConnectNATS(ctx, o.nats, "router", logger)
	if err != nil {
		return err
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
	rolemain.ServeHTTP(gctx, g, adminLn, rt.AdminHandler(), logger)
	g.Go(func() error {
		return rolemain.Announce(os.Stdout, rolemain.HTTPEndpoint("router", ln), rolemain.HTTPEndpoint("admin", adminLn))
	})
	return g.Wait()
}
