package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/controller/store/storetest"
)

// postgresURLEnv names the variable holding a PostgreSQL URL for tests, e.g.
// postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable.
// The PostgreSQL tests are skipped only when it is empty.
const postgresURLEnv = "KILN_TEST_POSTGRES_URL"

// quiet discards the stores' logs in tests.
var quiet = slog.New(slog.DiscardHandler)

func openSQLite(t testing.TB, path string) *Store {
	t.Helper()
	cfg := DefaultConfig(path)
	cfg.Logger = quiet
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open sqlite %s: %v", path, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newSQLite(t *testing.T) store.Store {
	return openSQLite(t, filepath.Join(t.TempDir(), "kiln.db"))
}

// postgresURL returns the test server's URL or skips the test.
func postgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(postgresURLEnv)
	if u == "" {
		t.Skipf("%s is empty: PostgreSQL tests skipped", postgresURLEnv)
	}
	return u
}

// freshSchema returns a unique schema name and drops the schema when the test
// ends.
func freshSchema(t testing.TB, url string) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	schema := "kiln_test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			t.Errorf("parse %s: %v", postgresURLEnv, err)
			return
		}
		db := stdlib.OpenDB(*cfg)
		defer db.Close()
		if _, err := db.Exec("DROP SCHEMA IF EXISTS " + pgx.Identifier{schema}.Sanitize() + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

func openPostgres(t testing.TB, url, schema string) *Store {
	t.Helper()
	cfg := DefaultConfig("")
	cfg.Driver, cfg.DSN, cfg.Schema = Postgres, url, schema
	cfg.MaxOpenConns = 8
	cfg.Logger = quiet
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newPostgres(t *testing.T) store.Store {
	url := postgresURL(t)
	return openPostgres(t, url, freshSchema(t, url))
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, newSQLite)
}

func TestPostgresConformance(t *testing.T) {
	postgresURL(t)
	storetest.Run(t, newPostgres)
}

func TestConfigValidate(t *testing.T) {
	pg := DefaultConfig("")
	pg.Driver, pg.DSN = Postgres, "postgres://x"
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"default sqlite", DefaultConfig("/tmp/x.db"), true},
		{"postgres", pg, true},
		{"empty path", DefaultConfig(""), false},
		{"path with query", DefaultConfig("/tmp/x.db?mode=ro"), false},
		{"bad synchronous", func() Config { c := DefaultConfig("/x"); c.Synchronous = "OFF"; return c }(), false},
		{"unknown driver", Config{Driver: "mysql", DSN: "x"}, false},
		{"empty postgres dsn", Config{Driver: Postgres}, false},
		{"negative conns", func() Config { c := DefaultConfig("/x"); c.MaxOpenConns = -1; return c }(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, store.ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestRebind(t *testing.T) {
	tests := []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"SELECT a FROM t WHERE x = ? AND y IN (?, ?)", "SELECT a FROM t WHERE x = $1 AND y IN ($2, $3)"},
	}
	for _, tc := range tests {
		if got := postgresDialect.rebind(tc.in); got != tc.want {
			t.Errorf("rebind(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := sqliteDialect.rebind(tc.in); got != tc.in {
			t.Errorf("sqlite rebind(%q) = %q, want it unchanged", tc.in, got)
		}
	}
}

// TestReopen shows records survive closing and reopening the file, and that
// reopening does not migrate again.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kiln.db")
	s := openSQLite(t, path)
	a, err := s.CreateApp(ctx, store.App{Name: "web", Owner: "a@x", State: store.AppStarted, URIs: []string{"web.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openSQLite(t, path)
	got, err := s.GetApp(ctx, a.ID)
	if err != nil || got.Revision != 1 || got.URIs[0] != "web.com" {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	var n int
	if err := s.DB().QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n != SchemaVersion() {
		t.Errorf("schema_migrations has %d rows (%v), want %d", n, err, SchemaVersion())
	}
}

// schemaTooNew marks a database as migrated by a future version.
func schemaTooNew(t *testing.T, db *sql.DB, d *dialect) {
	t.Helper()
	if _, err := db.Exec(d.rebind("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"),
		SchemaVersion()+1, "from-the-future", 1); err != nil {
		t.Fatal(err)
	}
}

func TestSQLiteSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kiln.db")
	s := openSQLite(t, path)
	schemaTooNew(t, s.DB(), sqliteDialect)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig(path)
	cfg.Logger = quiet
	_, err := Open(context.Background(), cfg)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open on a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

func TestPostgresSchemaTooNew(t *testing.T) {
	url := postgresURL(t)
	schema := freshSchema(t, url)
	s := openPostgres(t, url, schema)
	schemaTooNew(t, s.DB(), postgresDialect)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Driver: Postgres, DSN: url, Schema: schema, Logger: quiet}
	_, err := Open(context.Background(), cfg)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open on a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

// TestPostgresConcurrentOpen starts several stores on one empty schema at
// once: the migration lock lets exactly one migrate.
func TestPostgresConcurrentOpen(t *testing.T) {
	url := postgresURL(t)
	schema := freshSchema(t, url)
	errs := make(chan error, 4)
	for range cap(errs) {
		go func() {
			s, err := Open(context.Background(), Config{Driver: Postgres, DSN: url, Schema: schema, Logger: quiet})
			if err == nil {
				err = s.Close()
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("concurrent open: %v", err)
		}
	}
	s := openPostgres(t, url, schema)
	var n int
	if err := s.DB().QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n != SchemaVersion() {
		t.Errorf("schema_migrations has %d rows (%v), want %d", n, err, SchemaVersion())
	}
}

func TestSQLiteWAL(t *testing.T) {
	s := openSQLite(t, filepath.Join(t.TempDir(), "kiln.db"))
	var mode string
	if err := s.DB().QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q (%v), want wal", mode, err)
	}
	var fk int
	if err := s.DB().QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d (%v), want 1", fk, err)
	}
}

// FuzzCursor feeds client-supplied cursors to every paged list of a SQLite
// store: they never panic and fail only with ErrInvalid.
func FuzzCursor(f *testing.F) {
	for _, c := range []string{"", "0", "-1", "42", "app-1", "\x00", "99999999999999999999", "'; DROP TABLE apps; --"} {
		f.Add(c)
	}
	s := openSQLite(f, filepath.Join(f.TempDir(), "kiln.db"))
	f.Fuzz(func(t *testing.T, cursor string) {
		storetest.CheckCursor(t, s, cursor)
		if err := s.DeleteApp(context.Background(), mustAppID(t, s)); err != nil {
			t.Fatal(err)
		}
	})
}

func mustAppID(t *testing.T, s *Store) string {
	t.Helper()
	a, err := s.GetAppByName(context.Background(), "a@x", "web")
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

// TestPostgresOddInputs sends keys PostgreSQL refuses as text (NUL, invalid
// UTF-8): they fail with ErrInvalid or ErrNotFound, never a raw database
// error.
func TestPostgresOddInputs(t *testing.T) {
	url := postgresURL(t)
	s := openPostgres(t, url, freshSchema(t, url))
	for _, in := range []string{"\x00", "a\xffb", "app-1"} {
		storetest.CheckCursor(t, s, in)
		if err := s.DeleteApp(context.Background(), mustAppID(t, s)); err != nil {
			t.Fatal(err)
		}
		_, err := s.GetApp(context.Background(), in)
		if !errors.Is(err, store.ErrInvalid) && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetApp(%q): %v", in, err)
		}
	}
}
