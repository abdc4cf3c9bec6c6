package process_test

import (
	"testing"

	"github.com/kiln-paas/kiln/warden/process"
	"github.com/kiln-paas/kiln/warden/wardentest"
)

// BenchmarkLifecycle: go test -run ^$ -bench Lifecycle -benchtime 100x ./warden/process/
func BenchmarkLifecycle(b *testing.B) {
	cfg := process.DefaultConfig()
	cfg.Root = b.TempDir()
	be, err := process.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Close() })
	wardentest.BenchLifecycle(b, be)
}
