// Command kernel runs a whole kiln platform in one process: an embedded NATS
// server, a cloud controller on SQLite and a filesystem blobstore, a DEA, a
// router and a health manager, all under one data directory.
//
//	go run ./examples/kernel
//
// boots it in seconds, creates the administrator on first start (printing
// the generated password once, as admin-email= and admin-password= lines,
// unless --admin-password or KILN_ADMIN_PASSWORD gives one), pushes the
// bundled sample app and prints where everything listens, one "name=url"
// line per endpoint, then "ready":
//
//	controller=http://127.0.0.1:9022
//	router=http://127.0.0.1:8080
//	nats=nats://127.0.0.1:4222
//	admin=http://127.0.0.1:9023
//	dea=http://127.0.0.1:40123
//	app=http://hello.localhost:8080
//	ready
//
// App hosts are <name>.<domain>, and the default domain "localhost" makes
// http://hello.localhost:8080 work in curl and browsers without DNS.
//
// The sample is examples/apps/static, found by walking up from the working
// directory to kiln's go.mod; run elsewhere, the copy embedded in this
// command (sample/) is pushed instead. --sample names another directory and
// --no-sample skips the push. The sample is pushed once: on later starts it
// is already there.
//
// Everything is kept in --data-dir: the SQLite database, blobs (packages,
// droplets, build caches), the DEA's droplet cache and containers, the token
// signing key. Apps that were started come back after a restart: the health
// manager sees them missing and the controller places them again.
//
// SIGTERM or Ctrl-C shuts down gracefully: the DEA unregisters its routes and
// stops its apps, the router drains, the store is closed.
//
// Every flag has an environment variable: KILN_ and the flag's name in upper
// case with dashes as underscores (--data-dir is KILN_DATA_DIR); a flag given
// on the command line wins. Listen addresses with port 0 pick a free port.
//
// The DEA uses warden/linux (namespaces and cgroups) when --backend is
// "linux", or "auto" and the host allows it (root on Linux); otherwise
// warden/process, with a warning. Staging always uses warden/process, since
// buildpacks run the host's toolchains.
package main

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/bus/natsbus"
	"github.com/kiln-paas/kiln/controller"
	"github.com/kiln-paas/kiln/controller/blobstore/fsblob"
	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/controller/store/sqlstore"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/healthmgr"
	"github.com/kiln-paas/kiln/internal/rolemain"
	"github.com/kiln-paas/kiln/router"
	"github.com/kiln-paas/kiln/warden/linux"
)

// sampleFS is a copy of examples/apps/static, pushed when the original
// cannot be found (the command was built and run outside the repository).
//
//go:embed sample
var sampleFS embed.FS

// sampleName is the name (and host prefix) of the bundled sample app.
const sampleName = "hello"

// options are the command's flags.
type options struct {
	dataDir        string
	controllerAddr string
	routerAddr     string
	adminAddr      string
	natsAddr       string
	deaAddr        string
	domain         string
	adminEmail     string
	adminPassword  string
	noSample       bool
	sample         string
	backend        string
	memoryMB       int
	logLevel       string
}

func main() {
	linux.Init() // a re-executed copy becomes a container init here
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(rolemain.ExitUsage)
	}
	cmd := rolemain.Command{Name: "kernel",
		Run: func(ctx context.Context, logger *slog.Logger) error { return run(ctx, o, os.Stdout, logger) }}
	os.Exit(cmd.Execute(o.logLevel))
}

