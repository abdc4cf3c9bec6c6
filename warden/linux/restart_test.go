package linux_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/linux"
)

// waitGone polls until host process pid has exited.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || slices.Contains([]string{"Z", "X"}, string(statState(b))) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func statState(b []byte) []byte {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2 : i+3]
		}
	}
	return nil
}

func TestRestartReattaches(t *testing.T) {
	requireHost(t)
	cfg := testConfig(t)
	b1, err := linux.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := b1.Create(testCtx(t), warden.ContainerSpec{Handle: "keep", Properties: warden.Properties{"app": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	run := func(id, script string) warden.Process {
		p, err := c.Run(testCtx(t), warden.ProcessSpec{ID: id, Path: "sh", Args: []string{"-c", script}, StdoutPath: "/logs/" + id}, warden.ProcessIO{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	quick := run("quick", "exit 3")
	if st, err := quick.Wait(testCtx(t)); err != nil || st != 3 {
		t.Fatalf("quick = %d, %v", st, err)
	}
	run("web", "sleep 100")
	run("later", "while [ ! -e go ]; do sleep 0.01; done; echo bye; exit 5")
	info, err := c.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}

	// While no backend runs, "later" exits; its init keeps the status.
	if err := os.WriteFile(filepath.Join(info.Path, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(info.Path, "logs", "later"))
		if string(b) == "bye\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("later never finished")
		}
		time.Sleep(5 * time.Millisecond)
	}

	b2 := newBackend(t, cfg)
	cs, err := b2.Containers(testCtx(t), warden.Properties{"app": "a"})
	if err != nil || len(cs) != 1 || cs[0].Handle() != "keep" {
		t.Fatalf("Containers after restart = %v, %v", cs, err)
	}
	c2 := cs[0]
	waitStatus := func(id string, want int) warden.Process {
		t.Helper()
		p, err := c2.Attach(testCtx(t), id, warden.ProcessIO{})
		if err != nil {
			t.Fatalf("Attach(%s): %v", id, err)
		}
		if id == "web" {
			if err := p.Signal(testCtx(t), warden.SignalTerminate); err != nil {
				t.Fatalf("Signal: %v", err)
			}
		}
		if st, err := p.Wait(testCtx(t)); err != nil || st != want {
			t.Errorf("%s after restart: %d, %v; want %d", id, st, err, want)
		}
		return p
	}
	waitStatus("quick", 3)
	waitStatus("later", 5) // exited while no backend ran: status kept by init
	waitStatus("web", 143)
	// The container still works.
	if st, out, _ := sh(t, c2, "echo again"); st != 0 || out != "again\n" {
		t.Errorf("run after restart = %d %q", st, out)
	}
}

func TestRestartAfterInitDied(t *testing.T) {
	requireHost(t)
	cfg := testConfig(t)
	b1, err := linux.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := b1.Create(testCtx(t), warden.ContainerSpec{Handle: "orphan"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(testCtx(t), warden.ProcessSpec{ID: "web", Path: "sleep", Args: []string{"100"}}, warden.ProcessIO{}); err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(cfg.Root, "orphan", "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		InitPID int `json:"init_pid"`
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.InitPID <= 1 {
		t.Fatalf("state init_pid %d, %v", st.InitPID, err)
	}
	// Killing a pid namespace's init kills everything in it.
	if err := syscall.Kill(st.InitPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, pid := range info.PIDs {
		waitGone(t, pid)
	}

	b2 := newBackend(t, cfg)
	c2, err := b2.Lookup(testCtx(t), "orphan")
	if err != nil {
		t.Fatal(err)
	}
	info2, err := c2.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info2.State != warden.StateStopped || len(info2.PIDs) != 0 || len(info2.ProcessIDs) != 0 {
		t.Errorf("after init died: state %s pids %v ids %v; want stopped and empty", info2.State, info2.PIDs, info2.ProcessIDs)
	}
	p, err := c2.Attach(testCtx(t), "web", warden.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(testCtx(t)); err != nil || code != warden.ExitStatusUnknown {
		t.Errorf("Wait = %d, %v; want unknown", code, err)
	}
	if _, err := c2.Run(testCtx(t), warden.ProcessSpec{Path: "true"}, warden.ProcessIO{}); !errors.Is(err, warden.ErrStopped) {
		t.Errorf("Run on the dead container: %v, want ErrStopped", err)
	}
	if err := b2.Destroy(testCtx(t), "orphan"); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(cfg.Root)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{".lock"}, names); diff != "" {
		t.Errorf("Root after Destroy (-want +got):\n%s", diff)
	}
}

func TestSecondBackendRefused(t *testing.T) {
	requireHost(t)
	cfg := testConfig(t)
	newBackend(t, cfg)
	if _, err := linux.New(cfg); !errors.Is(err, warden.ErrExists) {
		t.Errorf("second New on one Root: %v, want ErrExists", err)
	}
}
