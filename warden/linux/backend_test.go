package linux_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/linux"
	"github.com/kiln-paas/kiln/warden/wardentest"
)

func TestMain(m *testing.M) {
	linux.Init() // the backend re-executes this binary as container inits
	os.Exit(m.Run())
}

// requireHost skips t when the host cannot run the backend.
func requireHost(t testing.TB) {
	t.Helper()
	if err := linux.Check(); err != nil {
		t.Skipf("warden/linux unavailable here: %v", err)
	}
}

// testConfig returns a configuration with its own Root and cgroup parent,
// so parallel tests and backends do not meet.
func testConfig(t testing.TB) linux.Config {
	t.Helper()
	cfg := linux.DefaultConfig()
	// TempDir can be on a noexec mount; the containers' root needs exec.
	root, err := os.MkdirTemp("", "kiln-linux-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o711); err != nil {
		t.Fatal(err)
	}
	cfg.Root = root
	cfg.CgroupParent = fmt.Sprintf("kiln-warden-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	cfg.DiskPollInterval = 100 * time.Millisecond
	return cfg
}

func newBackend(t testing.TB, cfg linux.Config) *linux.Backend {
	t.Helper()
	b, err := linux.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Destroy what a failed test left behind, then the parent cgroup.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cs, _ := b.Containers(ctx, nil)
		for _, c := range cs {
			_ = b.Destroy(ctx, c.Handle())
		}
		_ = b.Close()
		linux.RemoveCgroupParent(cfg)
	})
	return b
}

func TestConformance(t *testing.T) {
	requireHost(t)
	wardentest.Run(t, func(t *testing.T) warden.Backend {
		return newBackend(t, testConfig(t))
	})
}
