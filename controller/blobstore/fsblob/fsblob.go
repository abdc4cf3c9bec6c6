// Package fsblob is the default blobstore.Blobstore: a directory on disk.
//
// Layout: <Root>/<kind>/<shard>/<key>, where shard is the key's first two
// characters (the whole key if it has one), so no directory holds more than
// a 256th of a content-addressed kind. A put streams into a temporary file
// named ".tmp-*" (keys never start with a dot) inside the kind's tree,
// fsyncs it, renames it onto the final name and fsyncs the directory: a
// reader, another writer of the same blob, or a crash at any point sees the
// old blob or the new one, never a partial file. Temporary files a crash
// left behind are removed when a Store is opened.
package fsblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/blobstore/internal/ingest"
)

// tempPrefix starts every temporary file name; ValidateKey forbids a leading
// dot in keys, so temporaries can never be mistaken for blobs.
const tempPrefix = ".tmp-"

// Config configures a Store.
type Config struct {
	// Root is the directory holding the blobs; it is created if missing.
	Root string
	// MaxSize caps a single blob in bytes; larger puts fail with
	// blobstore.ErrTooLarge and leave nothing behind. 0 means no limit.
	MaxSize int64
	// TempGrace is how old a leftover temporary file must be before New
	// removes it. 0 (the default) removes all of them, which is right when
	// one process owns Root; when several controllers share Root (over NFS,
	// say) set it above the longest upload so that New does not delete
	// another process's upload in flight.
	TempGrace time.Duration
	// NoSync skips fsync of files and directories. Only for throwaway
	// directories in tests: a crash may then leave empty or partial blobs.
	NoSync bool
	// Logger receives the store's events; nil discards them.
	Logger *slog.Logger
	// Registerer receives the store's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// DefaultConfig returns a Config for root with fsync on, no size limit and
// removal of every leftover temporary file at open.
func DefaultConfig(root string) Config {
	return Config{Root: root}
}

// Validate reports a Config that New would refuse.
func (c Config) Validate() error {
	switch {
	case c.Root == "":
		return errors.New("fsblob: Root is empty")
	case c.MaxSize < 0:
		return fmt.Errorf("fsblob: MaxSize %d is negative", c.MaxSize)
	case c.TempGrace < 0:
		return fmt.Errorf("fsblob: TempGrace %v is negative", c.TempGrace)
	}
	return nil
}

// Store keeps blobs under a directory. It holds no open files between calls,
// so it needs no Close; several Stores (in one process or several) may share
// a Root, given a suitable TempGrace.
type Store struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
}

var _ blobstore.Blobstore = (*Store)(nil)

// New opens (creating if needed) the store at cfg.Root and removes leftover
// temporary files as cfg.TempGrace says.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, k := range blobstore.Kinds() {
		if err := os.MkdirAll(filepath.Join(cfg.Root, string(k)), 0o750); err != nil {
			return nil, fmt.Errorf("fsblob: create %s: %w", k, err)
		}
	}
	if err := s.removeTemps(time.Now()); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	return s, nil
}

// removeTemps deletes temporary files older than TempGrace from every kind's
// directory and shards.
func (s *Store) removeTemps(now time.Time) error {
	removed := 0
	for _, k := range blobstore.Kinds() {
		err := filepath.WalkDir(filepath.Join(s.cfg.Root, string(k)), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasPrefix(d.Name(), tempPrefix) {
				return nil
			}
			if s.cfg.TempGrace > 0 {
				fi, err := d.Info()
				if err != nil || now.Sub(fi.ModTime()) < s.cfg.TempGrace {
					return nil // vanished, or possibly someone's upload in flight
				}
			}
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			removed++
			return nil
		})
		if err != nil {
			return fmt.Errorf("fsblob: remove temporary files of %s: %w", k, err)
		}
	}
	if removed > 0 {
		s.log.Info("blob-temps-removed", "root", s.cfg.Root, "count", removed)
	}
	return nil
}

// shard is the directory name a key lives in.
func shard(key string) string {
	return key[:min(2, len(key))]
}

func (s *Store) kindDir(kind blobstore.Kind) string {
	return filepath.Join(s.cfg.Root, string(kind))
}

