package e2e

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the pgx driver, to drop test schemas

	"github.com/kiln-paas/kiln/bus/natsbus"
	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/internal/syncbuf"
)

// roleBinaries builds the role commands once per test binary.
var roleBinaries struct {
	once sync.Once
	dir  string
	err  error
}

// buildRoles builds examples/{kernel,controller,dea,router,healthmgr} into
// a directory removed when the test binary exits (see TestMain).
func buildRoles(t *testing.T) string {
	t.Helper()
	roleBinaries.once.Do(func() {
		dir, err := os.MkdirTemp("", "kiln-e2e-bin-")
		if err != nil {
			roleBinaries.err = err
			return
		}
		roleBinaries.dir = dir
		cmd := exec.Command(goTool(), "build", "-o", dir+string(os.PathSeparator), "../../examples/kernel",
			"../../examples/controller", "../../examples/dea", "../../examples/router", "../../examples/healthmgr")
		if out, err := cmd.CombinedOutput(); err != nil {
			roleBinaries.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if roleBinaries.err != nil {
		t.Fatal(roleBinaries.err)
	}
	return roleBinaries.dir
}

// goTool is the go command: on PATH, else in its usual place.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

func TestMain(m *testing.M) {
	code := m.Run()
	if roleBinaries.dir != "" {
		os.RemoveAll(roleBinaries.dir)
	}
	os.Exit(code)
}

// proc is a running role command.
type proc struct {
	name      string
	cmd       *exec.Cmd
	endpoints map[string]string
	stderr    *syncbuf.Buffer
	done      chan struct{}
}

// startRole runs bin with args and waits for its "ready" line, collecting
// the name=url lines before it. The process is stopped with SIGTERM when
// the test ends.
func startRole(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	errBuf := &syncbuf.Buffer{}
	cmd.Stderr = errBuf
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: filepath.Base(bin), cmd: cmd, endpoints: map[string]string{}, stderr: errBuf, done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" && !signalled {
				signalled = true
				ready <- nil
				continue
			}
			if k, v, ok := strings.Cut(line, "="); ok && !signalled {
				p.endpoints[k] = v
			}
		}
		if !signalled {
			ready <- errors.New("exited before ready")
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("%s stderr:\n%s", p.name, errBuf.String())
		}
	})
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("%s: %v\n%s", p.name, err, errBuf.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("%s: not ready after 60s", p.name)
	}
	return p
}

// stop sends SIGTERM and waits up to 20 s before killing.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Errorf("%s did not exit after SIGTERM; killing it", p.name)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// cluster is the four role processes on one NATS server.
type cluster struct {
	bin, nats, data               string
	db, schema                    string // PostgreSQL URL and schema; "" is SQLite
	controller, dea, router, hmgr *proc
}

func (c *cluster) start(t *testing.T) {
	t.Helper()
	args := []string{"--nats", c.nats,
		"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--data-dir", filepath.Join(c.data, "controller"),
		"--admin-email", "admin@e2e.test", "--admin-password", "e2e-secret", "--log-level", "warn"}
	if c.db != "" {
		args = append(args, "--db", c.db, "--db-schema", c.schema)
	}
	c.controller = startRole(t, filepath.Join(c.bin, "controller"), args...)
	c.router = startRole(t, filepath.Join(c.bin, "router"), "--nats", c.nats,
		"--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--empty-route-grace", "0s", "--log-level", "warn")
	c.dea = startRole(t, filepath.Join(c.bin, "dea"), "--nats", c.nats, "--addr", "127.0.0.1:0",
		"--data-dir", filepath.Join(c.data, "dea"), "--backend", "process", "--heartbeat-interval", "1s", "--log-level", "warn")
	c.hmgr = startRole(t, filepath.Join(c.bin, "healthmgr"), "--nats", c.nats, "--addr", "127.0.0.1:0",
		"--controller", c.controller.endpoints["controller"], "--startup-wait", "500ms", "--grace", "1s",
		"--heartbeat-ttl", "5s", "--leader-election=false", "--log-level", "warn")
}

