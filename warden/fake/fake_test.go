package fake_test

import (
	"testing"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/fake"
	"github.com/kiln-paas/kiln/warden/wardentest"
)

func newBackend(t *testing.T) *fake.Backend {
	t.Helper()
	b, err := fake.New(fake.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	wardentest.Run(t, func(t *testing.T) warden.Backend { return newBackend(t) })
}
