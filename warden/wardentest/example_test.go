package wardentest_test

import (
	"testing"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/fake"
	"github.com/kiln-paas/kiln/warden/wardentest"
)

// A backend's tests run the suite with a constructor; each subtest gets a
// fresh backend torn down by t.Cleanup.
func ExampleRun() {
	_ = func(t *testing.T) {
		wardentest.Run(t, func(t *testing.T) warden.Backend {
			b, err := fake.New(fake.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Close() })
			return b
		})
	}
}