func (c *cluster) stop(t *testing.T) {
	for _, p := range []*proc{c.hmgr, c.dea, c.router, c.controller} {
		p.stop(t)
	}
}

// get sends GET / for host through the cluster's router.
func (c *cluster) get(ctx context.Context, host string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.router.endpoints["router"]+"/", nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (c *cluster) waitStatus(ctx context.Context, t *testing.T, host string, status int) string {
	t.Helper()
	for {
		st, body, err := c.get(ctx, host)
		if err == nil && st == status {
			return body
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: last %d %v, want %d", host, st, err, status)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *cluster) login(ctx context.Context, t *testing.T) *client.Client {
	t.Helper()
	cl, err := client.New(c.controller.endpoints["controller"], nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Login(ctx, "admin@e2e.test", "e2e-secret"); err != nil {
		t.Fatal(err)
	}
	return cl
}

// postgresURLEnv names a PostgreSQL server for TestMultiProcess's
// controller, as for the sqlstore tests.
const postgresURLEnv = "KILN_TEST_POSTGRES_URL"

// dropSchema removes a test's schema from the PostgreSQL server at u.
func dropSchema(t *testing.T, u, schema string) {
	db, err := sql.Open("pgx", u)
	if err != nil {
		t.Errorf("drop schema: %v", err)
		return
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
	}
}

// TestMultiProcess runs every role as its own process on a real NATS
// server (and PostgreSQL when KILN_TEST_POSTGRES_URL is set): push, kill -9 of the instance's process (found as the owner of
// its port), stop, and a restart of the whole platform.
func TestMultiProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the role commands")
	}
	t.Parallel()
	ctx := testCtx(t, 3*time.Minute)
	srv := natsbus.RunTestServer(t)
	c := &cluster{bin: buildRoles(t), nats: srv.ClientURL(), data: t.TempDir()}
	// With a PostgreSQL server (CI has one) the controller keeps its
	// records there, in a schema of its own, instead of SQLite.
	if u := os.Getenv(postgresURLEnv); u != "" {
		c.db, c.schema = u, fmt.Sprintf("kiln_e2e_%d_%d", os.Getpid(), time.Now().UnixNano())
		t.Cleanup(func() { dropSchema(t, u, c.schema) })
	}
	c.start(t)
	cl := c.login(ctx, t)

	const name, host = "web", "web.mp.test"
	if err := cl.CreateApp(ctx, client.AppRequest{Name: name, URIs: []string{host}, Instances: 1, Memory: 64}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Push(ctx, name, filepath.Join(appsDir, "static")); err != nil {
		t.Fatal(err)
	}
	if err := cl.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	if body := c.waitStatus(ctx, t, host, http.StatusOK); !strings.Contains(body, "Hello from static!") {
		t.Fatalf("body %q", body)
	}

	// kill -9 the process listening on the instance's port.
	insts, err := cl.Instances(ctx, name)
	if err != nil || len(insts) != 1 || insts[0].Port == 0 {
		t.Fatalf("instances = %+v, %v", insts, err)
	}
	pid, err := portOwner(insts[0].Port)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitReplaced(ctx, t, cl, name, insts[0].Instance)
	c.waitStatus(ctx, t, host, http.StatusOK)

	// Restart every role on the same data: the app comes back.
	c.stop(t)
	c.start(t)
	cl = c.login(ctx, t)
	c.waitStatus(ctx, t, host, http.StatusOK)

	if err := cl.Stop(ctx, name); err != nil {
		t.Fatal(err)
	}
	c.waitStatus(ctx, t, host, http.StatusNotFound)
}

// portOwner returns the pid of the process with a listening TCP socket on
// port (IPv4 or IPv6), read from /proc.
func portOwner(port int) (int, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 10 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, _ := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+fields[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no listener on port %d", port)
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, d := range procs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", d.Name(), "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join("/proc", d.Name(), "fd", fd.Name())); err == nil && inodes[target] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no process owns the listener on port %d", port)
}
