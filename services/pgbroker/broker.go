package pgbroker

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/services"
)

// Broker is a services.Broker that creates databases and roles on a
// PostgreSQL server. It is safe for concurrent use; Close releases its
// connections.
type Broker struct {
	cfg   Config
	pool  *pgxpool.Pool
	admin *pgx.ConnConfig // for connecting to instance databases
	host  string
	port  int
	ssl   string
	key   []byte
	log   *slog.Logger
	ops   *prometheus.CounterVec
}

var _ services.Broker = (*Broker)(nil)

// New returns a broker for the server at cfg.AdminURL. It does not connect
// until the first request (see Ping).
func New(cfg Config) (*Broker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.AdminURL)
	if err != nil {
		return nil, fmt.Errorf("pgbroker: AdminURL: %w", err)
	}
	pcfg.MaxConns = cfg.MaxConns
	b := &Broker{
		cfg:   cfg,
		admin: pcfg.ConnConfig.Copy(),
		host:  cfg.Host,
		port:  cfg.Port,
		ssl:   cfg.SSLMode,
		key:   slices.Clone(cfg.PasswordKey),
		log:   cfg.Logger,
	}
	if b.host == "" {
		b.host = pcfg.ConnConfig.Host
	}
	if b.port == 0 {
		b.port = int(pcfg.ConnConfig.Port)
	}
	if b.ssl == "" {
		b.ssl = sslModeOf(cfg.AdminURL)
	}
	if len(b.key) == 0 {
		b.key = make([]byte, 32)
		_, _ = rand.Read(b.key) // crypto/rand.Read never fails
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.ops = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kiln_pgbroker_operations_total",
		Help: "PostgreSQL broker operations, by operation and result (ok or error).",
	}, []string{"op", "result"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(b.ops); err != nil {
			return nil, fmt.Errorf("pgbroker: register metrics: %w", err)
		}
	}
	b.pool, err = pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		return nil, fmt.Errorf("pgbroker: %w", err)
	}
	return b, nil
}

// sslModeOf returns the sslmode named in a URL or key=value string.
func sslModeOf(conn string) string {
	if u, err := url.Parse(conn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		return u.Query().Get("sslmode")
	}
	for _, f := range strings.Fields(conn) {
		if v, ok := strings.CutPrefix(f, "sslmode="); ok {
			return v
		}
	}
	return ""
}

// Close closes the broker's connections.
func (b *Broker) Close() { b.pool.Close() }

// Ping checks that the administrator connection works.
func (b *Broker) Ping(ctx context.Context) error {
	if err := b.pool.Ping(ctx); err != nil {
		return b.wrap("ping", err)
	}
	return nil
}

// wrap adds context to err and marks failures to reach the server as
// services.ErrUnavailable; SQL errors the server returned are kept as they
// are.
func (b *Broker) wrap(what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("pgbroker: %s: %w", what, err)
	}
	return fmt.Errorf("pgbroker: %s: %w: %w", what, services.ErrUnavailable, err)
}

// done counts an operation's result and logs failures.
func (b *Broker) done(op string, attrs []any, err error) {
	result := "ok"
	if err != nil {
		result = "error"
		if !errors.Is(err, services.ErrBadRequest) && !errors.Is(err, services.ErrInstanceNotFound) &&
			!errors.Is(err, services.ErrBindingNotFound) && !errors.Is(err, services.ErrInstanceExists) &&
			!errors.Is(err, services.ErrBindingExists) {
			b.log.Warn("pgbroker-"+op+"-failed", append(attrs, "error", err)...)
		}
	} else {
		b.log.Info("pgbroker-"+op, attrs...)
	}
	b.ops.WithLabelValues(op, result).Inc()
}

// Catalog returns the configured catalog.
func (b *Broker) Catalog(ctx context.Context) (services.Catalog, error) {
	return b.cfg.Catalog.Clone(), nil
}

// checkPlan validates service and plan ids against the catalog.
func (b *Broker) checkPlan(serviceID, planID string) error {
	if err := b.cfg.Catalog.CheckPlan(serviceID, planID); err != nil {
		return fmt.Errorf("pgbroker: %w", err)
	}
	return nil
}

// checkID rejects ids that cannot be recorded in a comment.
func checkID(kind, id string) error {
	if id == "" || len(id) > 1024 || strings.ContainsRune(id, 0) {
		return fmt.Errorf("pgbroker: %s id %q must be 1 to 1024 bytes without NUL: %w", kind, id, services.ErrBadRequest)
	}
	return nil
}

