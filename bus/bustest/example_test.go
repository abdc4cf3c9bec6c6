package bustest_test

import (
	"testing"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/bustest"
	"github.com/kiln-paas/kiln/bus/membus"
)

// An implementation's test file runs the whole suite against two
// connections to a fresh bus per subtest; here, the in-process one.
func ExampleRun() {
	_ = func(t *testing.T) {
		bustest.Run(t, func(t *testing.T) (a, b bus.Bus) {
			srv := membus.NewServer(membus.DefaultConfig())
			t.Cleanup(srv.Close)
			return srv.Connect(), srv.Connect()
		})
	}
}
