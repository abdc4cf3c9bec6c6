package sqlstore

import (
	"path/filepath"
	"testing"

	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/controller/store/storetest"
)

func BenchmarkSQLite(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) store.Store {
		return openSQLite(b, filepath.Join(b.TempDir(), "kiln.db"))
	})
}

func BenchmarkPostgres(b *testing.B) {
	url := postgresURL(b)
	storetest.Benchmark(b, func(b *testing.B) store.Store {
		return openPostgres(b, url, freshSchema(b, url))
	})
}