// instanceMeta is recorded as the comment of an instance's database once
// it is fully set up.
type instanceMeta struct {
	Kiln       string `json:"kiln"` // always "pgbroker"
	InstanceID string `json:"instance_id"`
	ServiceID  string `json:"service_id"`
	PlanID     string `json:"plan_id"`
	OrgID      string `json:"organization_guid,omitempty"`
	SpaceID    string `json:"space_guid,omitempty"`
}

// bindingMeta is recorded as the comment of a binding's role.
type bindingMeta struct {
	Kiln       string `json:"kiln"` // always "pgbroker"
	InstanceID string `json:"instance_id"`
	BindingID  string `json:"binding_id"`
	AppID      string `json:"app_guid,omitempty"`
}

const marker = "pgbroker"

// parseMeta decodes a comment written by the broker; ok is false for a
// missing or foreign comment.
func parseMeta[T any](comment *string, v *T, kiln func(*T) string) bool {
	if comment == nil {
		return false
	}
	if json.Unmarshal([]byte(*comment), v) != nil {
		return false
	}
	return kiln(v) == marker
}

// locked runs fn on an administrator connection holding the advisory lock
// of instanceID, so that operations on one instance never interleave, even
// across broker processes.
func (b *Broker) locked(ctx context.Context, instanceID string, fn func(*pgxpool.Conn) error) error {
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return b.wrap("connect", err)
	}
	defer conn.Release()
	sum := sha256.Sum256([]byte("kiln-pgbroker\x00" + instanceID))
	key := int64(binary.BigEndian.Uint64(sum[:8]))
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return b.wrap("lock instance", err)
	}
	defer func() {
		// Unlock even if ctx has ended; a connection that cannot unlock is
		// closed so the pool never hands out a session holding the lock.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
			_ = conn.Conn().Close(uctx)
		}
	}()
	return fn(conn)
}

// exec runs one statement and wraps its error.
func (b *Broker) exec(ctx context.Context, conn *pgxpool.Conn, sql string, args ...any) error {
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		verb, _, _ := strings.Cut(sql, " ")
		return b.wrap(strings.ToLower(verb), err)
	}
	return nil
}

// lookupDatabase reports whether database name exists and its comment.
func (b *Broker) lookupDatabase(ctx context.Context, conn *pgxpool.Conn, name string) (bool, *string, error) {
	var comment *string
	err := conn.QueryRow(ctx, "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", name).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, b.wrap("look up database", err)
	}
	return true, comment, nil
}

// lookupRole reports whether role name exists and its comment.
func (b *Broker) lookupRole(ctx context.Context, conn *pgxpool.Conn, name string) (bool, *string, error) {
	var comment *string
	err := conn.QueryRow(ctx, "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1", name).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, b.wrap("look up role", err)
	}
	return true, comment, nil
}

// instance returns the recorded metadata of a fully provisioned instance,
// or services.ErrInstanceNotFound.
func (b *Broker) instance(ctx context.Context, conn *pgxpool.Conn, instanceID string) (instanceMeta, error) {
	exists, comment, err := b.lookupDatabase(ctx, conn, b.DatabaseName(instanceID))
	if err != nil {
		return instanceMeta{}, err
	}
	var meta instanceMeta
	if !exists || !parseMeta(comment, &meta, func(m *instanceMeta) string { return m.Kiln }) || meta.InstanceID != instanceID {
		return instanceMeta{}, fmt.Errorf("pgbroker: instance %s: %w", instanceID, services.ErrInstanceNotFound)
	}
	return meta, nil
}

