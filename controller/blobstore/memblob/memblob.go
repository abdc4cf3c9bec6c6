// Package memblob is an in-memory blobstore.Blobstore: the fake for tests and
// kerneltest, and a reasonable store for a single-process kernel whose blobs
// may vanish on restart. It passes the same conformance suite
// (controller/blobstore/blobtest) as the filesystem store.
package memblob

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/blobstore/internal/ingest"
)

// Config configures a Store.
type Config struct {
	// MaxSize caps a single blob in bytes; larger puts fail with
	// blobstore.ErrTooLarge. 0 means no limit.
	MaxSize int64
	// Now stamps Info.ModTime; nil means time.Now. Tests of garbage
	// collection inject a fake clock here.
	Now func() time.Time
}

// DefaultConfig returns a Config with no size limit and the real clock.
func DefaultConfig() Config { return Config{} }

// Validate reports a Config that New would refuse.
func (c Config) Validate() error {
	if c.MaxSize < 0 {
		return fmt.Errorf("memblob: MaxSize %d is negative", c.MaxSize)
	}
	return nil
}

// Store keeps blobs in memory. The zero value is not usable; call New.
type Store struct {
	cfg   Config
	mu    sync.RWMutex
	blobs map[blobstore.Kind]map[string]*entry
}

// entry is immutable once stored: replacing a blob swaps the pointer, so
// open Blobs keep their content.
type entry struct {
	data []byte
	mod  time.Time
}

var _ blobstore.Blobstore = (*Store)(nil)

// New returns an empty Store.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Store{cfg: cfg, blobs: make(map[blobstore.Kind]map[string]*entry)}
	for _, k := range blobstore.Kinds() {
		s.blobs[k] = make(map[string]*entry)
	}
	return s, nil
}

// Put implements blobstore.Blobstore.
func (s *Store) Put(ctx context.Context, kind blobstore.Kind, key string, r io.Reader) (blobstore.Info, error) {
	job, err := ingest.Put(kind, key)
	if err != nil {
		return blobstore.Info{}, err
	}
	return s.store(ctx, kind, job, r)
}

// Add implements blobstore.Blobstore.
func (s *Store) Add(ctx context.Context, kind blobstore.Kind, r io.Reader) (blobstore.Info, error) {
	job, err := ingest.Add(kind)
	if err != nil {
		return blobstore.Info{}, err
	}
	return s.store(ctx, kind, job, r)
}

func (s *Store) store(ctx context.Context, kind blobstore.Kind, job *ingest.Job, r io.Reader) (blobstore.Info, error) {
	var buf bytes.Buffer
	if _, err := job.Copy(ctx, &buf, r, s.cfg.MaxSize); err != nil {
		return blobstore.Info{}, err
	}
	key, err := job.Finish()
	if err != nil {
		return blobstore.Info{}, err
	}
	data := buf.Bytes()
	if cap(data)-len(data) > len(data)/4 {
		// A stored blob lives long: do not keep up to twice its size
		// alive for the buffer's growth slack.
		data = bytes.Clone(data)
	}
	e := &entry{data: data, mod: s.cfg.Now()}
	s.mu.Lock()
	s.blobs[kind][key] = e
	s.mu.Unlock()
	return info(kind, key, e), nil
}

// Open implements blobstore.Blobstore.
func (s *Store) Open(ctx context.Context, kind blobstore.Kind, key string) (blobstore.Blob, error) {
	e, err := s.lookup(ctx, kind, key)
	if err != nil {
		return nil, err
	}
	return &blob{r: bytes.NewReader(e.data), info: info(kind, key, e)}, nil
}

// Stat implements blobstore.Blobstore.
func (s *Store) Stat(ctx context.Context, kind blobstore.Kind, key string) (blobstore.Info, error) {
	e, err := s.lookup(ctx, kind, key)
	if err != nil {
		return blobstore.Info{}, err
	}
	return info(kind, key, e), nil
}

// Delete implements blobstore.Blobstore.
func (s *Store) Delete(ctx context.Context, kind blobstore.Kind, key string) error {
	if err := check(ctx, kind, key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.blobs[kind][key]; !ok {
		return notFound(kind, key)
	}
	delete(s.blobs[kind], key)
	return nil
}

// List implements blobstore.Blobstore. It works on a snapshot taken when the
// iteration starts, so the loop body may call the Store freely.
func (s *Store) List(ctx context.Context, kind blobstore.Kind) iter.Seq2[blobstore.Info, error] {
	return func(yield func(blobstore.Info, error) bool) {
		if err := kind.Validate(); err != nil {
			yield(blobstore.Info{}, err)
			return
		}
		s.mu.RLock()
		infos := make([]blobstore.Info, 0, len(s.blobs[kind]))
		for key, e := range s.blobs[kind] {
			infos = append(infos, info(kind, key, e))
		}
		s.mu.RUnlock()
		slices.SortFunc(infos, func(a, b blobstore.Info) int { return cmp.Compare(a.Key, b.Key) })
		for _, in := range infos {
			if err := ctx.Err(); err != nil {
				yield(blobstore.Info{}, err)
				return
			}
			if !yield(in, nil) {
				return
			}
		}
	}
}

func (s *Store) lookup(ctx context.Context, kind blobstore.Kind, key string) (*entry, error) {
	if err := check(ctx, kind, key); err != nil {
		return nil, err
	}
	s.mu.RLock()
	e, ok := s.blobs[kind][key]
	s.mu.RUnlock()
	if !ok {
		return nil, notFound(kind, key)
	}
	return e, nil
}

func check(ctx context.Context, kind blobstore.Kind, key string) error {
	if err := blobstore.ValidateKey(kind, key); err != nil {
		return err
	}
	return ctx.Err()
}

func notFound(kind blobstore.Kind, key string) error {
	return fmt.Errorf("memblob: %s/%s: %w", kind, key, blobstore.ErrNotFound)
}

func info(kind blobstore.Kind, key string, e *entry) blobstore.Info {
	return blobstore.Info{Kind: kind, Key: key, Size: int64(len(e.data)), ModTime: e.mod}
}

// errClosed is returned by a Blob used after Close.
var errClosed = errors.New("memblob: blob is closed")

// blob is an open view of one entry's bytes.
type blob struct {
	r      *bytes.Reader
	info   blobstore.Info
	closed atomic.Bool
}

func (b *blob) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, errClosed
	}
	return b.r.Read(p)
}

func (b *blob) ReadAt(p []byte, off int64) (int, error) {
	if b.closed.Load() {
		return 0, errClosed
	}
	return b.r.ReadAt(p, off)
}

func (b *blob) Seek(off int64, whence int) (int64, error) {
	if b.closed.Load() {
		return 0, errClosed
	}
	return b.r.Seek(off, whence)
}

// WriteTo lets io.Copy skip its intermediate buffer.
func (b *blob) WriteTo(w io.Writer) (int64, error) {
	if b.closed.Load() {
		return 0, errClosed
	}
	return b.r.WriteTo(w)
}

func (b *blob) Close() error {
	if b.closed.Swap(true) {
		return errClosed
	}
	return nil
}

func (b *blob) Size() int64          { return b.info.Size }
func (b *blob) Info() blobstore.Info { return b.info }
