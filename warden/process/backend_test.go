package process_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/internal/syncbuf"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/process"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func create(t testing.TB, b warden.Backend, spec warden.ContainerSpec) warden.Container {
	t.Helper()
	c, err := b.Create(testCtx(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Destroy(context.Background(), c.Handle()) })
	return c
}

func sh(script string) warden.ProcessSpec {
	return warden.ProcessSpec{Path: "sh", Args: []string{"-c", script}}
}

// poll waits for cond, polling state outside the test's control.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runWait(t *testing.T, c warden.Container, spec warden.ProcessSpec) (int, string) {
	t.Helper()
	var out syncbuf.Buffer
	p, err := c.Run(testCtx(t), spec, warden.ProcessIO{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	st, err := p.Wait(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return st, out.String()
}

func tarFile(t *testing.T, name, body string, mode int64) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(tw, body); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

// gone reports whether pid no longer runs (zombies count as gone: PID 1
// of a test container may never reap them).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func TestGrandchildKilled(t *testing.T) {
	t.Parallel()
	b := newBackend(t, testConfig(t))
	c := create(t, b, warden.ContainerSpec{})
	// The grandchild ignores TERM and detaches from its parent's wait.
	p, err := c.Run(testCtx(t), sh(`(trap '' TERM; exec sleep 100) & echo $! > child.pid; exit 0`), warden.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(testCtx(t)); err != nil || st != 0 {
		t.Fatalf("parent: %d %v", st, err)
	}
	info, err := c.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(info.Path, "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if gone(pid) {
		t.Fatalf("grandchild %d not running before Stop", pid)
	}
	if !containsPID(info.PIDs, pid) {
		t.Errorf("Info.PIDs %v lacks the grandchild %d", info.PIDs, pid)
	}
	if err := c.Stop(testCtx(t), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !gone(pid) {
		t.Errorf("grandchild %d survived Stop", pid)
	}
}

func containsPID(pids []int, pid int) bool {
	for _, p := range pids {
		if p == pid {
			return true
		}
	}
	return false
}

func TestStreamRefusesLinksMadeByProcesses(t *testing.T) {
	t.Parallel()
	b := newBackend(t, testConfig(t))
	c := create(t, b, warden.ContainerSpec{})
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("ln -s %s abs && ln -s ../../.. rel && mkdir d", outside)
	if st, out := runWait(t, c, sh(script)); st != 0 {
		t.Fatalf("ln: %d %s", st, out)
	}
	for _, src := range []string{"abs", "abs/secret", "rel", "rel/etc"} {
		if _, err := c.StreamOut(testCtx(t), src); !errors.Is(err, warden.ErrInvalidPath) {
			t.Errorf("StreamOut(%q) = %v, want ErrInvalidPath", src, err)
		}
		if err := c.StreamIn(testCtx(t), src, tarFile(t, "x", "x", 0o644)); !errors.Is(err, warden.ErrInvalidPath) {
			t.Errorf("StreamIn(%q) = %v, want ErrInvalidPath", src, err)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "x")); err == nil {
		t.Error("StreamIn wrote outside the container")
	}
	// The links themselves are archived as links, not followed.
	r, err := c.StreamOut(testCtx(t), "/")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tr := tar.NewReader(r)
	got := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h.Linkname
	}
	want := map[string]string{"abs": outside, "rel": "../../..", "d/": ""}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("archive of / (-want +got):\n%s", diff)
	}
}

func TestProgramLookup(t *testing.T) {
	t.Parallel()
	b := newBackend(t, testConfig(t))
	c := create(t, b, warden.ContainerSpec{})
	if err := c.StreamIn(testCtx(t), "/app/bin", tarFile(t, "hello", "#!/bin/sh\necho from the container $PORT\n", 0o755)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		spec warden.ProcessSpec
		want string
	}{
		{warden.ProcessSpec{Path: "/app/bin/hello", Env: []string{"PORT=1"}}, "from the container 1\n"},
		{warden.ProcessSpec{Path: "bin/hello", Dir: "app", Env: []string{"PORT=2"}}, "from the container 2\n"},
		{warden.ProcessSpec{Path: "hello", Env: []string{"PATH=/app/bin:/usr/bin:/bin", "PORT=3"}}, ""},
		{warden.ProcessSpec{Path: "hello", Env: []string{"PATH=app/bin", "PORT=4"}}, "from the container 4\n"},
		{warden.ProcessSpec{Path: "/bin/echo", Args: []string{"host"}}, "host\n"},
	}
	for _, tc := range tests {
		p, err := c.Run(testCtx(t), tc.spec, warden.ProcessIO{})
		if tc.want == "" {
			// PATH entries are host directories: /app/bin is not the container's.
			if !errors.Is(err, warden.ErrNotFound) {
				t.Errorf("Run(%+v) = %v, want ErrNotFound", tc.spec, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Run(%+v): %v", tc.spec, err)
			continue
		}
		_ = p
		if st, out := runWait(t, c, tc.spec); st != 0 || out != tc.want {
			t.Errorf("Run(%+v) = %d %q, want %q", tc.spec, st, out, tc.want)
		}
	}
	_, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "no-such-program"}, warden.ProcessIO{})
	if !errors.Is(err, warden.ErrNotFound) {
		t.Errorf("Run of a missing program = %v", err)
	}
}

func TestUser(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	// Another user must be able to reach its working directory.
	for _, d := range []string{filepath.Dir(cfg.Root), cfg.Root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b := newBackend(t, cfg)
	c := create(t, b, warden.ContainerSpec{})
	_, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "true", User: "no-such-user-kiln"}, warden.ProcessIO{})
	if !errors.Is(err, warden.ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
	spec := warden.ProcessSpec{Path: "id", Args: []string{"-u"}, User: "nobody"}
	if os.Geteuid() != 0 {
		_, err := c.Run(testCtx(t), spec, warden.ProcessIO{})
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("other user without root: %v", err)
		}
		return
	}
	st, out := runWait(t, c, spec)
	if st != 0 || strings.TrimSpace(out) == "0" {
		t.Errorf("id -u as nobody = %d %q", st, out)
	}
}

