package fsblob_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/blobstore/blobtest"
	"github.com/kiln-paas/kiln/controller/blobstore/fsblob"
)

func newStore(t testing.TB, cfg fsblob.Config) *fsblob.Store {
	t.Helper()
	s, err := fsblob.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobstore.Blobstore {
		return newStore(t, fsblob.DefaultConfig(t.TempDir()))
	})
}

func TestConformanceNoSync(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobstore.Blobstore {
		cfg := fsblob.DefaultConfig(t.TempDir())
		cfg.NoSync = true
		return newStore(t, cfg)
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  fsblob.Config
		ok   bool
	}{
		{"default", fsblob.DefaultConfig(t.TempDir()), true},
		{"all set", fsblob.Config{Root: t.TempDir(), MaxSize: 1, TempGrace: time.Hour, NoSync: true}, true},
		{"no root", fsblob.Config{}, false},
		{"negative limit", fsblob.Config{Root: t.TempDir(), MaxSize: -1}, false},
		{"negative grace", fsblob.Config{Root: t.TempDir(), TempGrace: -time.Second}, false},
	}
	for _, tc := range tests {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if _, err := fsblob.New(tc.cfg); (err == nil) != tc.ok {
			t.Errorf("%s: New() error %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestNewRootIsAFile(t *testing.T) {
	root := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(root, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fsblob.New(fsblob.DefaultConfig(root)); err == nil {
		t.Error("New on a regular file succeeded")
	}
}

func TestLayout(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, fsblob.DefaultConfig(root))
	p := []byte("layout")
	key := blobtest.SHA1(p)
	if _, err := s.Put(t.Context(), blobstore.KindResource, key, bytes.NewReader(p)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(t.Context(), blobstore.KindBuildCache, "x", bytes.NewReader(p)); err != nil {
		t.Fatal(err)
	}
	got := files(t, root)
	want := []string{"buildcaches/x/x", "resources/" + key[:2] + "/" + key}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files on disk (-want +got):\n%s", diff)
	}
}

// files lists the regular files under root, slash-separated and sorted.
func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		out = append(out, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCrashLeftovers plays a writer that died between creating its
// temporary file and renaming it: the partial file is invisible and the next
// New removes it.
func TestCrashLeftovers(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, fsblob.DefaultConfig(root))
	p := blobtest.Content(1000, 1)
	key := blobtest.SHA1(p)
	leftovers := []string{
		filepath.Join(root, "droplets", key[:2], ".tmp-123"),
		filepath.Join(root, "droplets", ".tmp-456"),
		filepath.Join(root, "buildcaches", "ap", ".tmp-789"),
	}
	for _, f := range leftovers {
		if err := os.MkdirAll(filepath.Dir(f), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, p[:300], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Stat(t.Context(), blobstore.KindDroplet, key); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat with only a temporary file: %v, want ErrNotFound", err)
	}
	for _, kind := range blobstore.Kinds() {
		for in, err := range s.List(t.Context(), kind) {
			t.Errorf("List(%s) yielded %+v, %v; want nothing", kind, in, err)
		}
	}

	// A fresh temporary file survives a New with a grace period...
	cfg := fsblob.DefaultConfig(root)
	cfg.TempGrace = time.Hour
	newStore(t, cfg)
	if got := files(t, root); len(got) != len(leftovers) {
		t.Errorf("New with TempGrace removed fresh temporaries: left %v", got)
	}
	// ...but not once it is old enough.
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(leftovers[0], old, old); err != nil {
		t.Fatal(err)
	}
	newStore(t, cfg)
	if got := files(t, root); len(got) != len(leftovers)-1 {
		t.Errorf("New with TempGrace kept a stale temporary: left %v", got)
	}
	// The default removes them all and leaves blobs alone.
	if _, err := s.Put(t.Context(), blobstore.KindDroplet, key, bytes.NewReader(p)); err != nil {
		t.Fatal(err)
	}
	newStore(t, fsblob.DefaultConfig(root))
	if diff := cmp.Diff([]string{"droplets/" + key[:2] + "/" + key}, files(t, root)); diff != "" {
		t.Errorf("files after New (-want +got):\n%s", diff)
	}
}

// TestFailuresLeaveNoFiles checks that every failing put cleans up its
// temporary file.
func TestFailuresLeaveNoFiles(t *testing.T) {
	root := t.TempDir()
	cfg := fsblob.DefaultConfig(root)
	cfg.MaxSize = 1000
	s := newStore(t, cfg)
	p := blobtest.Content(2000, 2)
	ctx := t.Context()
	_, err := s.Put(ctx, blobstore.KindPackage, blobtest.SHA1(p[:500]), bytes.NewReader(p[:600]))
	if !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Errorf("mismatch: %v", err)
	}
	_, err = s.Put(ctx, blobstore.KindPackage, blobtest.SHA1(p), bytes.NewReader(p))
	if !errors.Is(err, blobstore.ErrTooLarge) {
		t.Errorf("Put over MaxSize: %v, want ErrTooLarge", err)
	}
	_, err = s.Add(ctx, blobstore.KindPackage, bytes.NewReader(p))
	if !errors.Is(err, blobstore.ErrTooLarge) {
		t.Errorf("Add over MaxSize: %v, want ErrTooLarge", err)
	}
	_, err = s.Put(ctx, blobstore.KindBuildCache, "app", bytes.NewReader(p))
	if !errors.Is(err, blobstore.ErrTooLarge) {
		t.Errorf("Put(buildcache) over MaxSize: %v, want ErrTooLarge", err)
	}
	if got := files(t, root); len(got) != 0 {
		t.Errorf("failed puts left files: %v", got)
	}
	if _, err := s.Put(ctx, blobstore.KindPackage, blobtest.SHA1(p[:1000]), bytes.NewReader(p[:1000])); err != nil {
		t.Errorf("Put at MaxSize: %v", err)
	}
}

// TestListSkipsStrays: files that are not valid keys of their shard (an
// operator's notes, a misplaced blob) are not blobs.
func TestListSkipsStrays(t *testing.T) {
	root := t.TempDir()
	s := newStore(t, fsblob.DefaultConfig(root))
	p := []byte("real")
	key := blobtest.SHA1(p)
	if _, err := s.Put(t.Context(), blobstore.KindResource, key, bytes.NewReader(p)); err != nil {
		t.Fatal(err)
	}
	other := blobtest.SHA1([]byte("misplaced"))
	strays := map[string]string{
		"resources/README":                        "notes",
		"resources/" + key[:2] + "/NOTES":         "notes",
		"resources/" + key[:2] + "/" + other:      "misplaced", // wrong shard
		"resources/zz/" + strings.Repeat("z", 40): "not hex",
	}
	for name, body := range strays {
		f := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(f), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	for in, err := range s.List(t.Context(), blobstore.KindResource) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, in.Key)
	}
	if diff := cmp.Diff([]string{key}, keys); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := fsblob.DefaultConfig(t.TempDir())
	cfg.Registerer = reg
	s := newStore(t, cfg)
	p := []byte("counted")
	ctx := t.Context()
	if _, err := s.Put(ctx, blobstore.KindDroplet, blobtest.SHA1(p), bytes.NewReader(p)); err != nil {
		t.Fatal(err)
	}
	_, _ = s.Stat(ctx, blobstore.KindDroplet, blobtest.SHA1([]byte("absent")))
	_, _ = s.Stat(ctx, "bogus", "x")
	_, _ = s.Put(ctx, blobstore.KindDroplet, blobtest.SHA1([]byte("other")), bytes.NewReader(p))

	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += " " + l.GetName() + "=" + l.GetValue()
			}
			got[name] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"kiln_blobstore_operations_total kind=droplets op=put result=ok":            1,
		"kiln_blobstore_operations_total kind=droplets op=put result=hash_mismatch": 1,
		"kiln_blobstore_operations_total kind=droplets op=stat result=not_found":    1,
		"kiln_blobstore_operations_total kind=invalid op=stat result=invalid":       1,
		"kiln_blobstore_written_bytes_total kind=droplets":                          float64(len(p)),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	// A second store on the same registry must fail loudly, not double count.
	if _, err := fsblob.New(cfg); err == nil {
		t.Error("New registered the same metrics twice without error")
	}
}

func BenchmarkStore(b *testing.B) {
	blobtest.Benchmark(b, func(b *testing.B) blobstore.Blobstore {
		return newStore(b, fsblob.DefaultConfig(b.TempDir()))
	})
}

// BenchmarkStoreNoSync shows what the fsyncs cost.
func BenchmarkStoreNoSync(b *testing.B) {
	blobtest.Benchmark(b, func(b *testing.B) blobstore.Blobstore {
		cfg := fsblob.DefaultConfig(b.TempDir())
		cfg.NoSync = true
		return newStore(b, cfg)
	})
}
