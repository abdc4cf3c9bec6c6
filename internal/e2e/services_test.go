package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/kerneltest"
	"github.com/kiln-paas/kiln/services/pgbroker"
)

// rowsAnswer is the JSON examples/apps/gopg answers GET /rows with.
type rowsAnswer struct {
	Instance int    `json:"instance"`
	Service  string `json:"service"`
	Count    int64  `json:"count"`
	Error    string `json:"error"`
	SQLState string `json:"sqlstate"`
}

// getRows sends GET /rows to the app through the router and decodes the
// answer, whatever its status.
func getRows(t *testing.T, k *kerneltest.Kernel, host string) (int, rowsAnswer) {
	t.Helper()
	st, body, err := k.Get(host, "/rows")
	if err != nil {
		t.Fatalf("GET /rows: %v", err)
	}
	var ans rowsAnswer
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		t.Fatalf("GET /rows = %d %q: %v", st, body, err)
	}
	return st, ans
}

// adminConn connects to the PostgreSQL server at u as its administrator.
func adminConn(ctx context.Context, t *testing.T, u string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connect to %s: %v", postgresURLEnv, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// dropPrefixed drops every database and role whose name starts with
// prefix+"_": whatever a failed test's broker left behind.
func dropPrefixed(t *testing.T, u, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Errorf("clean up %s_*: %v", prefix, err)
		return
	}
	defer conn.Close(context.Background())
	like := prefix + `\_%`
	for _, q := range []struct{ list, drop string }{
		{"SELECT datname FROM pg_database WHERE datname LIKE $1", "DROP DATABASE IF EXISTS %s WITH (FORCE)"},
		// Binding roles (members) before the owner roles they belong to.
		{"SELECT rolname FROM pg_roles WHERE rolname LIKE $1 ORDER BY rolname LIKE '%\\_own\\_%', rolname", "DROP ROLE IF EXISTS %s"},
	} {
		rows, err := conn.Query(ctx, q.list, like)
		if err != nil {
			t.Errorf("clean up %s_*: %v", prefix, err)
			return
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Errorf("clean up %s_*: %v", prefix, err)
			return
		}
		for _, n := range names {
			if _, err := conn.Exec(ctx, fmt.Sprintf(q.drop, pgx.Identifier{n}.Sanitize())); err != nil {
				t.Errorf("clean up %s: %v", n, err)
			}
		}
	}
}

