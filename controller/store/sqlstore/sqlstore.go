// Package sqlstore is the SQL implementation of store.Store, for two engines
// that share one code path:
//
//   - SQLite through the pure-Go driver modernc.org/sqlite: the embedded
//     default. One database file in WAL mode (readers do not block the
//     writer), a busy timeout instead of "database is locked" errors, and
//     every write transaction begun IMMEDIATE so that writers queue up front
//     rather than failing when they upgrade a read lock.
//   - PostgreSQL through pgx's database/sql driver: for production and for
//     several controllers sharing state, optionally inside one named schema.
//
// The SQL text is written once with "?" placeholders and rewritten to "$1",
// "$2", … for PostgreSQL; the schema differs only in a few type names. Times
// are stored as microseconds since the Unix epoch in BIGINT columns and
// lists of strings as JSON text, so both engines read back exactly what the
// in-memory store returns.
//
// Open applies the versioned migrations the database lacks, in one
// transaction (serialised between controllers by a lock), and refuses with
// ErrSchemaTooNew a database that a newer kiln has migrated past this code.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/kiln-paas/kiln/controller/store"
)

// Driver names a database engine.
type Driver string

// Supported drivers.
const (
	// SQLite is the embedded engine: one file, no server.
	SQLite Driver = "sqlite"
	// Postgres is PostgreSQL, reached over the network.
	Postgres Driver = "postgres"
)

// ErrSchemaTooNew means the database was migrated by a newer version of kiln
// than this one; running on it could corrupt records this code does not know.
var ErrSchemaTooNew = errors.New("sqlstore: database schema is newer than this code")

// Config configures a Store.
type Config struct {
	// Driver is SQLite or Postgres.
	Driver Driver
	// DSN is, for SQLite, the path of the database file (created when
	// missing); for PostgreSQL, a connection URL or key=value string as pgx
	// parses it.
	DSN string
	// Schema is, for PostgreSQL, the schema holding kiln's tables; it is
	// created when missing and set as the connections' search_path. ""
	// keeps the server's default search_path. Ignored for SQLite.
	Schema string
	// BusyTimeout is how long a SQLite writer waits for the write lock
	// before failing. Ignored for PostgreSQL.
	BusyTimeout time.Duration
	// Synchronous is SQLite's synchronous pragma, "NORMAL" or "FULL". In
	// WAL mode NORMAL never corrupts the database and survives a process
	// crash; only an OS crash or power loss may lose the last commits. FULL
	// syncs every commit. Ignored for PostgreSQL.
	Synchronous string
	// MaxOpenConns bounds the connection pool; 0 means 4 for SQLite and
	// 16 for PostgreSQL.
	MaxOpenConns int
	// Now is the clock that stamps records; nil means time.Now.
	Now func() time.Time
	// Logger receives migration logs; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the store's metrics; nil means none.
	Registerer prometheus.Registerer
}

// DefaultConfig returns a configuration for a SQLite file at path.
func DefaultConfig(path string) Config {
	return Config{
		Driver: SQLite,
		DSN:    path,
		// Long enough to ride out a burst of writers on a busy controller,
		// short enough that a stuck writer surfaces as an error.
		BusyTimeout:  5 * time.Second,
		Synchronous:  "NORMAL",
		MaxOpenConns: defaultSQLiteConns,
		Now:          time.Now,
	}
}

// Validate reports whether c is usable.
func (c Config) Validate() error {
	switch c.Driver {
	case SQLite:
		if c.DSN == "" || c.DSN == ":memory:" || strings.ContainsAny(c.DSN, "?#") {
			// Every pooled connection to ":memory:" would see its own
			// empty database: use memstore for an in-memory store.
			return fmt.Errorf("sqlite path %q: empty, :memory: or contains ? or #: %w", c.DSN, store.ErrInvalid)
		}
		if s := strings.ToUpper(c.Synchronous); s != "" && s != "NORMAL" && s != "FULL" {
			return fmt.Errorf("sqlite synchronous %q: want NORMAL or FULL: %w", c.Synchronous, store.ErrInvalid)
		}
		if c.BusyTimeout < 0 {
			return fmt.Errorf("negative busy timeout: %w", store.ErrInvalid)
		}
	case Postgres:
		if c.DSN == "" {
			return fmt.Errorf("empty postgres dsn: %w", store.ErrInvalid)
		}
	default:
		return fmt.Errorf("driver %q: %w", c.Driver, store.ErrInvalid)
	}
	if c.MaxOpenConns < 0 {
		return fmt.Errorf("negative MaxOpenConns: %w", store.ErrInvalid)
	}
	return nil
}