func TestSetLimitsAppliesToRunning(t *testing.T) {
	t.Parallel()
	b := newBackend(t, testConfig(t))
	c := create(t, b, warden.ContainerSpec{})
	if _, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "sleep", Args: []string{"100"}}, warden.ProcessIO{}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetLimits(testCtx(t), warden.Limits{FileDescriptors: 77}); err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(testCtx(t))
	if err != nil || len(info.PIDs) != 1 {
		t.Fatalf("Info: %+v %v", info, err)
	}
	var rl unix.Rlimit
	if err := unix.Prlimit(info.PIDs[0], unix.RLIMIT_NOFILE, nil, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur != 77 || rl.Max != 77 {
		t.Errorf("RLIMIT_NOFILE of the running process = %d/%d, want 77/77", rl.Cur, rl.Max)
	}
}

func TestOutputFollowAndAttach(t *testing.T) {
	t.Parallel()
	b := newBackend(t, testConfig(t))
	c := create(t, b, warden.ContainerSpec{})
	spec := sh("echo one; while [ ! -e go ]; do sleep 0.01; done; echo two")
	spec.ID, spec.StdoutPath = "w", "logs/out"
	var first, second syncbuf.Buffer
	p, err := c.Run(testCtx(t), spec, warden.ProcessIO{Stdout: &first})
	if err != nil {
		t.Fatal(err)
	}
	poll(t, "first output", func() bool { return first.String() == "one\n" })
	a, err := c.Attach(testCtx(t), "w", warden.ProcessIO{Stdout: &second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StreamIn(testCtx(t), "/", tarFile(t, "go", "", 0o644)); err != nil {
		t.Fatal(err)
	}
	if st, err := a.Wait(testCtx(t)); st != 0 || err != nil {
		t.Fatalf("Wait = %d %v", st, err)
	}
	if _, err := p.Wait(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if first.String() != "one\ntwo\n" {
		t.Errorf("Run's writer got %q", first.String())
	}
	poll(t, "attached output", func() bool { return second.String() == "two\n" })
}

func TestOrphanHoldingPipeDoesNotBlockWait(t *testing.T) {
	t.Parallel()
	b := newBackend(t, testConfig(t))
	c := create(t, b, warden.ContainerSpec{})
	start := time.Now()
	st, out := runWait(t, c, sh("sleep 100 & echo hi"))
	if st != 0 || out != "hi\n" {
		t.Errorf("got %d %q", st, out)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Wait took %v with an orphan holding stdout", took)
	}
}

func TestRootLocked(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	newBackend(t, cfg)
	if _, err := process.New(cfg); !errors.Is(err, warden.ErrExists) {
		t.Errorf("second New on the same root = %v, want ErrExists", err)
	}
}

func TestReattachInProcess(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	b1, err := process.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := b1.Create(testCtx(t), warden.ContainerSpec{Handle: "keep", Properties: warden.Properties{"instance": "i-1"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.NetIn(testCtx(t), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	spec := warden.ProcessSpec{ID: "web", Path: "sleep", Args: []string{"100"}}
	if _, err := c.Run(testCtx(t), spec, warden.ProcessIO{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(testCtx(t), warden.ProcessSpec{ID: "done", Path: "sh", Args: []string{"-c", "exit 4"}}, warden.ProcessIO{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "short process to exit", func() bool {
		i, _ := c.Info(testCtx(t))
		return len(i.ProcessIDs) == 1
	})
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}

	b2 := newBackend(t, cfg)
	cs, err := b2.Containers(testCtx(t), warden.Properties{"instance": "i-1"})
	if err != nil || len(cs) != 1 {
		t.Fatalf("Containers after restart = %v, %v", cs, err)
	}
	info, err := cs[0].Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"web"}, info.ProcessIDs); diff != "" {
		t.Errorf("ProcessIDs after restart (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]warden.PortMapping{m}, info.Ports); diff != "" {
		t.Errorf("Ports after restart (-want +got):\n%s", diff)
	}
	done, err := cs[0].Attach(testCtx(t), "done", warden.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := done.Wait(testCtx(t)); st != 4 || err != nil {
		t.Errorf("status of a process that exited before the restart = %d %v, want 4", st, err)
	}
	p, err := cs[0].Attach(testCtx(t), "web", warden.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(testCtx(t), warden.SignalTerminate); err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(testCtx(t)); err != nil || (st != warden.ExitStatusUnknown && st != 143) {
		t.Errorf("Wait after restart = %d %v, want ExitStatusUnknown", st, err)
	}
	if _, err := cs[0].NetIn(testCtx(t), m.HostPort, 0); !errors.Is(err, warden.ErrExists) {
		t.Errorf("NetIn of a port mapped before the restart = %v, want ErrExists", err)
	}
}

// helperEnv names the root a re-executed test binary uses to create a
// container and exit, leaving its process running: a real restart.
const helperEnv = "KILN_WARDEN_PROCESS_HELPER_ROOT"

func TestHelperCreatesAndExits(t *testing.T) {
	root := os.Getenv(helperEnv)
	if root == "" {
		t.Skip("helper for TestReattachAfterExit")
	}
	cfg := process.DefaultConfig()
	cfg.Root = root
	b, err := process.New(cfg)
	if err != nil {
		fmt.Println("helper:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	c, err := b.Create(ctx, warden.ContainerSpec{Handle: "survivor"})
	if err == nil {
		_, err = c.Run(ctx, warden.ProcessSpec{ID: "web", Path: "sh", Args: []string{"-c", "echo started; exec sleep 100"}, StdoutPath: "logs/stdout"}, warden.ProcessIO{})
	}
	if err != nil {
		fmt.Println("helper:", err)
		os.Exit(1)
	}
	os.Exit(0) // no Close: as if the program crashed
}

func TestReattachAfterExit(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCreatesAndExits$")
	cmd.Env = append(os.Environ(), helperEnv+"="+root)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	cfg := testConfig(t)
	cfg.Root = root
	b := newBackend(t, cfg)
	c, err := b.Lookup(testCtx(t), "survivor")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Destroy(context.Background(), "survivor") })
	var logs syncbuf.Buffer
	p, err := c.Attach(testCtx(t), "web", warden.ProcessIO{Stdout: &logs})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := p.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("reattached process not running: %v", err)
	}
	info, err := c.Info(testCtx(t))
	if err != nil || len(info.PIDs) != 1 {
		t.Fatalf("Info after restart: %+v %v", info, err)
	}
	b2, err := os.ReadFile(filepath.Join(info.Path, "logs/stdout"))
	if err != nil || string(b2) != "started\n" {
		t.Errorf("log file = %q %v", b2, err)
	}
	if err := c.Stop(testCtx(t), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(testCtx(t)); st != warden.ExitStatusUnknown || err != nil {
		t.Errorf("Wait = %d %v, want ExitStatusUnknown", st, err)
	}
	if err := p.Signal(testCtx(t), warden.SignalKill); !errors.Is(err, warden.ErrProcessDone) {
		t.Errorf("Signal after exit = %v", err)
	}
}

func TestCorruptStateSkipped(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	if err := os.MkdirAll(filepath.Join(cfg.Root, "broken", "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Root, "broken", "state.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, cfg)
	if _, err := b.Lookup(testCtx(t), "broken"); !errors.Is(err, warden.ErrNotFound) {
		t.Errorf("Lookup of a corrupt container = %v", err)
	}
	if _, err := b.Create(testCtx(t), warden.ContainerSpec{Handle: "broken"}); !errors.Is(err, warden.ErrExists) {
		t.Errorf("Create over a corrupt container's directory = %v, want ErrExists", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*process.Config)
		ok     bool
	}{
		{"valid", func(*process.Config) {}, true},
		{"no root", func(c *process.Config) { c.Root = "" }, false},
		{"bad ip", func(c *process.Config) { c.HostIP = "x" }, false},
		{"relative shell", func(c *process.Config) { c.Shell = "sh" }, false},
		{"zero poll", func(c *process.Config) { c.MemoryPollInterval = 0 }, false},
		{"negative max", func(c *process.Config) { c.MaxContainers = -1 }, false},
	}
	for _, tc := range tests {
		cfg := testConfig(t)
		tc.mutate(&cfg)
		err := cfg.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, warden.ErrInvalidSpec)) {
			t.Errorf("%s: Validate = %v", tc.name, err)
		}
	}
}

func TestCapacityAndMetrics(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.MaxContainers = 2
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	b := newBackend(t, cfg)
	capa, err := b.Capacity(testCtx(t))
	if err != nil || capa.MemoryBytes == 0 || capa.DiskBytes == 0 || capa.MaxContainers != 2 {
		t.Errorf("Capacity = %+v, %v", capa, err)
	}
	create(t, b, warden.ContainerSpec{})
	c := create(t, b, warden.ContainerSpec{})
	if _, err := b.Create(testCtx(t), warden.ContainerSpec{}); !errors.Is(err, warden.ErrLimitExceeded) {
		t.Errorf("Create beyond MaxContainers = %v", err)
	}
	runWait(t, c, sh("exit 0"))
	want := map[string]float64{
		"kiln_warden_process_containers":              2,
		"kiln_warden_process_processes_started_total": 1,
		"kiln_warden_process_oom_kills_total":         0,
	}
	if diff := cmp.Diff(want, gather(t, reg)); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}

// gather returns the value of every unlabelled metric in reg.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				out[mf.GetName()] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[mf.GetName()] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// TestManyContainers runs sleepers in 200 containers at once.
func TestManyContainers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 200 processes")
	}
	t.Parallel()
	const n = 200
	b := newBackend(t, testConfig(t))
	g, ctx := errgroup.WithContext(testCtx(t))
	g.SetLimit(16)
	start := time.Now()
	cs := make([]warden.Container, n)
	for i := range n {
		g.Go(func() error {
			c, err := b.Create(ctx, warden.ContainerSpec{})
			if err != nil {
				return err
			}
			cs[i] = c
			_, err = c.Run(ctx, warden.ProcessSpec{Path: "sleep", Args: []string{"100"}}, warden.ProcessIO{})
			return err
		})
	}
	err := g.Wait()
	t.Cleanup(func() {
		for _, c := range cs {
			if c != nil {
				_ = b.Destroy(context.Background(), c.Handle())
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("created and started %d in %v", n, time.Since(start))
	start = time.Now()
	for _, c := range cs {
		info, err := c.Info(testCtx(t))
		if err != nil || len(info.PIDs) != 1 {
			t.Fatalf("%s: %+v %v", c.Handle(), info.PIDs, err)
		}
	}
	t.Logf("info of %d in %v", n, time.Since(start))
	start = time.Now()
	g, ctx = errgroup.WithContext(testCtx(t))
	g.SetLimit(16)
	for _, c := range cs {
		g.Go(func() error { return b.Destroy(ctx, c.Handle()) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("destroyed %d in %v", n, time.Since(start))
}
