package linux_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/internal/syncbuf"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/linux"
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
	t.Cleanup(func() {
		if err := b.Destroy(context.Background(), c.Handle()); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	return c
}

// sh runs script in c and returns its status, stdout and stderr.
func sh(t testing.TB, c warden.Container, script string) (int, string, string) {
	t.Helper()
	var out, errb syncbuf.Buffer
	p, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "sh", Args: []string{"-c", script}}, warden.ProcessIO{Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("Run(%q): %v", script, err)
	}
	st, err := p.Wait(testCtx(t))
	if err != nil {
		t.Fatalf("Wait(%q): %v", script, err)
	}
	return st, out.String(), errb.String()
}

func streamFile(t testing.TB, c warden.Container, name, body string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.StreamIn(testCtx(t), "/", &buf); err != nil {
		t.Fatal(err)
	}
}

func TestIsolation(t *testing.T) {
	requireHost(t)
	b := newBackend(t, testConfig(t))
	c := create(t, b, warden.ContainerSpec{Handle: "iso"})
	other := create(t, b, warden.ContainerSpec{Handle: "iso-other"})
	streamFile(t, other, "secret", "other's data")
	otherInfo, err := other.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	canary := filepath.Join(os.TempDir(), "kiln-linux-canary-"+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(canary, []byte("host"), 0o666); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(canary) })

	tests := []struct {
		name   string
		script string
		check  func(t *testing.T, status int, out, errOut string)
	}{
		{"sees only its own processes", `echo /proc/[0-9]*`, func(t *testing.T, st int, out, _ string) {
			// init (1) and this shell; no host process.
			pids := strings.Fields(out)
			if st != 0 || len(pids) > 3 || !slices.Contains(pids, "/proc/1") {
				t.Errorf("status %d, /proc holds %v; want init and the shell only", st, pids)
			}
		}},
		{"runs as an unprivileged user", `id -u; id -g`, func(t *testing.T, st int, out, _ string) {
			f := strings.Fields(out)
			if st != 0 || len(f) != 2 || f[0] == "0" || f[0] != f[1] {
				t.Errorf("status %d, ids %q; want one non-root uid and gid", st, out)
			}
		}},
		{"base is read-only", `echo x > /usr/kiln-evil || echo x > /etc/kiln-evil || echo refused`, func(t *testing.T, st int, out, _ string) {
			if out != "refused\n" {
				t.Errorf("writing /usr and /etc: %q", out)
			}
			for _, p := range []string{"/usr/kiln-evil", "/etc/kiln-evil"} {
				if _, err := os.Stat(p); err == nil {
					os.Remove(p)
					t.Errorf("%s was written on the host", p)
				}
			}
		}},
		{"host paths unreachable", "cat " + canary + " || echo " + "x > " + canary + " || echo gone", func(t *testing.T, _ int, out, _ string) {
			if b, _ := os.ReadFile(canary); string(b) != "host" {
				t.Errorf("host file changed to %q", b)
			}
			if strings.Contains(out, "host") {
				t.Errorf("read a host file: %q", out)
			}
		}},
		{"layer, tmp and dev/null writable", `echo a > /mine && echo b > /tmp/t && echo c > /dev/null && cat /mine /tmp/t`, func(t *testing.T, st int, out, errOut string) {
			if st != 0 || out != "a\nb\n" {
				t.Errorf("status %d out %q err %q", st, out, errOut)
			}
		}},
		{"other containers' files unreachable", "cat /secret " + filepath.Join(otherInfo.Path, "secret") + "; ls /", func(t *testing.T, _ int, out, _ string) {
			if strings.Contains(out, "other's data") || strings.Contains(out, "secret") {
				t.Errorf("saw the other container's file: %q", out)
			}
		}},
		{"own hostname", `hostname`, func(t *testing.T, st int, out, _ string) {
			if st != 0 || out != "iso\n" {
				t.Errorf("hostname = %d %q, want iso", st, out)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, out, errOut := sh(t, c, tc.script)
			tc.check(t, st, out, errOut)
		})
	}
}

func TestMemoryLimitOOM(t *testing.T) {
	requireHost(t)
	b := newBackend(t, testConfig(t))
	c := create(t, b, warden.ContainerSpec{Limits: warden.Limits{MemoryBytes: 32 << 20}})
	// tail keeps a whole newline-free line in memory: 256 MiB of it.
	p, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "sh", Args: []string{"-c", "head -c 268435456 /dev/zero | tail -n 1 > /dev/null"}}, warden.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st != 137 {
		t.Fatalf("pipeline allocating past the limit exited %d, want 137 (tail killed)", st)
	}
	info, err := c.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.Events, warden.EventOutOfMemory) {
		t.Errorf("Events = %v, want %q", info.Events, warden.EventOutOfMemory)
	}
	// The shell saw tail killed; a process killed itself reports why.
	q, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "tail", Args: []string{"-n", "1", "/dev/zero"}}, warden.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := q.Wait(testCtx(t)); err != nil || st != 137 {
		t.Fatalf("tail of /dev/zero = %d, %v; want 137", st, err)
	}
	if r := q.(linux.ExitReasoner).ExitReason(); r != linux.ReasonOutOfMemory {
		t.Errorf("ExitReason = %q, want %q", r, linux.ReasonOutOfMemory)
	}
	// The container lives on.
	if st, out, _ := sh(t, c, "echo alive"); st != 0 || out != "alive\n" {
		t.Errorf("after OOM: %d %q", st, out)
	}
}

func TestForkBombStopped(t *testing.T) {
	requireHost(t)
	cfg := testConfig(t)
	cfg.PidsLimit = 32
	cfg.CPUQuota = 20 * time.Millisecond // a fifth of a CPU: spare the host
	b := newBackend(t, cfg)
	c, err := b.Create(testCtx(t), warden.ContainerSpec{})
	if err != nil {
		t.Fatal(err)
	}
	var errOut syncbuf.Buffer
	if _, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "sh", Args: []string{"-c", "b() { b | b & }; b; sleep 100"}}, warden.ProcessIO{Stderr: &errOut}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errOut.String(), "fork") && !strings.Contains(errOut.String(), "Resource temporarily unavailable") {
		if time.Now().After(deadline) {
			t.Fatalf("no fork failure reported; stderr %q", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	info, err := c.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(info.PIDs); n > int(cfg.PidsLimit) {
		t.Errorf("%d processes, above the limit %d", n, cfg.PidsLimit)
	}
	if err := b.Destroy(testCtx(t), c.Handle()); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	for _, pid := range info.PIDs {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			if s, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup"); strings.Contains(string(s), c.Handle()) {
				t.Errorf("process %d of the destroyed container still runs", pid)
			}
		}
	}
}
