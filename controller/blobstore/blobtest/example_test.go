package blobtest_test

import (
	"testing"

	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/blobstore/blobtest"
	"github.com/kiln-paas/kiln/controller/blobstore/memblob"
)

// A store's test file runs the suite and the benchmarks with a constructor
// that hands out a fresh, empty store each time. (Not run here: it needs the
// *testing.T of a real test.)
func Example() {
	newStore := func(t testing.TB) blobstore.Blobstore {
		s, err := memblob.New(memblob.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_ = func(t *testing.T) {
		blobtest.Run(t, func(t *testing.T) blobstore.Blobstore { return newStore(t) })
	}
	_ = func(b *testing.B) {
		blobtest.Benchmark(b, func(b *testing.B) blobstore.Blobstore { return newStore(b) })
	}
}
