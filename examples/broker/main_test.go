package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/services/osb"
)

// TestMain lets a test run this binary's main in a child process.
func TestMain(m *testing.M) {
	if os.Getenv("KILN_BROKER_TEST_RUN_MAIN") == "1" {
		os.Args = os.Args[:1] // drop the test flags; the broker reads its env
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// readURL reads the "broker=" and "ready" lines from r.
func readURL(t *testing.T, r io.Reader) string {
	t.Helper()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var url string
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("output ended before ready")
			}
			if u, found := strings.CutPrefix(l, "broker="); found {
				url = u
			}
			if l == "ready" {
				if url == "" {
					t.Fatal("ready before broker=")
				}
				go func() {
					for range lines { // keep draining so the writer never blocks
					}
				}()
				return url
			}
		case <-deadline:
			t.Fatal("no ready line within 20 s")
		}
	}
}

// start runs the broker in-process with args and env; it stops at cleanup.
func start(t *testing.T, args []string, env map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, args, func(k string) string { return env[k] }, pw, io.Discard)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("run did not return after cancel")
		}
	})
	return readURL(t, pr)
}

func client(t *testing.T, url, user, pass string) *osb.Client {
	t.Helper()
	c, err := osb.NewClient(osb.Config{URL: url, Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMemoryBrokerFromEnv(t *testing.T) {
	t.Parallel()
	url := start(t, nil, map[string]string{
		"KILN_BROKER_USERNAME": "u", "KILN_BROKER_PASSWORD": "p", "KILN_BROKER_ASYNC": "true",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client(t, url, "u", "wrong").Catalog(ctx); !errors.Is(err, osb.ErrUnauthorized) {
		t.Errorf("wrong password: %v, want ErrUnauthorized", err)
	}
	c := client(t, url, "u", "p")
	cat, err := c.Catalog(ctx)
	if err != nil || len(cat.Services) != 1 {
		t.Fatalf("catalog = %+v, %v", cat, err)
	}
	svc, plan := cat.Services[0].ID, cat.Services[0].Plans[0].ID
	res, err := c.Provision(ctx, services.ProvisionRequest{InstanceID: "i", ServiceID: svc, PlanID: plan, AcceptsIncomplete: true})
	if err != nil || !res.Async {
		t.Fatalf("provision = %+v, %v; want async (KILN_BROKER_ASYNC)", res, err)
	}
	if _, err := services.WaitForOperation(ctx, c, services.LastOperationRequest{InstanceID: "i", Operation: res.Operation}, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Bind(ctx, services.BindRequest{InstanceID: "i", BindingID: "b", ServiceID: svc, PlanID: plan}); err != nil {
		t.Fatal(err)
	}
}

func TestBadOptions(t *testing.T) {
	t.Parallel()
	tests := [][]string{
		{"-broker", "redis"},
		{"-broker", "postgres"},
		{"-log-level", "loud"},
		{"-username", "u"},
		{"-listen", "256.0.0.1:1"},
		{"extra"},
	}
	for _, args := range tests {
		if err := run(context.Background(), args, func(string) string { return "" }, io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}

// TestSIGTERM runs main in a child process and stops it with SIGTERM.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "KILN_BROKER_TEST_RUN_MAIN=1", "KILN_BROKER=memory", "KILN_BROKER_LISTEN=127.0.0.1:0")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pr.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	url := readURL(t, pr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client(t, url, "", "").Catalog(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit within 15 s of SIGTERM")
	}
}

// TestPostgresBroker runs the PostgreSQL broker against a real server.
func TestPostgresBroker(t *testing.T) {
	t.Parallel()
	admin := os.Getenv("KILN_TEST_POSTGRES_URL")
	if admin == "" {
		t.Skip("KILN_TEST_POSTGRES_URL is not set")
	}
	prefix := "kex" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
	url := start(t, []string{"-broker", "postgres", "-username", "u", "-password", "p", "-name-prefix", prefix},
		map[string]string{"KILN_BROKER_POSTGRES_URL": admin})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := client(t, url, "u", "p")
	const svc, plan = "kiln-postgresql", "kiln-postgresql-shared"
	inst := "ex-" + prefix
	if _, err := c.Provision(ctx, services.ProvisionRequest{InstanceID: inst, ServiceID: svc, PlanID: plan}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = c.Deprovision(context.Background(), services.DeprovisionRequest{InstanceID: inst, ServiceID: svc, PlanID: plan})
	})
	b, err := c.Bind(ctx, services.BindRequest{InstanceID: inst, BindingID: "b-" + prefix, ServiceID: svc, PlanID: plan})
	if err != nil {
		t.Fatal(err)
	}
	uri, _ := b.Credentials["uri"].(string)
	conn, err := pgx.Connect(ctx, uri)
	if err != nil {
		t.Fatalf("connect with %v: %v", b.Credentials["username"], err)
	}
	var two int
	err = conn.QueryRow(ctx, "SELECT 1 + 1").Scan(&two)
	_ = conn.Close(ctx)
	if err != nil || two != 2 {
		t.Fatalf("query over bound credentials: %d, %v", two, err)
	}
	if err := c.Unbind(ctx, services.UnbindRequest{InstanceID: inst, BindingID: "b-" + prefix, ServiceID: svc, PlanID: plan}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Deprovision(ctx, services.DeprovisionRequest{InstanceID: inst, ServiceID: svc, PlanID: plan}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Deprovision(ctx, services.DeprovisionRequest{InstanceID: inst, ServiceID: svc, PlanID: plan}); !errors.Is(err, services.ErrInstanceNotFound) {
		t.Errorf("second deprovision over OSB: %v, want ErrInstanceNotFound (410)", err)
	}
}
