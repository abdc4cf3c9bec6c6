package pgbroker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/services/pgbroker"
)

// adminURL returns KILN_TEST_POSTGRES_URL or skips the test.
func adminURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("KILN_TEST_POSTGRES_URL")
	if u == "" {
		t.Skip("KILN_TEST_POSTGRES_URL is not set")
	}
	return u
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newBroker returns a broker whose objects all start with a prefix unique
// to this test run, and drops every such database and role at cleanup,
// whatever the test left behind.
func newBroker(t *testing.T, cfg pgbroker.Config) *pgbroker.Broker {
	t.Helper()
	admin := adminURL(t)
	var r [4]byte
	_, _ = rand.Read(r[:])
	cfg.AdminURL = admin
	cfg.NamePrefix = "kt" + hex.EncodeToString(r[:])
	b, err := pgbroker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Close()
		dropPrefixed(t, admin, cfg.NamePrefix)
	})
	return b
}

func dropPrefixed(t *testing.T, admin, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer conn.Close(ctx)
	like := prefix + `\_%`
	dbs, _ := queryStrings(ctx, conn, "SELECT datname FROM pg_database WHERE datname LIKE $1", like)
	for _, d := range dbs {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("cleanup: drop database %s: %v", d, err)
		}
	}
	// Binding roles first: they are members of owner roles.
	roles, _ := queryStrings(ctx, conn, "SELECT rolname FROM pg_roles WHERE rolname LIKE $1 ORDER BY rolname LIKE '%\\_bind\\_%' DESC", like)
	for _, r := range roles {
		_, _ = conn.Exec(ctx, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = $1", r)
		if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize()); err != nil {
			t.Errorf("cleanup: drop role %s: %v", r, err)
		}
	}
}