// withDatabase runs fn on a new administrator connection to database db.
func (b *Broker) withDatabase(ctx context.Context, db string, fn func(*pgx.Conn) error) error {
	cfg := b.admin.Copy()
	cfg.Database = db
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return b.wrap("connect to "+db, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(conn)
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

func comment(v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("pgbroker: encode comment: %w", err)
	}
	return quoteLiteral(string(data)), nil
}

// Provision creates the instance's owner role and database. It takes no
// parameters. A crash half-way is repaired by provisioning again: the
// database's comment, written last, marks a finished instance.
func (b *Broker) Provision(ctx context.Context, req services.ProvisionRequest) (res services.ProvisionResponse, err error) {
	db, owner := b.DatabaseName(req.InstanceID), b.OwnerRole(req.InstanceID)
	defer func() { b.done("provision", []any{"instance", req.InstanceID, "database", db}, err) }()
	if err := checkID("instance", req.InstanceID); err != nil {
		return res, err
	}
	if err := b.checkPlan(req.ServiceID, req.PlanID); err != nil {
		return res, err
	}
	if len(req.Parameters) > 0 {
		return res, fmt.Errorf("pgbroker: provision %s: the broker takes no parameters: %w", req.InstanceID, services.ErrBadRequest)
	}
	want := instanceMeta{Kiln: marker, InstanceID: req.InstanceID, ServiceID: req.ServiceID, PlanID: req.PlanID,
		OrgID: req.OrganizationID, SpaceID: req.SpaceID}
	err = b.locked(ctx, req.InstanceID, func(conn *pgxpool.Conn) error {
		exists, cmt, err := b.lookupDatabase(ctx, conn, db)
		if err != nil {
			return err
		}
		var have instanceMeta
		if exists && parseMeta(cmt, &have, func(m *instanceMeta) string { return m.Kiln }) {
			if have != want {
				return fmt.Errorf("pgbroker: provision %s: %w", req.InstanceID, services.ErrInstanceExists)
			}
			res.AlreadyExists = true
			return nil
		}
		return b.create(ctx, conn, db, owner, exists, want)
	})
	return res, err
}

// create sets up an instance's role and database; each step tolerates
// having been done before.
func (b *Broker) create(ctx context.Context, conn *pgxpool.Conn, db, owner string, dbExists bool, meta instanceMeta) error {
	roleExists, _, err := b.lookupRole(ctx, conn, owner)
	if err != nil {
		return err
	}
	if !roleExists {
		if err := b.exec(ctx, conn, "CREATE ROLE "+ident(owner)+" NOLOGIN"); err != nil {
			return err
		}
	}
	if !dbExists {
		// template0, not template1: CREATE DATABASE fails while anyone is
		// connected to its template, and template0 accepts no connections.
		if err := b.exec(ctx, conn, "CREATE DATABASE "+ident(db)+" OWNER "+ident(owner)+" TEMPLATE template0"); err != nil {
			return err
		}
	}
	// Only the owner role (and so the instance's bindings) may connect.
	if err := b.exec(ctx, conn, "REVOKE ALL ON DATABASE "+ident(db)+" FROM PUBLIC"); err != nil {
		return err
	}
	// Since PostgreSQL 15 the public schema belongs to pg_database_owner
	// and only its owner may create in it; make the owner role own it
	// outright so its members can create tables on every version.
	err = b.withDatabase(ctx, db, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, "ALTER SCHEMA public OWNER TO "+ident(owner)); err != nil {
			return b.wrap("alter schema", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	cmt, err := comment(meta)
	if err != nil {
		return err
	}
	return b.exec(ctx, conn, "COMMENT ON DATABASE "+ident(db)+" IS "+cmt)
}

// Deprovision drops the instance's database, its bindings' roles and its
// owner role. It is synchronous.
func (b *Broker) Deprovision(ctx context.Context, req services.DeprovisionRequest) (res services.OperationResponse, err error) {
	db, owner := b.DatabaseName(req.InstanceID), b.OwnerRole(req.InstanceID)
	defer func() { b.done("deprovision", []any{"instance", req.InstanceID, "database", db}, err) }()
	if err := checkID("instance", req.InstanceID); err != nil {
		return res, err
	}
	err = b.locked(ctx, req.InstanceID, func(conn *pgxpool.Conn) error {
		dbExists, cmt, err := b.lookupDatabase(ctx, conn, db)
		if err != nil {
			return err
		}
		roleExists, _, err := b.lookupRole(ctx, conn, owner)
		if err != nil {
			return err
		}
		if !dbExists && !roleExists {
			return fmt.Errorf("pgbroker: deprovision %s: %w", req.InstanceID, services.ErrInstanceNotFound)
		}
		var have instanceMeta
		if parseMeta(cmt, &have, func(m *instanceMeta) string { return m.Kiln }) &&
			((req.ServiceID != "" && req.ServiceID != have.ServiceID) || (req.PlanID != "" && req.PlanID != have.PlanID)) {
			return fmt.Errorf("pgbroker: deprovision %s: service or plan does not match the instance: %w", req.InstanceID, services.ErrBadRequest)
		}
		members, err := b.members(ctx, conn, owner)
		if err != nil {
			return err
		}
		for _, m := range members {
			if err := b.exec(ctx, conn, "ALTER ROLE "+ident(m)+" NOLOGIN"); err != nil {
				return err
			}
		}
		// FORCE terminates the sessions still connected to the database.
		if err := b.exec(ctx, conn, "DROP DATABASE IF EXISTS "+ident(db)+" WITH (FORCE)"); err != nil {
			return err
		}
		for _, m := range members {
			if err := b.dropRole(ctx, conn, m, "", ""); err != nil {
				return err
			}
		}
		return b.exec(ctx, conn, "DROP ROLE IF EXISTS "+ident(owner))
	})
	return res, err
}

// members lists the roles that are members of role (the bindings of an
// instance, given its owner role).
func (b *Broker) members(ctx context.Context, conn *pgxpool.Conn, role string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT m.rolname FROM pg_auth_members am
		JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
		WHERE r.rolname = $1 ORDER BY m.rolname`, role)
	if err != nil {
		return nil, b.wrap("list bindings", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, b.wrap("list bindings", err)
	}
	return names, nil
}

// dropRole terminates role's sessions and drops it. When db is set, the
// objects the role owns there are first handed to owner and its privileges
// there revoked.
func (b *Broker) dropRole(ctx context.Context, conn *pgxpool.Conn, role, db, owner string) error {
	// Wait up to 5 s for each session to end, so none outlives its role.
	if err := b.exec(ctx, conn, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = $1", role); err != nil {
		return err
	}
	if db != "" {
		err := b.withDatabase(ctx, db, func(c *pgx.Conn) error {
			if _, err := c.Exec(ctx, "REASSIGN OWNED BY "+ident(role)+" TO "+ident(owner)); err != nil {
				return b.wrap("reassign owned", err)
			}
			if _, err := c.Exec(ctx, "DROP OWNED BY "+ident(role)); err != nil {
				return b.wrap("drop owned", err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return b.exec(ctx, conn, "DROP ROLE IF EXISTS "+ident(role))
}

// LastOperation reports "succeeded" for a provisioned instance (the
// broker works synchronously) and services.ErrInstanceNotFound otherwise.
func (b *Broker) LastOperation(ctx context.Context, req services.LastOperationRequest) (services.LastOperation, error) {
	if err := checkID("instance", req.InstanceID); err != nil {
		return services.LastOperation{}, err
	}
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return services.LastOperation{}, b.wrap("connect", err)
	}
	defer conn.Release()
	if _, err := b.instance(ctx, conn, req.InstanceID); err != nil {
		return services.LastOperation{}, err
	}
	return services.LastOperation{State: services.StateSucceeded, Description: "database " + b.DatabaseName(req.InstanceID) + " is ready"}, nil
}

// password derives a binding's password from the broker's key.
func (b *Broker) password(instanceID, bindingID string) string {
	m := hmac.New(sha256.New, b.key)
	m.Write([]byte(instanceID + "\x00" + bindingID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Bind creates a LOGIN role for the binding, a member of the instance's
// owner role whose sessions act as the owner (SET ROLE at login), so that
// tables one binding creates belong to the instance and every binding may
// use them. It takes no parameters. A repeated bind with the same app sets
// the password again and returns the same credentials.
func (b *Broker) Bind(ctx context.Context, req services.BindRequest) (res services.Binding, err error) {
	role, owner, db := b.BindingRole(req.BindingID), b.OwnerRole(req.InstanceID), b.DatabaseName(req.InstanceID)
	defer func() { b.done("bind", []any{"instance", req.InstanceID, "binding", req.BindingID, "role", role}, err) }()
	if err := checkID("instance", req.InstanceID); err != nil {
		return res, err
	}
	if err := checkID("binding", req.BindingID); err != nil {
		return res, err
	}
	if len(req.Parameters) > 0 {
		return res, fmt.Errorf("pgbroker: bind %s: the broker takes no parameters: %w", req.BindingID, services.ErrBadRequest)
	}
	pw := b.password(req.InstanceID, req.BindingID)
	err = b.locked(ctx, req.InstanceID, func(conn *pgxpool.Conn) error {
		meta, err := b.instance(ctx, conn, req.InstanceID)
		if err != nil {
			return err
		}
		if req.ServiceID != meta.ServiceID || req.PlanID != meta.PlanID {
			return fmt.Errorf("pgbroker: bind %s: service or plan does not match the instance: %w", req.BindingID, services.ErrBadRequest)
		}
		exists, cmt, err := b.lookupRole(ctx, conn, role)
		if err != nil {
			return err
		}
		want := bindingMeta{Kiln: marker, InstanceID: req.InstanceID, BindingID: req.BindingID, AppID: req.AppID}
		if exists {
			var have bindingMeta
			if !parseMeta(cmt, &have, func(m *bindingMeta) string { return m.Kiln }) || have != want {
				return fmt.Errorf("pgbroker: bind %s: %w", req.BindingID, services.ErrBindingExists)
			}
			res.AlreadyExists = true
			return b.exec(ctx, conn, "ALTER ROLE "+ident(role)+" WITH LOGIN PASSWORD "+quoteLiteral(pw))
		}
		return b.createBinding(ctx, conn, role, owner, pw, want)
	})
	if err != nil {
		return services.Binding{}, err
	}
	res.Credentials = b.credentials(db, role, pw)
	return res, nil
}

// createBinding creates a binding's role in one transaction.
func (b *Broker) createBinding(ctx context.Context, conn *pgxpool.Conn, role, owner, pw string, meta bindingMeta) error {
	cmt, err := comment(meta)
	if err != nil {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return b.wrap("begin", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for _, stmt := range []string{
		"CREATE ROLE " + ident(role) + " LOGIN INHERIT PASSWORD " + quoteLiteral(pw) + " IN ROLE " + ident(owner),
		// Sessions start as the owner role, so what they create is the
		// instance's, not this binding's, and survives its unbinding.
		"ALTER ROLE " + ident(role) + " SET role = " + quoteLiteral(owner),
		"COMMENT ON ROLE " + ident(role) + " IS " + cmt,
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			verb, _, _ := strings.Cut(stmt, " ")
			return b.wrap(strings.ToLower(verb)+" binding role", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return b.wrap("commit", err)
	}
	return nil
}

// credentials are what an app sees in VCAP_SERVICES.
func (b *Broker) credentials(db, user, pw string) map[string]any {
	u := url.URL{
		Scheme: "postgres",
		User:   url.UserPassword(user, pw),
		Host:   net.JoinHostPort(b.host, strconv.Itoa(b.port)),
		Path:   "/" + db,
	}
	if b.ssl != "" {
		u.RawQuery = url.Values{"sslmode": {b.ssl}}.Encode()
	}
	return map[string]any{
		"uri":      u.String(),
		"host":     b.host,
		"hostname": b.host,
		"port":     b.port,
		"name":     db,
		"username": user,
		"password": pw,
	}
}

// Unbind disables the binding's role, terminates its sessions, hands
// anything it owns to the instance and drops it: its credentials stop
// working at once.
func (b *Broker) Unbind(ctx context.Context, req services.UnbindRequest) (err error) {
	role, owner, db := b.BindingRole(req.BindingID), b.OwnerRole(req.InstanceID), b.DatabaseName(req.InstanceID)
	defer func() {
		b.done("unbind", []any{"instance", req.InstanceID, "binding", req.BindingID, "role", role}, err)
	}()
	if err := checkID("instance", req.InstanceID); err != nil {
		return err
	}
	if err := checkID("binding", req.BindingID); err != nil {
		return err
	}
	return b.locked(ctx, req.InstanceID, func(conn *pgxpool.Conn) error {
		exists, cmt, err := b.lookupRole(ctx, conn, role)
		if err != nil {
			return err
		}
		var have bindingMeta
		if !exists || !parseMeta(cmt, &have, func(m *bindingMeta) string { return m.Kiln }) || have.InstanceID != req.InstanceID {
			return fmt.Errorf("pgbroker: unbind %s from %s: %w", req.BindingID, req.InstanceID, services.ErrBindingNotFound)
		}
		if err := b.exec(ctx, conn, "ALTER ROLE "+ident(role)+" NOLOGIN"); err != nil {
			return err
		}
		if err := b.exec(ctx, conn, "REVOKE "+ident(owner)+" FROM "+ident(role)); err != nil {
			return err
		}
		dbExists, _, err := b.lookupDatabase(ctx, conn, db)
		if err != nil {
			return err
		}
		if !dbExists {
			db = ""
		}
		return b.dropRole(ctx, conn, role, db, owner)
	})
}
