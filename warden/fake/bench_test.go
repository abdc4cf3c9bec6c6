package fake_test

import (
	"testing"

	"github.com/kiln-paas/kiln/warden/fake"
	"github.com/kiln-paas/kiln/warden/wardentest"
)

// BenchmarkLifecycle: go test -run ^$ -bench Lifecycle -benchtime 100x ./warden/fake/
func BenchmarkLifecycle(b *testing.B) {
	be, err := fake.New(fake.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Close() })
	wardentest.BenchLifecycle(b, be)
}
