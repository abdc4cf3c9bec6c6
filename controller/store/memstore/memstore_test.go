package memstore_test

import (
	"testing"

	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/controller/store/memstore"
	"github.com/kiln-paas/kiln/controller/store/storetest"
)

func newStore(t testing.TB) store.Store {
	s, err := memstore.New(memstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

// FuzzCursor feeds client-supplied cursors to every paged list: they never
// panic and fail only with ErrInvalid.
func FuzzCursor(f *testing.F) {
	for _, c := range []string{"", "0", "-1", "42", "app-1", "\x00", "99999999999999999999"} {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, cursor string) {
		storetest.CheckCursor(t, newStore(t), cursor)
	})
}