func parseFlags(args []string) (options, error) {
	var o options
	fset := flag.NewFlagSet("kernel", flag.ContinueOnError)
	fset.StringVar(&o.dataDir, "data-dir", "kiln-data", "directory holding the database, blobs and containers")
	fset.StringVar(&o.controllerAddr, "controller-addr", "127.0.0.1:9022", "controller API listen address")
	fset.StringVar(&o.routerAddr, "router-addr", "127.0.0.1:8080", "router listen address")
	fset.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:9023", "status endpoints (/router/, /controller/, /dea/, /healthmgr/ each with healthz, varz, metrics)")
	fset.StringVar(&o.natsAddr, "nats-addr", "127.0.0.1:0", "embedded NATS server listen address")
	fset.StringVar(&o.deaAddr, "dea-addr", "127.0.0.1:0", "DEA file server listen address")
	fset.StringVar(&o.domain, "domain", "localhost", "app domain: apps are served at <name>.<domain>")
	fset.StringVar(&o.adminEmail, "admin-email", "admin@kiln.local", "administrator email, created at first start")
	fset.StringVar(&o.adminPassword, "admin-password", "", "administrator password at creation (empty: generate one and print it)")
	fset.BoolVar(&o.noSample, "no-sample", false, "do not push the sample app")
	fset.StringVar(&o.sample, "sample", "", "directory of the sample app (default: examples/apps/static of the repository, else a built-in copy)")
	fset.StringVar(&o.backend, "backend", "auto", "DEA container backend: auto, linux or process")
	fset.IntVar(&o.memoryMB, "memory-mb", 4096, "memory the DEA offers to apps, in MB")
	fset.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	if err := rolemain.ParseFlags(fset, args, nil); err != nil {
		return o, err
	}
	if fset.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fset.Args())
	}
	return o, nil
}

// listeners are the kernel's sockets, opened first so that port 0 resolves
// before the roles are configured.
type listeners struct {
	rolemain.Listeners
	controller, router, admin, dea net.Listener
}

func openListeners(o options) (*listeners, error) {
	ls, err := rolemain.Listen(o.controllerAddr, o.routerAddr, o.adminAddr, o.deaAddr)
	if err != nil {
		return nil, err
	}
	return &listeners{Listeners: ls, controller: ls[0], router: ls[1], admin: ls[2], dea: ls[3]}, nil
}

