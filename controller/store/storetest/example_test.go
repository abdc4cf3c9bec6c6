package storetest_test

import (
	"testing"

	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/controller/store/memstore"
	"github.com/kiln-paas/kiln/controller/store/storetest"
)

// An implementation's test file runs the suite with a constructor of fresh
// stores (here the in-memory one).
func ExampleRun() {
	_ = func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) store.Store {
			s, err := memstore.New(memstore.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	}
}
