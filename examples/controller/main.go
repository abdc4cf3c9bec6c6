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
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/controller"
	"github.com/kiln-paas/kiln/controller/blobstore/fsblob"
	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/controller/store/sqlstore"
	"github.com/kiln-paas/kiln/internal/rolemain"
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
	cmd := rolemain.Command{Name: "controller", Flags: fset,
		Run: func(ctx context.Context, logger *slog.Logger) error { return run(ctx, o, logger) }}
	os.Exit(cmd.Main(os.Args[1:]))
}

func run(ctx context.Context, o options, logger *slog.Logger) error {
	dataDir, err := filepath.Abs(o.dataDir)
	if err == nil {
		err = os.MkdirAll(filepath.Join(dataDir, "tmp"), 0o700)
	}
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	lns, err := rolemain.Listen(o.addr, o.adminAddr)
	if err != nil {
		return err
	}
	defer lns.Close()
	ln, adminLn := lns[0], lns[1]

	b, err := rolemain.ConnectNATS(ctx, o.nats, "controller", logger)
	if err != nil {
		return err
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
		if key, err = rolemain.LoadKey(filepath.Join(dataDir, "token.key")); err != nil {
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

	stager, closeStager, err := rolemain.Stager(dataDir, cfg.TempDir, logger)
	if err != nil {
		return err
	}
	defer closeStager()

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
	rolemain.ServeHTTP(gctx, g, ln, cc.Handler(), logger)
	rolemain.ServeHTTP(gctx, g, adminLn, cc.StatusHandler(), logger)
	g.Go(func() error { return cc.Run(gctx) })
	g.Go(func() error {
		return rolemain.Announce(os.Stdout, rolemain.HTTPEndpoint("controller", ln), rolemain.HTTPEndpoint("admin", adminLn))
	})
	return g.Wait()
}
