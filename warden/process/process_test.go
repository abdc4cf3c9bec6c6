package process_test

import (
	"testing"
	"time"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/process"
	"github.com/kiln-paas/kiln/warden/wardentest"
)

func testConfig(t *testing.T) process.Config {
	cfg := process.DefaultConfig()
	cfg.Root = t.TempDir()
	cfg.MemoryPollInterval = 50 * time.Millisecond
	cfg.ExitPollInterval = 20 * time.Millisecond
	return cfg
}

func newBackend(t *testing.T, cfg process.Config) *process.Backend {
	t.Helper()
	b, err := process.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	wardentest.Run(t, func(t *testing.T) warden.Backend { return newBackend(t, testConfig(t)) })
}
