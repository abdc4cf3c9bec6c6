// Command broker runs one of kiln's service brokers as its own process,
// serving the Open Service Broker API, so that a kiln controller (or any
// other OSB platform) can register it by URL.
//
// Usage:
//
//	broker [-listen 127.0.0.1:0] [-username U -password P]
//	       [-broker memory|postgres] [-postgres-url URL] [-async]
//
// Every flag can also be set with an environment variable: KILN_BROKER_LISTEN,
// KILN_BROKER_USERNAME, KILN_BROKER_PASSWORD, KILN_BROKER (the broker kind),
// KILN_BROKER_POSTGRES_URL, KILN_BROKER_PASSWORD_KEY, KILN_BROKER_NAME_PREFIX,
// KILN_BROKER_ASYNC, KILN_BROKER_ASYNC_POLLS, KILN_LOG_LEVEL; flags win.
//
// Once listening it prints "broker=http://HOST:PORT" and then "ready" on
// standard output; logs go to standard error. SIGTERM or SIGINT shut it
// down gracefully, letting requests in flight finish.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/internal/rolemain"
	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/services/membroker"
	"github.com/kiln-paas/kiln/services/osb"
	"github.com/kiln-paas/kiln/services/pgbroker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "broker:", err)
		os.Exit(1)
	}
}

// options are the parsed flags and environment.
type options struct {
	listen, username, password string
	kind                       string
	postgresURL, passwordKey   string
	namePrefix                 string
	async                      bool
	asyncPolls                 int
	logLevel                   string
}

func parse(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	env := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	envBool := func(k string) bool { b, _ := strconv.ParseBool(getenv(k)); return b }
	envInt := func(k string, def int) int {
		if n, err := strconv.Atoi(getenv(k)); err == nil {
			return n
		}
		return def
	}
	var o options
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", env("KILN_BROKER_LISTEN", "127.0.0.1:0"), "address to serve the OSB API on")
	fs.StringVar(&o.username, "username", env("KILN_BROKER_USERNAME", ""), "basic-auth user platforms must send")
	fs.StringVar(&o.password, "password", env("KILN_BROKER_PASSWORD", ""), "basic-auth password platforms must send")
	fs.StringVar(&o.kind, "broker", env("KILN_BROKER", "memory"), "which broker: memory or postgres")
	fs.StringVar(&o.postgresURL, "postgres-url", env("KILN_BROKER_POSTGRES_URL", ""), "postgres: administrator URL of the server")
	fs.StringVar(&o.passwordKey, "password-key", env("KILN_BROKER_PASSWORD_KEY", ""), "postgres: key binding passwords derive from (stable credentials across restarts)")
	fs.StringVar(&o.namePrefix, "name-prefix", env("KILN_BROKER_NAME_PREFIX", ""), "postgres: prefix of created databases and roles (default kiln)")
	fs.BoolVar(&o.async, "async", envBool("KILN_BROKER_ASYNC"), "memory: provision and deprovision asynchronously")
	fs.IntVar(&o.asyncPolls, "async-polls", envInt("KILN_BROKER_ASYNC_POLLS", 1), "memory: polls an async operation stays in progress")
	fs.StringVar(&o.logLevel, "log-level", env("KILN_LOG_LEVEL", "info"), "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

// newBroker builds the broker o names; close releases it.
func newBroker(o options, log *slog.Logger, reg prometheus.Registerer) (b services.Broker, closeFn func(), err error) {
	switch o.kind {
	case "memory":
		m, err := membroker.New(membroker.Config{Async: o.async, AsyncPolls: o.asyncPolls})
		return m, func() {}, err
	case "postgres", "postgresql":
		if o.postgresURL == "" {
			return nil, nil, errors.New("-broker postgres needs -postgres-url or KILN_BROKER_POSTGRES_URL")
		}
		p, err := pgbroker.New(pgbroker.Config{
			AdminURL:    o.postgresURL,
			NamePrefix:  o.namePrefix,
			PasswordKey: []byte(o.passwordKey),
			Logger:      log,
			Registerer:  reg,
		})
		if err != nil {
			return nil, nil, err
		}
		return p, p.Close, nil
	}
	return nil, nil, fmt.Errorf("unknown broker %q (want memory or postgres)", o.kind)
}

// run serves the broker until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	broker, closeBroker, err := newBroker(o, log, reg)
	if err != nil {
		return err
	}
	defer closeBroker()
	api, err := osb.NewServer(broker, osb.Config{Username: o.username, Password: o.password, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	if o.username == "" {
		log.Warn("broker-unauthenticated", "hint", "set -username and -password")
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", api)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}

	// OSB platforms wait 60 s for an answer, but a broker being stopped
	// lets requests in flight finish within rolemain.ShutdownTimeout only,
	// not to hold its supervisor that long.
	g, gctx := errgroup.WithContext(ctx)
	rolemain.ServeHTTP(gctx, g, ln, mux, log)
	g.Go(func() error {
		<-gctx.Done()
		log.Info("broker-stopping")
		return nil
	})
	ep := rolemain.HTTPEndpoint("broker", ln)
	log.Info("broker-started", "url", ep.URL, "broker", o.kind)
	g.Go(func() error { return rolemain.Announce(stdout, ep) })
	return g.Wait()
}
