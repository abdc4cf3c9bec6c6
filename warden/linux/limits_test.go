package linux_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/internal/syncbuf"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/linux"
)

func TestConfigValidate(t *testing.T) {
	ok := linux.DefaultConfig()
	ok.Root = "/var/lib/kiln"
	tests := []struct {
		name   string
		mutate func(*linux.Config)
		ok     bool
	}{
		{"default", func(*linux.Config) {}, true},
		{"relative root", func(c *linux.Config) { c.Root = "rel" }, false},
		{"bad host ip", func(c *linux.Config) { c.HostIP = "localhost" }, false},
		{"no containers", func(c *linux.Config) { c.MaxContainers = 0 }, false},
		{"root uid", func(c *linux.Config) { c.UIDBase = 0 }, false},
		{"nested base dir", func(c *linux.Config) { c.BaseDirs = []string{"usr/lib"} }, false},
		{"reserved base dir", func(c *linux.Config) { c.BaseDirs = []string{"proc"} }, false},
		{"device outside /dev", func(c *linux.Config) { c.Devices = []string{"/etc/passwd"} }, false},
		{"cgroup version", func(c *linux.Config) { c.CgroupVersion = 3 }, false},
		{"absolute cgroup parent", func(c *linux.Config) { c.CgroupParent = "/x" }, false},
		{"tiny quota", func(c *linux.Config) { c.CPUQuota = time.Microsecond }, false},
		{"no init", func(c *linux.Config) { c.InitPath = "" }, false},
	}
	for _, tc := range tests {
		cfg := ok
		tc.mutate(&cfg)
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, warden.ErrInvalidSpec) {
			t.Errorf("%s: error %v does not match ErrInvalidSpec", tc.name, err)
		}
	}
}

func TestDiskLimitEnforced(t *testing.T) {
	requireHost(t)
	b := newBackend(t, testConfig(t)) // polls disk use every 100ms
	c := create(t, b, warden.ContainerSpec{Limits: warden.Limits{DiskBytes: 64 << 10}})
	p, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "sh", Args: []string{"-c", "head -c 1000000 /dev/zero > big; sleep 100"}}, warden.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(testCtx(t)); err != nil || st != 137 {
		t.Fatalf("process over the disk limit: %d, %v; want 137", st, err)
	}
	info, err := c.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(info.Events, linux.EventOutOfDisk) || info.Usage.DiskBytes < 1000000 {
		t.Errorf("events %v, disk use %d; want %q and the file counted", info.Events, info.Usage.DiskBytes, linux.EventOutOfDisk)
	}
}

func TestUsersAndUsage(t *testing.T) {
	requireHost(t)
	b := newBackend(t, testConfig(t))
	c := create(t, b, warden.ContainerSpec{})
	_, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "true", User: "root"}, warden.ProcessIO{})
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Run as root: %v, want ErrUnsupported", err)
	}
	if st, out, _ := sh(t, c, "echo $USER $HOME"); st != 0 || out != "vcap /\n" {
		t.Errorf("USER HOME = %d %q", st, out)
	}
	var out syncbuf.Buffer
	p, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "sh", User: "vcap", Args: []string{"-c", "echo ready; exec sleep 100"}}, warden.ProcessIO{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "ready") && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	info, err := c.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.PIDs) != 1 || info.Usage.MemoryBytes == 0 {
		t.Errorf("Info: pids %v, usage %+v; want the sleeper and its memory", info.PIDs, info.Usage)
	}
	if err := p.Signal(testCtx(t), warden.SignalKill); err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(testCtx(t)); err != nil || st != 137 {
		t.Errorf("Wait = %d, %v", st, err)
	}
	if r := p.(linux.ExitReasoner).ExitReason(); r != "" {
		t.Errorf("ExitReason of a plain kill = %q, want none", r)
	}
	cp, err := b.Capacity(testCtx(t))
	if err != nil || cp.MemoryBytes == 0 || cp.DiskBytes == 0 || cp.MaxContainers != 1024 {
		t.Errorf("Capacity = %+v, %v", cp, err)
	}
}

// TestCgroupV2OnHybrid runs containers on the v2 code path where the host
// is a hybrid one: its unified hierarchy has no memory, pids or cpu
// controller, so no limits, but placement, listing, killing and removal
// are v2's.
func TestCgroupV2OnHybrid(t *testing.T) {
	requireHost(t)
	var fs syscall.Statfs_t
	if err := syscall.Statfs("/sys/fs/cgroup/unified", &fs); err != nil || fs.Type != 0x63677270 {
		t.Skip("not a hybrid cgroup host")
	}
	cfg := testConfig(t)
	cfg.CgroupVersion = 2
	cfg.CgroupMount = "/sys/fs/cgroup/unified"
	cfg.CPUShares, cfg.PidsLimit = 0, 0
	b, err := linux.NewUnchecked(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.Close()
		linux.RemoveCgroupParent(cfg)
	})
	c, err := b.Create(testCtx(t), warden.ContainerSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if st, out, _ := sh(t, c, "cat /proc/self/cgroup | grep '^0::'"); st != 0 || !strings.HasSuffix(out, "/"+c.Handle()+"/app\n") {
		t.Errorf("v2 cgroup of a process = %d %q, want the app leaf", st, out)
	}
	p, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "sh", Args: []string{"-c", "trap '' TERM; sleep 100 & wait"}}, warden.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.Info(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(info.PIDs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PIDs = %v, want the shell and sleep", info.PIDs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.Stop(testCtx(t), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(testCtx(t)); err != nil || st != 137 {
		t.Errorf("after Stop: %d, %v; want 137 (cgroup.kill)", st, err)
	}
	if _, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "true"}, warden.ProcessIO{}); !errors.Is(err, warden.ErrStopped) {
		t.Errorf("Run after Stop: %v", err)
	}
	if err := b.Destroy(testCtx(t), c.Handle()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.CgroupMount, cfg.CgroupParent, c.Handle())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cgroup left after Destroy: %v", err)
	}
	if _, err := b.Create(testCtx(t), warden.ContainerSpec{Limits: warden.Limits{MemoryBytes: 1 << 30}}); err == nil {
		t.Error("a memory limit without the memory controller was accepted")
	}
}