func queryStrings(ctx context.Context, conn *pgx.Conn, sql string, args ...any) ([]string, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// exists reports whether a database or role of that name exists.
func exists(t *testing.T, ctx context.Context, kind, name string) bool {
	t.Helper()
	conn, err := pgx.Connect(ctx, adminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	q := "SELECT count(*) FROM pg_database WHERE datname = $1"
	if kind == "role" {
		q = "SELECT count(*) FROM pg_roles WHERE rolname = $1"
	}
	var n int
	if err := conn.QueryRow(ctx, q, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

const (
	svc  = "kiln-postgresql"
	plan = "kiln-postgresql-shared"
)

// uriFromVCAP builds VCAP_SERVICES for the binding as an app's
// environment would carry it, decodes it as an app would, and returns the
// uri.
func uriFromVCAP(t *testing.T, creds map[string]any) string {
	t.Helper()
	doc, err := json.Marshal(services.VCAPServices([]services.Credential{{
		Name: "mydb", Label: "postgresql", Plan: "shared", Credentials: creds,
	}}))
	if err != nil {
		t.Fatal(err)
	}
	var env map[string][]struct {
		Credentials struct {
			URI string `json:"uri"`
		} `json:"credentials"`
	}
	if err := json.Unmarshal(doc, &env); err != nil {
		t.Fatalf("VCAP_SERVICES %s: %v", doc, err)
	}
	if len(env["postgresql"]) != 1 || env["postgresql"][0].Credentials.URI == "" {
		t.Fatalf("VCAP_SERVICES %s has no postgresql uri", doc)
	}
	return env["postgresql"][0].Credentials.URI
}

func TestPostgresLifecycle(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	b := newBroker(t, pgbroker.Config{})
	if err := b.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	inst := "0b9c6a3e-2f4d-4c1a-9e7b-" + randHex(6)
	db, owner := b.DatabaseName(inst), b.OwnerRole(inst)

	preq := services.ProvisionRequest{InstanceID: inst, ServiceID: svc, PlanID: plan, SpaceID: "space"}
	res, err := b.Provision(ctx, preq)
	if err != nil {
		t.Fatal(err)
	}
	if res.AlreadyExists || res.Async {
		t.Errorf("provision = %+v", res)
	}
	if !exists(t, ctx, "database", db) || !exists(t, ctx, "role", owner) {
		t.Fatalf("database %s or role %s missing after provision", db, owner)
	}
	if res, err := b.Provision(ctx, preq); err != nil || !res.AlreadyExists {
		t.Errorf("repeated provision = %+v, %v", res, err)
	}
	other := preq
	other.SpaceID = "elsewhere"
	if _, err := b.Provision(ctx, other); !errors.Is(err, services.ErrInstanceExists) {
		t.Errorf("conflicting provision: %v, want ErrInstanceExists", err)
	}
	if op, err := b.LastOperation(ctx, services.LastOperationRequest{InstanceID: inst}); err != nil || op.State != services.StateSucceeded {
		t.Errorf("last operation = %+v, %v", op, err)
	}

	// Bind, connect through VCAP_SERVICES, create a table and write a row.
	breq := services.BindRequest{InstanceID: inst, BindingID: "bind-1-" + randHex(4), ServiceID: svc, PlanID: plan, AppID: "app-1"}
	bnd, err := b.Bind(ctx, breq)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"uri", "host", "port", "name", "username", "password"} {
		if _, ok := bnd.Credentials[k]; !ok {
			t.Errorf("credentials lack %q: %v", k, bnd.Credentials)
		}
	}
	if bnd.Credentials["name"] != db {
		t.Errorf("credentials name %v, want %s", bnd.Credentials["name"], db)
	}
	uri1 := uriFromVCAP(t, bnd.Credentials)
	app1, err := pgx.Connect(ctx, uri1)
	if err != nil {
		t.Fatalf("connect with bound credentials: %v", err)
	}
	t.Cleanup(func() { _ = app1.Close(context.Background()) })
	mustExec(t, ctx, app1, "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
	mustExec(t, ctx, app1, "INSERT INTO notes (body) VALUES ($1)", "from binding 1")

	// A repeated bind returns the same working credentials.
	again, err := b.Bind(ctx, breq)
	if err != nil || !again.AlreadyExists || again.Credentials["password"] != bnd.Credentials["password"] {
		t.Errorf("repeated bind = %+v, %v", again, err)
	}
	otherApp := breq
	otherApp.AppID = "app-2"
	if _, err := b.Bind(ctx, otherApp); !errors.Is(err, services.ErrBindingExists) {
		t.Errorf("conflicting bind: %v, want ErrBindingExists", err)
	}

	// A second binding shares the instance's tables.
	breq2 := services.BindRequest{InstanceID: inst, BindingID: "bind-2-" + randHex(4), ServiceID: svc, PlanID: plan, AppID: "app-2"}
	bnd2, err := b.Bind(ctx, breq2)
	if err != nil {
		t.Fatal(err)
	}
	app2, err := pgx.Connect(ctx, uriFromVCAP(t, bnd2.Credentials))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app2.Close(context.Background()) })
	mustExec(t, ctx, app2, "INSERT INTO notes (body) VALUES ($1)", "from binding 2")
	if n := count(t, ctx, app2); n != 2 {
		t.Errorf("binding 2 sees %d rows, want 2", n)
	}

	// A binding of one instance cannot reach another instance's database.
	inst2 := "other-" + randHex(8)
	if _, err := b.Provision(ctx, services.ProvisionRequest{InstanceID: inst2, ServiceID: svc, PlanID: plan}); err != nil {
		t.Fatal(err)
	}
	cfg1, _ := pgx.ParseConfig(uri1)
	cfg1.Database = b.DatabaseName(inst2)
	if c, err := pgx.ConnectConfig(ctx, cfg1); err == nil {
		_ = c.Close(ctx)
		t.Error("binding 1 connected to another instance's database")
	}

	// Unbind: the open session dies, the credentials stop working, the
	// data stays and binding 2 still works.
	ureq := services.UnbindRequest{InstanceID: inst, BindingID: breq.BindingID, ServiceID: svc, PlanID: plan}
	if err := b.Unbind(ctx, ureq); err != nil {
		t.Fatal(err)
	}
	if _, err := app1.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("binding 1's open session survived unbind")
	}
	if c, err := pgx.Connect(ctx, uri1); err == nil {
		_ = c.Close(ctx)
		t.Error("binding 1's credentials still work after unbind")
	}
	if exists(t, ctx, "role", b.BindingRole(breq.BindingID)) {
		t.Error("binding 1's role still exists")
	}
	if n := count(t, ctx, app2); n != 2 {
		t.Errorf("after unbinding 1, binding 2 sees %d rows, want 2", n)
	}
	if err := b.Unbind(ctx, ureq); !errors.Is(err, services.ErrBindingNotFound) {
		t.Errorf("second unbind: %v, want ErrBindingNotFound", err)
	}

	// Deprovision with a binding left: everything goes.
	for _, id := range []string{inst, inst2} {
		if _, err := b.Deprovision(ctx, services.DeprovisionRequest{InstanceID: id, ServiceID: svc, PlanID: plan}); err != nil {
			t.Fatalf("deprovision %s: %v", id, err)
		}
	}
	for kind, name := range map[string]string{"database": db, "role": owner} {
		if exists(t, ctx, kind, name) {
			t.Errorf("%s %s survived deprovision", kind, name)
		}
	}
	if exists(t, ctx, "role", b.BindingRole(breq2.BindingID)) {
		t.Error("binding 2's role survived deprovision")
	}
	if _, err := b.Deprovision(ctx, services.DeprovisionRequest{InstanceID: inst}); !errors.Is(err, services.ErrInstanceNotFound) {
		t.Errorf("second deprovision: %v, want ErrInstanceNotFound", err)
	}
	if _, err := b.LastOperation(ctx, services.LastOperationRequest{InstanceID: inst}); !errors.Is(err, services.ErrInstanceNotFound) {
		t.Errorf("last operation after deprovision: %v, want ErrInstanceNotFound", err)
	}
}

func TestPostgresRequestErrors(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	b := newBroker(t, pgbroker.Config{})
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"unknown plan", func() error {
			_, err := b.Provision(ctx, services.ProvisionRequest{InstanceID: "x", ServiceID: svc, PlanID: "big"})
			return err
		}, services.ErrBadRequest},
		{"parameters", func() error {
			_, err := b.Provision(ctx, services.ProvisionRequest{InstanceID: "x", ServiceID: svc, PlanID: plan, Parameters: map[string]any{"a": 1}})
			return err
		}, services.ErrBadRequest},
		{"NUL in id", func() error {
			_, err := b.Provision(ctx, services.ProvisionRequest{InstanceID: "x\x00", ServiceID: svc, PlanID: plan})
			return err
		}, services.ErrBadRequest},
		{"bind to missing instance", func() error {
			_, err := b.Bind(ctx, services.BindRequest{InstanceID: "missing", BindingID: "b", ServiceID: svc, PlanID: plan})
			return err
		}, services.ErrInstanceNotFound},
		{"unbind missing", func() error {
			return b.Unbind(ctx, services.UnbindRequest{InstanceID: "missing", BindingID: "b"})
		}, services.ErrBindingNotFound},
		{"deprovision missing", func() error {
			_, err := b.Deprovision(ctx, services.DeprovisionRequest{InstanceID: "missing"})
			return err
		}, services.ErrInstanceNotFound},
	}
	for _, tt := range tests {
		if err := tt.call(); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestPostgresHostileIDs(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	b := newBroker(t, pgbroker.Config{PasswordKey: []byte("fixed key")})
	inst := `x"; DROP DATABASE postgres; --'\` + randHex(4)
	if _, err := b.Provision(ctx, services.ProvisionRequest{InstanceID: inst, ServiceID: svc, PlanID: plan, SpaceID: `it's "quoted" \n`}); err != nil {
		t.Fatal(err)
	}
	bnd, err := b.Bind(ctx, services.BindRequest{InstanceID: inst, BindingID: `b'"\` + randHex(4), ServiceID: svc, PlanID: plan})
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(ctx, bnd.Credentials["uri"].(string))
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, ctx, c, "CREATE TABLE t (v int)")
	_ = c.Close(ctx)
	if _, err := b.Deprovision(ctx, services.DeprovisionRequest{InstanceID: inst}); err != nil {
		t.Fatal(err)
	}
	if exists(t, ctx, "database", b.DatabaseName(inst)) {
		t.Error("database survived")
	}
}

func TestPostgresUnavailable(t *testing.T) {
	t.Parallel()
	b, err := pgbroker.New(pgbroker.Config{AdminURL: "postgres://nobody:x@127.0.0.1:1/postgres?connect_timeout=2"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	_, err = b.Provision(ctxT(t), services.ProvisionRequest{InstanceID: "i", ServiceID: svc, PlanID: plan})
	if !errors.Is(err, services.ErrUnavailable) {
		t.Errorf("provision on a closed port: %v, want ErrUnavailable", err)
	}
}

func mustExec(t *testing.T, ctx context.Context, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, ctx context.Context, c *pgx.Conn) int {
	t.Helper()
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM notes").Scan(&n); err != nil {
		t.Fatalf("count notes: %v", err)
	}
	return n
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// Concurrent provisions of one instance are serialised: exactly one creates
// it, the others find it.
func TestPostgresConcurrentProvision(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	b := newBroker(t, pgbroker.Config{})
	req := services.ProvisionRequest{InstanceID: "race-" + randHex(4), ServiceID: svc, PlanID: plan}
	const n = 4
	results := make(chan error, n)
	created := make(chan bool, n)
	for range n {
		go func() {
			res, err := b.Provision(ctx, req)
			created <- err == nil && !res.AlreadyExists
			results <- err
		}()
	}
	var fresh int
	for range n {
		if err := <-results; err != nil {
			t.Error(err)
		}
		if <-created {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d provisions created the instance, want 1", fresh)
	}
}

// A provision interrupted before its final step is finished by the next.
func TestPostgresResumesHalfProvision(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	b := newBroker(t, pgbroker.Config{})
	req := services.ProvisionRequest{InstanceID: "half-" + randHex(4), ServiceID: svc, PlanID: plan}
	if _, err := b.Provision(ctx, req); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, adminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// Undo the last step: the marker comment.
	mustExec(t, ctx, conn, "COMMENT ON DATABASE "+pgx.Identifier{b.DatabaseName(req.InstanceID)}.Sanitize()+" IS NULL")
	if _, err := b.Bind(ctx, services.BindRequest{InstanceID: req.InstanceID, BindingID: "b", ServiceID: svc, PlanID: plan}); !errors.Is(err, services.ErrInstanceNotFound) {
		t.Errorf("bind to a half-provisioned instance: %v, want ErrInstanceNotFound", err)
	}
	res, err := b.Provision(ctx, req)
	if err != nil || res.AlreadyExists {
		t.Fatalf("resumed provision = %+v, %v; want a fresh success", res, err)
	}
	if _, err := b.Bind(ctx, services.BindRequest{InstanceID: req.InstanceID, BindingID: "b-" + randHex(4), ServiceID: svc, PlanID: plan}); err != nil {
		t.Errorf("bind after resumed provision: %v", err)
	}
}
