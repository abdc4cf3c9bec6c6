package sqlstore

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/controller/store"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	path := filepath.Join(t.TempDir(), "kiln.db")
	open := func() *Store {
		cfg := DefaultConfig(path)
		cfg.Logger, cfg.Registerer = quiet, reg
		s, err := Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	s := open()
	ctx := context.Background()
	if _, err := s.GetApp(ctx, "missing"); err == nil {
		t.Fatal("GetApp of a missing app succeeded")
	}
	if _, err := s.CreateUser(ctx, store.User{Email: "a@x"}); err != nil {
		t.Fatal(err)
	}
	if n := series(t, reg, "kiln_store_operation_duration_seconds"); n != 2 {
		t.Errorf("%d duration series, want 2 (get_app, create_user)", n)
	}
	// A missing record is not a failure of the store.
	if n := series(t, reg, "kiln_store_operation_failures_total"); n != 0 {
		t.Errorf("%d failure series after a not-found, want 0", n)
	}
	// Close unregisters, so a reopened store registers afresh.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	if _, err := s.GetUser(ctx, "a@x"); err != nil {
		t.Fatal(err)
	}
	if n := series(t, reg, "kiln_store_operation_duration_seconds"); n != 1 {
		t.Errorf("%d duration series after reopen, want 1", n)
	}
}

// series counts the series of the metric family name in reg.
func series(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}
