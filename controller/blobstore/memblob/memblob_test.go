package memblob_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/blobstore/blobtest"
	"github.com/kiln-paas/kiln/controller/blobstore/memblob"
)

func newStore(t testing.TB, cfg memblob.Config) *memblob.Store {
	t.Helper()
	s, err := memblob.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobstore.Blobstore {
		return newStore(t, memblob.DefaultConfig())
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  memblob.Config
		ok   bool
	}{
		{"default", memblob.DefaultConfig(), true},
		{"limit", memblob.Config{MaxSize: 10}, true},
		{"negative limit", memblob.Config{MaxSize: -1}, false},
	}
	for _, tc := range tests {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if _, err := memblob.New(tc.cfg); (err == nil) != tc.ok {
			t.Errorf("%s: New() error %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestMaxSize(t *testing.T) {
	s := newStore(t, memblob.Config{MaxSize: 100})
	exact := blobtest.Content(100, 1)
	if _, err := s.Put(t.Context(), blobstore.KindResource, blobtest.SHA1(exact), bytes.NewReader(exact)); err != nil {
		t.Fatalf("Put at the limit: %v", err)
	}
	over := blobtest.Content(101, 2)
	_, err := s.Put(t.Context(), blobstore.KindResource, blobtest.SHA1(over), bytes.NewReader(over))
	if !errors.Is(err, blobstore.ErrTooLarge) {
		t.Errorf("Put over the limit: %v, want ErrTooLarge", err)
	}
	if _, err := s.Stat(t.Context(), blobstore.KindResource, blobtest.SHA1(over)); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat of oversized blob: %v, want ErrNotFound", err)
	}
}

func TestClock(t *testing.T) {
	at := time.Date(2011, 4, 12, 0, 0, 0, 0, time.UTC)
	s := newStore(t, memblob.Config{Now: func() time.Time { return at }})
	in, err := s.Add(t.Context(), blobstore.KindPackage, bytes.NewReader([]byte("zip")))
	if err != nil {
		t.Fatal(err)
	}
	if !in.ModTime.Equal(at) {
		t.Errorf("ModTime %v, want the injected %v", in.ModTime, at)
	}
	for got, err := range s.List(t.Context(), blobstore.KindPackage) {
		if err != nil || !got.ModTime.Equal(at) {
			t.Errorf("List: %v, %v; want ModTime %v", got, err, at)
		}
	}
}

func BenchmarkStore(b *testing.B) {
	blobtest.Benchmark(b, func(b *testing.B) blobstore.Blobstore {
		return newStore(b, memblob.DefaultConfig())
	})
}