// Pool sizes used when Config.MaxOpenConns is 0.
const (
	// SQLite has one writer at a time anyway; a few connections let WAL
	// readers run beside it.
	defaultSQLiteConns = 4
	// A controller's requests are short; more connections than this mostly
	// queue inside PostgreSQL.
	defaultPostgresConns = 16
)

// Store is the SQL store.Store. It is safe for concurrent use.
type Store struct {
	db      *sql.DB
	dialect *dialect
	now     func() time.Time
	log     *slog.Logger
	closed  atomic.Bool
	metrics *metrics

	// stmts caches prepared statements of SQLite queries run outside
	// transactions: parsing a query costs more than running it there.
	// PostgreSQL's driver keeps its own per-connection cache.
	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt
}

// maxCachedStmts bounds the statement cache; the store has fewer fixed
// queries than this, and queries whose text varies (IN lists) beyond it run
// unprepared.
const maxCachedStmts = 128

var _ store.Store = (*Store)(nil)

// Open connects to the database, applies missing migrations and returns the
// Store. It returns ErrSchemaTooNew (wrapped) when the database is ahead of
// this code. The caller owns the Store and must Close it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sqlstore: %w", err)
	}
	s := &Store{now: cfg.Now, log: cfg.Logger, stmts: map[string]*sql.Stmt{}}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	var err error
	switch cfg.Driver {
	case SQLite:
		s.dialect = sqliteDialect
		s.db, err = sql.Open("sqlite", sqliteDSN(cfg))
		if err == nil && cfg.MaxOpenConns == 0 {
			s.db.SetMaxOpenConns(defaultSQLiteConns)
		}
	case Postgres:
		s.dialect = postgresDialect
		var pc *pgx.ConnConfig
		pc, err = pgx.ParseConfig(cfg.DSN)
		if err == nil {
			if cfg.Schema != "" {
				pc.RuntimeParams["search_path"] = cfg.Schema
			}
			s.db = stdlib.OpenDB(*pc)
			if cfg.MaxOpenConns == 0 {
				s.db.SetMaxOpenConns(defaultPostgresConns)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open %s: %w", cfg.Driver, err)
	}
	if cfg.MaxOpenConns > 0 {
		s.db.SetMaxOpenConns(cfg.MaxOpenConns)
		s.db.SetMaxIdleConns(cfg.MaxOpenConns)
	}
	s.metrics = newMetrics(cfg.Registerer, string(cfg.Driver))
	if err := s.migrate(ctx, cfg.Schema); err != nil {
		s.metrics.unregister()
		return nil, errors.Join(fmt.Errorf("sqlstore: %w", err), s.db.Close())
	}
	return s, nil
}

func sqliteDSN(cfg Config) string {
	q := url.Values{}
	busy := cfg.BusyTimeout
	if busy == 0 {
		busy = 5 * time.Second
	}
	syncMode := strings.ToUpper(cfg.Synchronous)
	if syncMode == "" {
		syncMode = "NORMAL"
	}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(busy.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous("+syncMode+")")
	q.Set("_txlock", "immediate")
	return "file:" + cfg.DSN + "?" + q.Encode()
}

// Close closes the database. Closing twice is not an error.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.metrics.unregister()
	s.stmtMu.Lock()
	for _, st := range s.stmts {
		_ = st.Close()
	}
	s.stmts = nil
	s.stmtMu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("sqlstore: close: %w", err)
	}
	return nil
}

// DB returns the underlying database handle, for tools and tests that need
// to inspect it (integrity checks, backups). Writing through it bypasses the
// store's invariants.
func (s *Store) DB() *sql.DB { return s.db }

// begin reports ErrClosed for a closed store and starts timing op.
func (s *Store) begin(op string) (func(*error), error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	start := time.Now()
	return func(errp *error) {
		err := *errp
		switch {
		case err == nil || isStoreErr(err):
		case s.closed.Load():
			*errp = fmt.Errorf("sqlstore: %s: %w", op, errors.Join(store.ErrClosed, err))
		case s.dialect.badInput(err):
			*errp = fmt.Errorf("sqlstore: %s: %w", op, errors.Join(store.ErrInvalid, err))
		}
		s.metrics.observe(op, start, err)
	}, nil
}

