// Command controller runs one kiln cloud controller: the REST API, staging
// (built-in buildpacks in warden/process containers) and placement, on an
// external NATS bus, with a SQLite file or a PostgreSQL database.
//
//	go run ./examples/controller --nats nats://10.0.0.2:4222 \
//	    --db postgres://kiln@db/kiln --data-dir /var/lib/kiln --addr :9022 \
//	    --external-url http://10.0.0.3:9022
//
// When it serves it prints its endpoints and "ready":
//
//	controller=http://127.0.0.1:9022
//	admin=http://127.0.0.1:9024
//	ready
//
// --db is a SQLite file path (default <data-dir>/kiln.db) or a postgres://
// URL; several controllers may share a PostgreSQL database (and then a
// blob directory and a --token-key). The admin endpoint serves /healthz,
// /varz and /metrics. --admin-email is an administrator; with
// --admin-password it is created when missing. Every flag has an environment
// variable, KILN_ and the flag's name in upper case with dashes as
// underscores (--external-url is KILN_EXTERNAL_URL); a flag on the command
// line wins. Port 0 picks a free port.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/bus/natsbus"
	"github.com/kiln-paas/kiln/controller"
	"github.com/kiln-paas/kiln/controller/blobstore/fsblob"
	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/controller/store/sqlstore"
	"github.com/kiln-paas/kiln/staging"
	"github.com/kiln-paas/kiln/warden/process"
)

type options struct {
	nats            string
	addr, adminAddr string
	externalURL     string
	dataDir, db     string
	dbSchema        string
	blobs           string
	domain          string
	adminEmail      string
	adminPassword   string
	tokenKey        string
	index           int
	logLevel        string
}