// path is only called with keys that passed ValidateKey, which makes them
// single, non-hidden path elements.
func (s *Store) path(kind blobstore.Kind, key string) string {
	return filepath.Join(s.cfg.Root, string(kind), shard(key), key)
}

// Put implements blobstore.Blobstore.
func (s *Store) Put(ctx context.Context, kind blobstore.Kind, key string, r io.Reader) (blobstore.Info, error) {
	job, err := ingest.Put(kind, key)
	if err != nil {
		s.metrics.op("put", kind, err)
		return blobstore.Info{}, err
	}
	// The temporary file goes into the blob's own shard so that the final
	// rename stays inside one directory.
	dir := filepath.Join(s.kindDir(kind), shard(key))
	in, err := s.store(ctx, kind, dir, job, r)
	s.metrics.op("put", kind, err)
	return in, err
}

// Add implements blobstore.Blobstore.
func (s *Store) Add(ctx context.Context, kind blobstore.Kind, r io.Reader) (blobstore.Info, error) {
	job, err := ingest.Add(kind)
	if err != nil {
		s.metrics.op("add", kind, err)
		return blobstore.Info{}, err
	}
	// The key is unknown until the end: write in the kind's directory, which
	// is on the same filesystem as every shard below it.
	in, err := s.store(ctx, kind, s.kindDir(kind), job, r)
	s.metrics.op("add", kind, err)
	return in, err
}

// store writes r to a temporary file in tmpDir, then renames it into place.
func (s *Store) store(ctx context.Context, kind blobstore.Kind, tmpDir string, job *ingest.Job, r io.Reader) (blobstore.Info, error) {
	if err := os.MkdirAll(tmpDir, 0o750); err != nil {
		return blobstore.Info{}, fmt.Errorf("fsblob: %w", err)
	}
	f, err := os.CreateTemp(tmpDir, tempPrefix+"*")
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("fsblob: %w", err)
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			_ = f.Close() // already failing; the first error is the one to report
			_ = os.Remove(tmp)
		}
	}()
	n, err := job.Copy(ctx, f, r, s.cfg.MaxSize)
	if err != nil {
		return blobstore.Info{}, err
	}
	key, err := job.Finish()
	if err != nil {
		s.log.Warn("blob-hash-mismatch", "kind", kind, "error", err)
		return blobstore.Info{}, err
	}
	if !s.cfg.NoSync {
		if err := f.Sync(); err != nil {
			return blobstore.Info{}, fmt.Errorf("fsblob: sync %s/%s: %w", kind, key, err)
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("fsblob: %w", err)
	}
	if err := f.Close(); err != nil {
		return blobstore.Info{}, fmt.Errorf("fsblob: close %s/%s: %w", kind, key, err)
	}
	final := s.path(kind, key)
	if err := os.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		return blobstore.Info{}, fmt.Errorf("fsblob: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return blobstore.Info{}, fmt.Errorf("fsblob: store %s/%s: %w", kind, key, err)
	}
	committed = true
	if err := s.syncDir(filepath.Dir(final)); err != nil {
		return blobstore.Info{}, fmt.Errorf("fsblob: sync %s/%s: %w", kind, key, err)
	}
	s.metrics.written(kind, n)
	s.log.Debug("blob-stored", "kind", kind, "key", key, "size", n)
	return blobstore.Info{Kind: kind, Key: key, Size: n, ModTime: fi.ModTime()}, nil
}

