package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/controller/blobstore/memblob"
	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/controller/store/memstore"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/kerneltest"
	"github.com/kiln-paas/kiln/warden"
)

// appsDir holds the sample apps.
var appsDir = filepath.Join("..", "..", "examples", "apps")

// instanceRE finds the instance index in a sample app's answer.
var instanceRE = regexp.MustCompile(`instance (-?\d+)`)

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestSampleApps pushes every sample app to one kernel running real
// processes and expects each to answer through the router.
func TestSampleApps(t *testing.T) {
	t.Parallel()
	k := kerneltest.Start(t, kerneltest.WithProcesses())
	tests := []struct {
		app, want string
	}{
		{"static", "Hello from static!"},
		{"python", "Hello from python! instance 0"},
		{"node", "Hello from node! instance 0"},
		{"go", "Hello from go! instance 0"},
	}
	for _, tt := range tests {
		t.Run(tt.app, func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t, 2*time.Minute)
			start := time.Now()
			if err := k.Push(ctx, tt.app, filepath.Join(appsDir, tt.app), 1); err != nil {
				t.Fatal(err)
			}
			st, body, err := k.Get(k.AppHost(tt.app), "/")
			if err != nil || st != http.StatusOK || !strings.Contains(body, tt.want) {
				t.Fatalf("GET %s = %d %q %v, want 200 with %q", tt.app, st, body, err, tt.want)
			}
			t.Logf("%s: push to first 200 in %v", tt.app, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestLifecycle scales a real app to three instances, kills one with
// SIGKILL, and stops the app, checking the router at every step.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	k := kerneltest.Start(t, kerneltest.WithProcesses())
	ctx := testCtx(t, 2*time.Minute)
	const name = "py"
	host := k.AppHost(name)
	if err := k.Push(ctx, name, filepath.Join(appsDir, "python"), 1); err != nil {
		t.Fatal(err)
	}

	// Scale to 3: requests spread over the three instances.
	if err := k.Client.Scale(ctx, name, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Client.WaitRunning(ctx, name, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitIndices(ctx, t, k, host, 3)

	// Kill -9 one instance while a client keeps sending requests.
	insts, err := k.Client.Instances(ctx, name)
	if err != nil || len(insts) != 3 {
		t.Fatalf("instances = %+v, %v; want 3", insts, err)
	}
	victim := insts[1]
	load := startLoad(k, host)
	killInstance(ctx, t, k.Backend, victim.Instance)
	waitReplaced(ctx, t, k.Client, name, victim.Instance)
	waitIndices(ctx, t, k, host, 3)
	failed, total, longest := load.stop()
	t.Logf("kill -9: %d of %d requests failed during the replacement, for at most %v", failed, total, longest)
	if longest > time.Second {
		t.Errorf("requests failed for %v after a kill: the router kept serving a dead backend", longest)
	}

	// Scale down to 1 under load: no request fails.
	load = startLoad(k, host)
	if err := k.Client.Scale(ctx, name, 1); err != nil {
		t.Fatal(err)
	}
	waitCount(ctx, t, k.Client, name, 1)
	failed, total, _ = load.stop()
	if failed != 0 {
		t.Errorf("scale 3 to 1: %d of %d requests failed", failed, total)
	}

	// Stop: the route disappears.
	if err := k.Client.Stop(ctx, name); err != nil {
		t.Fatal(err)
	}
	waitStatus(ctx, t, k, host, http.StatusNotFound)
}

// TestRestart closes a kernel and starts another on the same store and
// blobstore: the app that was started comes back.
func TestRestart(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, 2*time.Minute)
	st, err := memstore.New(memstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := memblob.New(memblob.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	k1, err := kerneltest.New(ctx, kerneltest.WithProcesses(), kerneltest.WithStore(st), kerneltest.WithBlobstore(blobs))
	if err != nil {
		t.Fatal(err)
	}
	if err := k1.Push(ctx, "web", filepath.Join(appsDir, "static"), 2); err != nil {
		k1.Close()
		t.Fatal(err)
	}
	if err := k1.Client.CreateApp(ctx, client.AppRequest{Name: "idle", URIs: []string{k1.AppHost("idle")}, Instances: 1, Memory: 64}); err != nil {
		t.Fatal(err)
	}
	if err := k1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	k2 := kerneltest.Start(t, kerneltest.WithProcesses(), kerneltest.WithStore(st), kerneltest.WithBlobstore(blobs))
	body, err := k2.WaitServing(ctx, k2.AppHost("web"), "/")
	if err != nil || !strings.Contains(body, "Hello from static!") {
		t.Fatalf("after restart: %q %v", body, err)
	}
	a, err := k2.Client.WaitRunning(ctx, "web", 20*time.Millisecond)
	if err != nil || a.Running() != 2 {
		t.Fatalf("after restart: %d running, %v; want 2", a.Running(), err)
	}
	if st, _, err := k2.Get(k2.AppHost("idle"), "/"); err != nil || st != http.StatusNotFound {
		t.Fatalf("never-started app after restart = %d %v, want 404", st, err)
	}
}

// TestUsersIsolated checks that one user can neither see nor touch another
// user's apps.
func TestUsersIsolated(t *testing.T) {
	t.Parallel()
	k := kerneltest.Start(t)
	ctx := testCtx(t, time.Minute)
	alice, err := k.NewUser(ctx, "alice@example.com", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := k.NewUser(ctx, "bob@example.com", "bob-pw")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.PushAs(ctx, alice, "alices", filepath.Join(appsDir, "python"), 1); err != nil {
		t.Fatal(err)
	}
	apps, err := bob.Apps(ctx)
	if err != nil || len(apps) != 0 {
		t.Fatalf("bob's apps = %+v, %v; want none", apps, err)
	}
	tests := []struct {
		name string
		op   func() error
	}{
		{"get", func() error { _, err := bob.App(ctx, "alices"); return err }},
		{"stop", func() error { return bob.Stop(ctx, "alices") }},
		{"scale", func() error { return bob.Scale(ctx, "alices", 3) }},
		{"delete", func() error { return bob.DeleteApp(ctx, "alices") }},
		{"instances", func() error { _, err := bob.Instances(ctx, "alices"); return err }},
		{"logs", func() error { _, err := bob.Logs(ctx, "alices"); return err }},
	}
	for _, tt := range tests {
		var apiErr *client.Error
		if err := tt.op(); !errors.As(err, &apiErr) || (apiErr.Status != http.StatusNotFound && apiErr.Status != http.StatusForbidden) {
			t.Errorf("bob %s alice's app: err = %v, want 404 or 403", tt.name, err)
		}
	}
	// Bob cannot take alice's route either.
	err = bob.CreateApp(ctx, client.AppRequest{Name: "thief", URIs: []string{k.AppHost("alices")}, Instances: 1, Memory: 64})
	if err == nil {
		t.Error("bob mapped alice's URI")
	}
	a, err := alice.App(ctx, "alices")
	if err != nil || a.State != "STARTED" || a.Instances != 1 {
		t.Fatalf("alice's app after bob's attempts: %+v, %v", a, err)
	}
	if st, _, err := k.Get(k.AppHost("alices"), "/"); err != nil || st != http.StatusOK {
		t.Fatalf("alice's app = %d %v, want 200", st, err)
	}
}

// waitIndices sends requests through the router until answers from n
// distinct instance indices were seen.
func waitIndices(ctx context.Context, t *testing.T, k *kerneltest.Kernel, host string, n int) {
	t.Helper()
	seen := map[string]bool{}
	for len(seen) < n {
		st, body, err := k.Get(host, "/")
		if err == nil && st == http.StatusOK {
			if m := instanceRE.FindStringSubmatch(body); m != nil {
				seen[m[1]] = true
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("saw instances %v, want %d distinct", seen, n)
		}
	}
}

// waitStatus polls host until it answers status.
func waitStatus(ctx context.Context, t *testing.T, k *kerneltest.Kernel, host string, status int) {
	t.Helper()
	for {
		st, _, err := k.Get(host, "/")
		if err == nil && st == status {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: last %d %v, want %d", host, st, err, status)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitCount polls the app until exactly n instances run and no other is
// reported.
func waitCount(ctx context.Context, t *testing.T, cl *client.Client, name string, n int) {
	t.Helper()
	for {
		insts, err := cl.Instances(ctx, name)
		running := 0
		for _, i := range insts {
			if i.State == "RUNNING" {
				running++
			}
		}
		if err == nil && running == n && len(insts) == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: instances %+v (%v), want %d running", name, insts, err, n)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// killInstance sends SIGKILL to every process of the instance's container.
func killInstance(ctx context.Context, t *testing.T, b warden.Backend, instance string) {
	t.Helper()
	cs, err := b.Containers(ctx, warden.Properties{dea.PropertyInstance: instance})
	if err != nil || len(cs) != 1 {
		t.Fatalf("containers of instance %s: %d, %v", instance, len(cs), err)
	}
	info, err := cs[0].Info(ctx)
	if err != nil || len(info.PIDs) == 0 {
		t.Fatalf("info of %s: %+v, %v", instance, info, err)
	}
	for _, pid := range info.PIDs {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("kill %d: %v", pid, err)
		}
	}
}

// waitReplaced waits until the app runs all its instances and none is the
// killed one.
func waitReplaced(ctx context.Context, t *testing.T, cl *client.Client, name, killed string) {
	t.Helper()
	for {
		a, err := cl.App(ctx, name)
		insts, ierr := cl.Instances(ctx, name)
		ok := err == nil && ierr == nil && a.Running() == a.Instances
		for _, i := range insts {
			ok = ok && i.Instance != killed
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: killed instance %s not replaced: %s", name, killed, describe(insts))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// load sends requests through the router from four goroutines until
// stopped, counting failures (anything but 200).
type load struct {
	failed, total atomic.Int64
	cancel        context.CancelFunc
	wg            sync.WaitGroup

	mu          sync.Mutex
	failingFrom time.Time     // start of the current run of failures
	longest     time.Duration // longest run of failures
}

// record notes one answer and tracks the longest run of failures.
func (l *load) record(ok bool) {
	l.total.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case !ok && l.failingFrom.IsZero():
		l.failed.Add(1)
		l.failingFrom = time.Now()
	case !ok:
		l.failed.Add(1)
		l.longest = max(l.longest, time.Since(l.failingFrom))
	case ok && !l.failingFrom.IsZero():
		l.longest = max(l.longest, time.Since(l.failingFrom))
		l.failingFrom = time.Time{}
	}
}

func startLoad(k *kerneltest.Kernel, host string) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	for range 4 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				st, _, err := k.Get(host, "/")
				l.record(err == nil && st == http.StatusOK)
			}
		}()
	}
	return l
}

// stop ends the load and returns the failed and total requests and the
// longest time requests kept failing.
func (l *load) stop() (failed, total int64, longest time.Duration) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed.Load(), l.total.Load(), l.longest
}

// describe is a compact description of instances for failures.
func describe(insts []client.Instance) string {
	var b strings.Builder
	for _, i := range insts {
		fmt.Fprintf(&b, "[%d %s %s :%d] ", i.Index, i.State, i.Instance, i.Port)
	}
	return b.String()
}
