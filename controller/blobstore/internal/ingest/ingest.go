// Package ingest is the write path kiln's blob stores share: it checks a Put
// or Add, streams the content into its destination while hashing and counting
// it, honours cancellation and a size limit, and decides the final key.
package ingest

import (
	"context"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	"github.com/kiln-paas/kiln/controller/blobstore"
)

// bufSize is the copy buffer: large enough that a 50 MB droplet takes a few
// hundred syscalls, small enough to allocate per Put without pooling.
const bufSize = 256 << 10

// Job is one content upload in progress.
type Job struct {
	kind blobstore.Kind
	key  string // "" for Add until Finish names it
	hash hash.Hash
}

// Put checks a Put of kind/key and returns its job.
func Put(kind blobstore.Kind, key string) (*Job, error) {
	if err := blobstore.ValidateKey(kind, key); err != nil {
		return nil, err
	}
	j := &Job{kind: kind, key: key}
	if kind.ContentAddressed() {
		j.hash = blobstore.NewHash(key)
	}
	return j, nil
}

// Add checks an Add into kind and returns its job.
func Add(kind blobstore.Kind) (*Job, error) {
	if err := kind.Validate(); err != nil {
		return nil, err
	}
	if !kind.ContentAddressed() {
		return nil, fmt.Errorf("blobstore: add to %s needs a caller key, use Put: %w", kind, blobstore.ErrInvalidKind)
	}
	return &Job{kind: kind, hash: blobstore.NewSHA1()}, nil
}

// Copy streams src into dst, feeding the job's digest on the way, and returns
// the byte count. limit > 0 caps the size (ErrTooLarge); ctx is checked
// before every read.
func (j *Job) Copy(ctx context.Context, dst io.Writer, src io.Reader, limit int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	r := io.Reader(ctxReader{ctx: ctx, r: src})
	if limit > 0 {
		r = io.LimitReader(r, limit+1)
	}
	w := dst
	if j.hash != nil {
		w = io.MultiWriter(dst, j.hash)
	}
	n, err := io.CopyBuffer(onlyWriter{w}, onlyReader{r}, make([]byte, bufSize))
	if err != nil {
		return n, fmt.Errorf("blobstore: %s: copy content: %w", j.kind, err)
	}
	if limit > 0 && n > limit {
		return n, fmt.Errorf("blobstore: %s: more than %d bytes: %w", j.kind, limit, blobstore.ErrTooLarge)
	}
	return n, nil
}

// Finish returns the key the content must be stored under after a
// successful Copy, or a *blobstore.HashMismatchError.
func (j *Job) Finish() (string, error) {
	if j.hash == nil {
		return j.key, nil
	}
	sum := hex.EncodeToString(j.hash.Sum(nil))
	if j.key == "" {
		j.key = sum
		return sum, nil
	}
	if sum != j.key {
		return "", &blobstore.HashMismatchError{Kind: j.kind, Want: j.key, Got: sum}
	}
	return j.key, nil
}

// ctxReader stops a copy once its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// onlyReader and onlyWriter hide ReaderFrom/WriterTo so that io.CopyBuffer
// always goes through the context check and the digest.
type onlyReader struct{ io.Reader }

type onlyWriter struct{ io.Writer }