// run assembles the kernel and serves until ctx ends.
func run(ctx context.Context, o options, stdout io.Writer, logger *slog.Logger) error {
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	lns, err := openListeners(o)
	if err != nil {
		return err
	}
	defer lns.Close()

	host, portStr, err := net.SplitHostPort(o.natsAddr)
	if err != nil {
		return fmt.Errorf("nats-addr: %w", err)
	}
	natsCfg := natsbus.DefaultServerConfig()
	natsCfg.Host = host
	if natsCfg.Port, err = strconv.Atoi(portStr); err != nil {
		return fmt.Errorf("nats-addr: %w", err)
	}
	if natsCfg.Port == 0 {
		natsCfg.Port = -1
	}
	natsCfg.Logger = logger.With("role", "nats")
	nats, err := natsbus.RunServer(natsCfg)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nats.Shutdown()
	b, err := rolemain.ConnectNATS(ctx, nats.ClientURL(), "kernel", logger)
	if err != nil {
		return err
	}
	defer b.Close()

	st, err := sqlstore.Open(ctx, sqlstore.DefaultConfig(filepath.Join(dataDir, "kiln.db")))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer st.Close()
	blobs, err := fsblob.New(fsblob.DefaultConfig(filepath.Join(dataDir, "blobs")))
	if err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}

	tokenKey, err := rolemain.LoadKey(filepath.Join(dataDir, "token.key"))
	if err != nil {
		return err
	}
	ccURL := "http://" + lns.controller.Addr().String()
	ccCfg := controller.DefaultConfig()
	ccCfg.ExternalURL = ccURL
	ccCfg.Admins = []string{o.adminEmail}
	ccCfg.TokenKey = tokenKey
	ccCfg.Domain = o.domain
	ccCfg.TrustForwardedFor = true
	ccCfg.TempDir = filepath.Join(dataDir, "tmp")
	if err := os.MkdirAll(ccCfg.TempDir, 0o700); err != nil {
		return fmt.Errorf("tmp dir: %w", err)
	}

	stager, closeStager, err := rolemain.Stager(dataDir, ccCfg.TempDir, logger)
	if err != nil {
		return err
	}
	defer closeStager()

	ccReg := prometheus.NewRegistry()
	cc, err := controller.New(ccCfg, controller.Deps{Bus: b, Store: st, Blobs: blobs, Stager: stager,
		Logger: logger.With("role", "controller"), Registerer: ccReg})
	if err != nil {
		return err
	}

	backend, closeBackend, err := rolemain.Backend(o.backend, dataDir, logger)
	if err != nil {
		return err
	}
	defer closeBackend()
	deaCfg := dea.DefaultConfig()
	deaCfg.BaseDir = filepath.Join(dataDir, "dea")
	deaCfg.FileServerURL = "http://" + lns.dea.Addr().String()
	deaCfg.MemoryMB = o.memoryMB
	deaCfg.HealthCheckInterval = 10 * time.Millisecond
	deaCfg.DrainTimeout = 500 * time.Millisecond
	deaCfg.StopGrace = 5 * time.Second
	d, err := dea.New(deaCfg, dea.Deps{Bus: b, Backend: backend, Logger: logger.With("role", "dea"), Registerer: prometheus.NewRegistry()})
	if err != nil {
		return err
	}

	rtCfg := router.DefaultConfig()
	rtCfg.EmptyRouteGrace = 5 * time.Second
	rt, err := router.New(rtCfg, router.Deps{Bus: b, Logger: logger.With("role", "router")})
	if err != nil {
		return err
	}

	src, err := healthmgr.NewBulkSource(ccURL, b, nil)
	if err != nil {
		return err
	}
	hmCfg := healthmgr.DefaultConfig()
	// The DEA is in this process and answers healthmanager.start at once.
	hmCfg.StartupWait = 2 * time.Second
	hmCfg.LeaderElection = false
	// A START for a crashed index can reach the controller before the
	// droplet.exited that caused it, and is then skipped as "running":
	// retry soon rather than after HM9000's 30 s, and analyse often, which
	// costs little with one DEA.
	hmCfg.Policy.RetryAfter = time.Second
	hmCfg.AnalysisInterval = time.Second
	// Repair a crash soon after a push or scale, not after 30 s.
	hmCfg.Policy.Grace = 3 * time.Second
	hm, err := healthmgr.New(hmCfg, healthmgr.Deps{Bus: b, Desired: src, Logger: logger.With("role", "healthmgr"), Registerer: prometheus.NewRegistry()})
	if err != nil {
		return err
	}

	admin := http.NewServeMux()
	admin.Handle("/router/", http.StripPrefix("/router", rt.AdminHandler()))
	admin.Handle("/controller/", http.StripPrefix("/controller", cc.StatusHandler()))
	admin.Handle("/dea/", http.StripPrefix("/dea", d.Handler()))
	admin.Handle("/healthmgr/", http.StripPrefix("/healthmgr", hm.Handler()))
	admin.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })

	g, gctx := errgroup.WithContext(ctx)
	rolemain.ServeHTTP(gctx, g, lns.controller, cc.Handler(), logger)
	rolemain.ServeHTTP(gctx, g, lns.dea, d.Handler(), logger)
	rolemain.ServeHTTP(gctx, g, lns.admin, admin, logger)
	g.Go(func() error { return rt.Run(gctx) })
	g.Go(func() error { return rt.Serve(gctx, lns.router) })
	g.Go(func() error { return d.Run(gctx) })
	g.Go(func() error { return cc.Run(gctx) })
	g.Go(func() error { return hm.Run(gctx) })
	g.Go(func() error {
		err := bootstrap(gctx, o, cc, ccURL, lns.router.Addr().String(), nats.ClientURL(), lns, stdout, logger)
		if err != nil && gctx.Err() == nil {
			return err
		}
		return nil
	})
	err = g.Wait()
	logger.Info("kernel-stopped", "err", err)
	return err
}