func main() {
	var o options
	fset := flag.NewFlagSet("controller", flag.ExitOnError)
	fset.StringVar(&o.nats, "nats", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated")
	fset.StringVar(&o.addr, "addr", "127.0.0.1:9022", "API listen address")
	fset.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:9024", "status listen address (/healthz, /varz, /metrics)")
	fset.StringVar(&o.externalURL, "external-url", "", "URL at which DEAs reach this controller (default http://<addr>)")
	fset.StringVar(&o.dataDir, "data-dir", "kiln-controller", "directory for the SQLite file, blobs and staging")
	fset.StringVar(&o.db, "db", "", "SQLite file or postgres:// URL (default <data-dir>/kiln.db)")
	fset.StringVar(&o.dbSchema, "db-schema", "", "PostgreSQL schema for kiln's tables (created when missing; empty: the default search_path)")
	fset.StringVar(&o.blobs, "blobs", "", "blobstore directory (default <data-dir>/blobs)")
	fset.StringVar(&o.domain, "domain", "", "app domain non-admin users must map URIs under (empty: any)")
	fset.StringVar(&o.adminEmail, "admin-email", "admin@kiln.local", "administrator email")
	fset.StringVar(&o.adminPassword, "admin-password", "", "create the administrator with this password when missing")
	fset.StringVar(&o.tokenKey, "token-key", "", "token signing key shared by controllers (default: <data-dir>/token.key, created)")
	fset.IntVar(&o.index, "index", 0, "component index")
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
		logger.Error("controller-failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	dataDir, err := filepath.Abs(o.dataDir)
	if err == nil {
		err = os.MkdirAll(filepath.Join(dataDir, "tmp"), 0o700)
	}
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
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
	busCfg.Name = "controller"
	busCfg.Logger = logger.With("role", "bus")
	b, err := natsbus.Connect(ctx, busCfg)
	if err != nil {
		return fmt.Errorf("bus: %w", err)
	}
	defer b.Close()

	stCfg := sqlstore.DefaultConfig(filepath.Join(dataDir, "kiln.db"))
	switch {
	case strings.HasPrefix(o.db, "postgres://") || strings.HasPrefix(o.db, "postgresql://"):
		stCfg.Driver, stCfg.DSN, stCfg.Schema = sqlstore.Postgres, o.db, o.dbSchema
	case o.db != "":
		stCfg.DSN = o.db
	}
	stCfg.Logger = logger.With("role", "store")
	st, err := sqlstore.Open(ctx, stCfg)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer st.Close()
	blobDir := o.blobs
	if blobDir == "" {
		blobDir = filepath.Join(dataDir, "blobs")
	}
	blobs, err := fsblob.New(fsblob.DefaultConfig(blobDir))
	if err != nil {
		return fmt.Errorf("blobstore: %w", err)
	}

	key := []byte(o.tokenKey)
	if len(key) == 0 {
		if key, err = loadKey(filepath.Join(dataDir, "token.key")); err != nil {
			return err
		}
	}
	cfg := controller.DefaultConfig()
	cfg.ExternalURL = o.externalURL
	if cfg.ExternalURL == "" {
		cfg.ExternalURL = "http://" + ln.Addr().String()
	}
	cfg.Admins = []string{o.adminEmail}
	cfg.TokenKey = key
	cfg.Domain = o.domain
	cfg.Index = o.index
	cfg.TempDir = filepath.Join(dataDir, "tmp")

	wcfg := process.DefaultConfig()
	wcfg.Root = filepath.Join(dataDir, "staging")
	wcfg.Logger = logger.With("role", "warden")
	stageBackend, err := process.New(wcfg)
	if err != nil {
		return fmt.Errorf("staging backend: %w", err)
	}
	defer stageBackend.Close()
	sc := staging.DefaultConfig()
	sc.Path = toolPath()
	sc.CacheDir = filepath.Join(dataDir, "staging-cache")
	sc.TempDir = cfg.TempDir
	sc.Buildpacks = buildpacks(hostGoCache())
	stager := staging.New(sc, stageBackend, logger.With("role", "staging"))

	reg := prometheus.NewRegistry()
	cc, err := controller.New(cfg, controller.Deps{Bus: b, Store: st, Blobs: blobs, Stager: stager,
		Logger: logger.With("role", "controller"), Registerer: reg})
	if err != nil {
		return err
	}
	if o.adminPassword != "" {
		if err := cc.CreateUser(ctx, o.adminEmail, o.adminPassword); err != nil && !errors.Is(err, store.ErrExists) {
			return fmt.Errorf("create admin: %w", err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	serveHTTP(g, gctx, ln, cc.Handler())
	serveHTTP(g, gctx, adminLn, cc.StatusHandler())
	g.Go(func() error { return cc.Run(gctx) })
	fmt.Printf("controller=http://%s\nadmin=http://%s\nready\n", ln.Addr(), adminLn.Addr())
	return g.Wait()
}

// buildpacks are the built-ins with Go stagings sharing the host's GOCACHE.
func buildpacks(goCache string) []staging.Buildpack {
	packs := staging.Builtins()
	for i, p := range packs {
		if _, ok := p.(staging.GoBuildpack); ok {
			packs[i] = staging.GoBuildpack{SharedBuildCache: goCache}
		}
	}
	return packs
}

// toolPath is PATH plus the Go toolchain's usual home when go is not on it.
func toolPath() string {
	p := os.Getenv("PATH")
	if _, err := exec.LookPath("go"); err != nil {
		p += string(os.PathListSeparator) + "/usr/local/go/bin"
	}
	return p
}

// hostGoCache is the host's GOCACHE, or "" (per-app caches) if unknown.
func hostGoCache() string {
	goTool := "go"
	if _, err := exec.LookPath(goTool); err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	out, err := exec.Command(goTool, "env", "GOCACHE").Output()
	if dir := strings.TrimSpace(string(out)); err == nil && dir != "off" {
		return dir
	}
	return ""
}

// loadKey reads the token signing key at path, creating it on first use so
// that login tokens survive restarts.
func loadKey(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		return b, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	key = []byte(hex.EncodeToString(key))
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	return key, nil
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