func isStoreErr(err error) bool {
	for _, e := range []error{store.ErrNotFound, store.ErrExists, store.ErrURITaken, store.ErrConflict,
		store.ErrInUse, store.ErrInvalid, store.ErrClosed, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// stmt returns a cached prepared statement for query, or nil when the query
// should run unprepared.
func (s *Store) stmt(ctx context.Context, query string) *sql.Stmt {
	if s.dialect != sqliteDialect {
		return nil
	}
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if st, ok := s.stmts[query]; ok || s.stmts == nil || len(s.stmts) >= maxCachedStmts {
		return st
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil // running it unprepared reports the error
	}
	s.stmts[query] = st
	return st
}

func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if st := s.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.db.QueryRowContext(ctx, query, args...)
}

func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := s.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.db.QueryContext(ctx, query, args...)
}

func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := s.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return s.db.ExecContext(ctx, query, args...)
}

// q adapts a query written with "?" placeholders to the dialect.
func (s *Store) q(query string) string { return s.dialect.rebind(query) }

// maxTxAttempts bounds retries of transactions PostgreSQL aborted to break a
// deadlock or a serialisation failure: both resolve on a retry.
const maxTxAttempts = 3

// inTx runs fn in a transaction and commits it, or rolls back when fn fails.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	var err error
	for range maxTxAttempts {
		err = s.tryTx(ctx, fn)
		if !s.dialect.retryable(err) {
			return err
		}
	}
	return err
}

func (s *Store) tryTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, ignoreDone(tx.Rollback()))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// ignoreDone drops the error of rolling back a transaction the context (or
// the database) already ended.
func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}

// dialect holds what differs between the engines.
type dialect struct {
	name string
	// dollar placeholders ($1) instead of "?".
	dollar bool
	// ddl maps the schema's type placeholders.
	ddl *strings.Replacer
	// rebound caches rewritten queries.
	rebound sync.Map
	// violation classifies constraint errors.
	violation func(err error) violation
	retryable func(err error) bool
	// badInput reports errors the database raises about a value the
	// caller passed (a NUL byte or invalid UTF-8 in a key): ErrInvalid.
	badInput func(err error) bool
}

type violation int

const (
	noViolation violation = iota
	uniqueViolation
	foreignKeyViolation
)

var sqliteDialect = &dialect{
	name: "sqlite",
	ddl: strings.NewReplacer(
		"{{key}}", "TEXT",
		"{{serial}}", "INTEGER PRIMARY KEY AUTOINCREMENT",
	),
	violation: func(err error) violation {
		var se *sqlite.Error
		if !errors.As(err, &se) {
			return noViolation
		}
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return uniqueViolation
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return foreignKeyViolation
		}
		return noViolation
	},
	retryable: func(error) bool { return false },
	badInput:  func(error) bool { return false },
}

var postgresDialect = &dialect{
	name:   "postgres",
	dollar: true,
	ddl: strings.NewReplacer(
		// Keys compare byte-wise, as in SQLite and Go, whatever the
		// database's locale: cursors and ORDER BY agree everywhere.
		"{{key}}", `TEXT COLLATE "C"`,
		"{{serial}}", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
	),
	violation: func(err error) violation {
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			return noViolation
		}
		switch pe.Code {
		case "23505":
			return uniqueViolation
		case "23503":
			return foreignKeyViolation
		}
		return noViolation
	},
	retryable: func(err error) bool {
		var pe *pgconn.PgError
		// 40001 serialization_failure, 40P01 deadlock_detected.
		return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
	},
	badInput: func(err error) bool {
		var pe *pgconn.PgError
		// Class 22: data exception (invalid byte sequence, value out of
		// range, …), always about a value sent.
		return errors.As(err, &pe) && strings.HasPrefix(pe.Code, "22")
	},
}

// rebind rewrites "?" placeholders to "$n" for PostgreSQL. kiln's queries
// never hold "?" inside literals.
func (d *dialect) rebind(q string) string {
	if !d.dollar {
		return q
	}
	if v, ok := d.rebound.Load(q); ok {
		return v.(string)
	}
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	out := b.String()
	d.rebound.Store(q, out)
	return out
}

// micro converts a time to the stored form; the zero time is 0.
func micro(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

// fromMicro converts back; 0 is the zero time.
func fromMicro(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.UnixMicro(n).UTC()
}

func (s *Store) stamp() int64 { return s.now().UnixMicro() }

// placeholders returns "?, ?, …" with n marks.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