// syncDir makes a rename in dir durable.
func (s *Store) syncDir(dir string) error {
	if s.cfg.NoSync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Open implements blobstore.Blobstore.
func (s *Store) Open(ctx context.Context, kind blobstore.Kind, key string) (blobstore.Blob, error) {
	b, err := s.open(ctx, kind, key)
	s.metrics.op("open", kind, err)
	return b, err
}

func (s *Store) open(ctx context.Context, kind blobstore.Kind, key string) (blobstore.Blob, error) {
	if err := check(ctx, kind, key); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(kind, key))
	if err != nil {
		return nil, wrap(kind, key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close() // the Stat error is the one to report
		return nil, wrap(kind, key, err)
	}
	return &blob{f: f, info: info(kind, key, fi)}, nil
}

// Stat implements blobstore.Blobstore.
func (s *Store) Stat(ctx context.Context, kind blobstore.Kind, key string) (blobstore.Info, error) {
	if err := check(ctx, kind, key); err != nil {
		s.metrics.op("stat", kind, err)
		return blobstore.Info{}, err
	}
	fi, err := os.Stat(s.path(kind, key))
	if err != nil {
		err = wrap(kind, key, err)
		s.metrics.op("stat", kind, err)
		return blobstore.Info{}, err
	}
	s.metrics.op("stat", kind, nil)
	return info(kind, key, fi), nil
}

// Delete implements blobstore.Blobstore. Empty shard directories are kept:
// removing them would race with a concurrent Put into the same shard.
func (s *Store) Delete(ctx context.Context, kind blobstore.Kind, key string) error {
	err := check(ctx, kind, key)
	if err == nil {
		if err = os.Remove(s.path(kind, key)); err != nil {
			err = wrap(kind, key, err)
		}
	}
	s.metrics.op("delete", kind, err)
	return err
}

// List implements blobstore.Blobstore. Shards are read one at a time, each in
// name order; because a shard is a prefix of its keys, that is key order.
// Files that are not valid keys of their shard (temporaries, strays) are
// skipped.
func (s *Store) List(ctx context.Context, kind blobstore.Kind) iter.Seq2[blobstore.Info, error] {
	return func(yield func(blobstore.Info, error) bool) {
		if err := kind.Validate(); err != nil {
			yield(blobstore.Info{}, err)
			return
		}
		shards, err := os.ReadDir(s.kindDir(kind))
		if err != nil {
			yield(blobstore.Info{}, fmt.Errorf("fsblob: list %s: %w", kind, err))
			return
		}
		for _, sh := range shards {
			if !sh.IsDir() {
				continue
			}
			if !s.listShard(ctx, kind, sh.Name(), yield) {
				return
			}
		}
	}
}

// listShard yields one shard's blobs and reports whether to go on.
func (s *Store) listShard(ctx context.Context, kind blobstore.Kind, name string, yield func(blobstore.Info, error) bool) bool {
	if err := ctx.Err(); err != nil {
		yield(blobstore.Info{}, err)
		return false
	}
	entries, err := os.ReadDir(filepath.Join(s.kindDir(kind), name))
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	if err != nil {
		yield(blobstore.Info{}, fmt.Errorf("fsblob: list %s: %w", kind, err))
		return false
	}
	for _, e := range entries {
		key := e.Name()
		if !e.Type().IsRegular() || shard(key) != name || blobstore.ValidateKey(kind, key) != nil {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted since ReadDir
		}
		if err != nil {
			yield(blobstore.Info{}, fmt.Errorf("fsblob: list %s: %w", kind, err))
			return false
		}
		if !yield(info(kind, key, fi), nil) {
			return false
		}
	}
	return true
}

func check(ctx context.Context, kind blobstore.Kind, key string) error {
	if err := blobstore.ValidateKey(kind, key); err != nil {
		return err
	}
	return ctx.Err()
}

// wrap turns a missing file into blobstore.ErrNotFound.
func wrap(kind blobstore.Kind, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("fsblob: %s/%s: %w", kind, key, blobstore.ErrNotFound)
	}
	return fmt.Errorf("fsblob: %s/%s: %w", kind, key, err)
}

func info(kind blobstore.Kind, key string, fi fs.FileInfo) blobstore.Info {
	return blobstore.Info{Kind: kind, Key: key, Size: fi.Size(), ModTime: fi.ModTime()}
}

// blob is an open blob file. It does not embed *os.File so that callers
// cannot reach Write or Name through a type assertion.
type blob struct {
	f    *os.File
	info blobstore.Info
}

func (b *blob) Read(p []byte) (int, error)              { return b.f.Read(p) }
func (b *blob) ReadAt(p []byte, off int64) (int, error) { return b.f.ReadAt(p, off) }
func (b *blob) Seek(off int64, whence int) (int64, error) {
	return b.f.Seek(off, whence)
}

// WriteTo lets io.Copy use sendfile/splice when the destination allows it.
func (b *blob) WriteTo(w io.Writer) (int64, error) { return b.f.WriteTo(w) }
func (b *blob) Close() error                       { return b.f.Close() }
func (b *blob) Size() int64                        { return b.info.Size }
func (b *blob) Info() blobstore.Info               { return b.info }