// TestPostgresService runs the whole life of a PostgreSQL service through
// a kernel running real processes, with services/pgbroker built into the
// controller: provision, push examples/apps/gopg bound to the instance
// (staging downloads pgx through the Go module proxy), read and write rows
// with the credentials from VCAP_SERVICES, unbind without restarting the
// app (its old credentials must then fail), and deprovision (the database
// must be gone). It needs the PostgreSQL administrator URL in
// KILN_TEST_POSTGRES_URL.
func TestPostgresService(t *testing.T) {
	adminURL := os.Getenv(postgresURLEnv)
	if adminURL == "" {
		t.Skip(postgresURLEnv + " is not set: no PostgreSQL server to provision databases on " +
			"(e.g. postgres://postgres:postgres@127.0.0.1:5432/postgres?sslmode=disable)")
	}
	if testing.Short() {
		t.Skip("stages a Go app with a module dependency and provisions a real database")
	}
	t.Parallel()
	ctx := testCtx(t, 5*time.Minute)

	// A prefix of our own keeps this run's databases and roles apart from
	// other runs' and lets the cleanup find whatever a failure left.
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	prefix := "e2e_" + hex.EncodeToString(rnd[:])
	pb, err := pgbroker.New(pgbroker.Config{AdminURL: adminURL, NamePrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	// Registered before the kernel's cleanup, so it runs after it: the
	// app's sessions are gone by then.
	t.Cleanup(func() {
		pb.Close()
		dropPrefixed(t, adminURL, prefix)
	})
	if err := pb.Ping(ctx); err != nil {
		t.Fatalf("%s names an unusable server: %v", postgresURLEnv, err)
	}

	// The Go buildpack shares the host's build cache (kerneltest's
	// default for WithGoBuildCache), so staging downloads pgx and its
	// dependencies but compiles little the host has not compiled before.
	k := kerneltest.Start(t, kerneltest.WithProcesses(), kerneltest.WithBroker("postgresql", pb))
	cl := k.Client
	const app, svc = "gopg", "pgdb"
	host := k.AppHost(app)

	start := time.Now()
	if err := cl.CreateService(ctx, svc, "postgresql", "", "shared"); err != nil {
		t.Fatalf("create service: %v", err)
	}
	db := onlyDatabase(ctx, t, adminConn(ctx, t, adminURL), prefix)
	t.Logf("provisioned %s in %v", db, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	pushBound(ctx, t, k, app, filepath.Join(appsDir, "gopg"), svc)
	t.Logf("push to first 200 in %v", time.Since(start).Round(time.Millisecond))
	if _, body, err := k.Get(host, "/"); err != nil || !strings.Contains(body, "Hello from gopg! instance 0, database service: "+svc) {
		t.Fatalf("GET / = %q %v", body, err)
	}
	insts, err := cl.Instances(ctx, app)
	if err != nil || len(insts) != 1 || insts[0].Instance == "" {
		t.Fatalf("instances = %+v, %v", insts, err)
	}

	for want := int64(1); want <= 2; want++ {
		st, ans := getRows(t, k, host)
		if st != http.StatusOK || ans.Count != want || ans.Service != svc || ans.Instance != 0 {
			t.Fatalf("GET /rows #%d = %d %+v, want 200 with count %d", want, st, ans, want)
		}
	}

	// Unbinding revokes the credentials the running app still holds.
	if err := cl.UnbindService(ctx, app, svc); err != nil {
		t.Fatalf("unbind: %v", err)
	}
	st, ans := getRows(t, k, host)
	if st != http.StatusInternalServerError || !revoked(ans) {
		t.Fatalf("GET /rows after unbind = %d %+v, want 500 with an authentication or permission error", st, ans)
	}
	t.Logf("after unbind: %s (SQLSTATE %s)", ans.Error, ans.SQLState)
	// ... without the app having been restarted: the same instance, with
	// the same VCAP_SERVICES, answered.
	after, err := cl.Instances(ctx, app)
	if err != nil || len(after) != 1 || after[0].Instance != insts[0].Instance {
		t.Fatalf("instances after unbind = %+v, %v; want the same instance as before (%+v)", after, err, insts)
	}
	if a, err := cl.App(ctx, app); err != nil || len(a.Services) != 0 {
		t.Fatalf("app after unbind: services %v, %v", a.Services, err)
	}

	// Deprovisioning drops the database (and the instance's roles).
	if err := cl.DeleteService(ctx, svc); err != nil {
		t.Fatalf("delete service: %v", err)
	}
	admin := adminConn(ctx, t, adminURL)
	var dbs, roles int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", db).Scan(&dbs); err != nil {
		t.Fatal(err)
	}
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1", prefix+`\_%`).Scan(&roles); err != nil {
		t.Fatal(err)
	}
	if dbs != 0 || roles != 0 {
		t.Errorf("after deprovision: database %s exists %d time(s), %d role(s) %s_* remain", db, dbs, roles, prefix)
	}
	if svcs, err := cl.Services(ctx); err != nil || len(svcs) != 0 {
		t.Errorf("services after delete = %+v, %v", svcs, err)
	}
}

// revoked reports whether the app's error is PostgreSQL refusing the
// binding's credentials: authentication failed (28P01), the role may not
// log in or does not exist (28000), or lacks a privilege (42501).
func revoked(ans rowsAnswer) bool {
	switch ans.SQLState {
	case pgerrInvalidPassword, pgerrInvalidAuthorization, pgerrInsufficientPrivilege:
		return true
	}
	return false
}

// SQLSTATE codes of refused credentials.
const (
	pgerrInvalidAuthorization  = "28000"
	pgerrInvalidPassword       = "28P01"
	pgerrInsufficientPrivilege = "42501"
)

// onlyDatabase returns the one database named with prefix.
func onlyDatabase(ctx context.Context, t *testing.T, conn *pgx.Conn, prefix string) string {
	t.Helper()
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1", prefix+`\_%`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 {
		t.Fatalf("databases %s_* after provisioning: %v, want one", prefix, names)
	}
	return names[0]
}

// pushBound creates app bound to service, pushes dir, starts one instance
// and waits until the router serves it; a failed staging fails the test
// with the staging log.
func pushBound(ctx context.Context, t *testing.T, k *kerneltest.Kernel, app, dir, service string) {
	t.Helper()
	cl := k.Client
	req := client.AppRequest{Name: app, URIs: []string{k.AppHost(app)}, Instances: 1, Memory: 256, Services: []string{service}}
	if err := cl.CreateApp(ctx, req); err != nil {
		t.Fatalf("create app: %v", err)
	}
	if _, err := cl.Push(ctx, app, dir); err != nil {
		t.Fatalf("push: %v", err)
	}
	if err := cl.Start(ctx, app); err != nil {
		t.Fatalf("start: %v", err)
	}
	if a, err := cl.WaitRunning(ctx, app, 50*time.Millisecond); err != nil {
		var log strings.Builder
		lctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = cl.StagingLog(lctx, app, false, &log)
		t.Fatalf("%s not running (package %s %s): %v\nstaging log:\n%s", app, a.PackageState, a.StagingError, err, log.String())
	}
	if _, err := k.WaitServing(ctx, k.AppHost(app), "/"); err != nil {
		t.Fatal(err)
	}
}
