package memstore_test

import (
	"testing"

	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/controller/store/storetest"
)

func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) store.Store { return newStore(b) })
}