// bootstrap creates the administrator, pushes the sample and prints the
// endpoints and "ready".
func bootstrap(ctx context.Context, o options, cc *controller.Controller, ccURL, routerAddr, natsURL string, lns *listeners, stdout io.Writer, logger *slog.Logger) error {
	password := o.adminPassword
	generated := false
	if password == "" {
		password = rolemain.RandomHex(12)
		generated = true
	}
	err := cc.CreateUser(ctx, o.adminEmail, password)
	switch {
	case err == nil && generated:
		// Printed once: later starts find the admin and keep its password.
		fmt.Fprintf(stdout, "admin-email=%s\nadmin-password=%s\n", o.adminEmail, password)
	case err == nil:
		logger.Info("admin-created", "email", o.adminEmail)
	case errors.Is(err, store.ErrExists):
		// Existing admin: keep its password.
	default:
		return fmt.Errorf("create admin: %w", err)
	}
	if err := rolemain.WriteEndpoints(stdout, rolemain.Endpoint{Name: "controller", URL: ccURL},
		rolemain.Endpoint{Name: "router", URL: "http://" + routerAddr}, rolemain.Endpoint{Name: "nats", URL: natsURL},
		rolemain.HTTPEndpoint("admin", lns.admin), rolemain.HTTPEndpoint("dea", lns.dea)); err != nil {
		return err
	}
	var app []rolemain.Endpoint
	if !o.noSample {
		_, port, _ := net.SplitHostPort(routerAddr)
		if err := pushSample(ctx, o, cc, ccURL, password, generated, logger); err != nil {
			logger.Warn("sample-not-pushed", "err", err)
		} else {
			app = append(app, rolemain.Endpoint{Name: "app", URL: fmt.Sprintf("http://%s.%s:%s", sampleName, o.domain, port)})
		}
	}
	return rolemain.Announce(stdout, app...)
}

// pushSample pushes and starts the sample unless it exists. It needs the
// admin's password: when the admin was created at an earlier start and no
// password was given, the sample is left to the operator.
func pushSample(ctx context.Context, o options, cc *controller.Controller, ccURL, password string, generated bool, logger *slog.Logger) error {
	cl, err := client.New(ccURL, nil)
	if err != nil {
		return err
	}
	if _, err := cl.Login(ctx, o.adminEmail, password); err != nil {
		if !generated {
			return fmt.Errorf("admin login: %w", err)
		}
		// The admin existed with another password: the sample was pushed
		// at the first start, or the operator pushes it.
		logger.Info("sample-skipped", "reason", "admin exists; give --admin-password to push")
		return nil
	}
	if _, err := cl.App(ctx, sampleName); err == nil {
		return nil // pushed at an earlier start; the health manager restarts it
	}
	dir, cleanup, err := sampleDir(o, filepath.Join(o.dataDir, "tmp"))
	if err != nil {
		return err
	}
	defer cleanup()
	if err := cl.CreateApp(ctx, client.AppRequest{Name: sampleName, URIs: []string{sampleName + "." + o.domain}, Instances: 1, Memory: 64}); err != nil {
		return fmt.Errorf("create sample: %w", err)
	}
	if _, err := cl.Push(ctx, sampleName, dir); err != nil {
		return fmt.Errorf("push sample: %w", err)
	}
	if err := cl.Start(ctx, sampleName); err != nil {
		return fmt.Errorf("start sample: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := cl.WaitRunning(wctx, sampleName, 50*time.Millisecond); err != nil {
		return fmt.Errorf("sample not running: %w", err)
	}
	logger.Info("sample-pushed", "app", sampleName, "dir", dir)
	return nil
}

// sampleDir returns the directory of the sample to push: --sample, else
// examples/apps/static of the enclosing kiln repository, else the embedded
// copy written under tmp.
func sampleDir(o options, tmp string) (string, func(), error) {
	if o.sample != "" {
		return o.sample, func() {}, nil
	}
	if root, ok := moduleRoot(); ok {
		dir := filepath.Join(root, "examples", "apps", "static")
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir, func() {}, nil
		}
	}
	dir, err := os.MkdirTemp(tmp, "sample-")
	if err != nil {
		return "", nil, err
	}
	sub, err := fs.Sub(sampleFS, "sample")
	if err == nil {
		err = os.CopyFS(dir, sub)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("write sample: %w", err)
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// moduleRoot walks up from the working directory to the directory of kiln's
// go.mod.
func moduleRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/kiln-paas/kiln\n") {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}
