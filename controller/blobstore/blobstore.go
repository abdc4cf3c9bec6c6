// Package blobstore defines where the cloud controller keeps bulk data: the
// zipped application packages users push, the droplets staging produces and
// DEAs download, per-app build caches, and the resource pool of individual
// application files that lets a push upload only the files the platform has
// not seen before.
//
// Blobs are grouped by Kind. Every kind except KindBuildCache is content
// addressed: a blob's key is the lowercase hex digest of its bytes, either
// SHA-1 (40 digits, what the original platform used and what clients send for
// resource matching) or SHA-256 (64 digits). Put verifies the digest while it
// streams the content in and stores nothing on a mismatch; Add computes the
// SHA-1 for callers that do not know it in advance. KindBuildCache is keyed by
// the caller (an app id, say) and Put replaces its content without any check.
//
// Implementations live in controller/blobstore/memblob (in memory: the fake,
// and fine for tests and single-process kernels) and controller/blobstore/fsblob
// (a directory on disk, the default). controller/blobstore/blobtest holds the
// conformance suite both pass; a third-party store should run it too.
package blobstore

import (
	"context"
	"crypto/sha1" // SHA-1 is the platform's content address, not a security boundary.
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"iter"
	"time"
)

// Kind names a class of blobs. Each kind is a separate namespace: the same key
// in two kinds names two unrelated blobs.
type Kind string

// The kinds a Blobstore holds. No other kind is valid.
const (
	// KindPackage holds zipped application bits as uploaded by a push,
	// keyed by their digest.
	KindPackage Kind = "packages"
	// KindDroplet holds staged droplets (tgz), keyed by their digest; DEAs
	// download them with range requests, so they are served via Open.
	KindDroplet Kind = "droplets"
	// KindBuildCache holds one build cache per app, keyed by a caller-chosen
	// name (usually the app id). It is the only kind that is not content
	// addressed: Put overwrites without a digest check.
	KindBuildCache Kind = "buildcaches"
	// KindResource is the resource pool: single application files keyed by
	// their digest, so that a push can skip files the platform already has.
	KindResource Kind = "resources"
)

// Kinds returns every valid kind, in a fixed order.
func Kinds() []Kind {
	return []Kind{KindPackage, KindDroplet, KindBuildCache, KindResource}
}

// Validate returns nil for a known kind and an error wrapping ErrInvalidKind
// otherwise.
func (k Kind) Validate() error {
	switch k {
	case KindPackage, KindDroplet, KindBuildCache, KindResource:
		return nil
	}
	return fmt.Errorf("blobstore: kind %q: %w", clip(string(k)), ErrInvalidKind)
}

// ContentAddressed reports whether keys of this kind are digests of the
// content (every kind but KindBuildCache).
func (k Kind) ContentAddressed() bool {
	return k != KindBuildCache
}

// Info describes a stored blob.
type Info struct {
	// Kind is the blob's kind.
	Kind Kind
	// Key is the blob's key within its kind: a lowercase hex digest for
	// content-addressed kinds, the caller's name for KindBuildCache.
	Key string
	// Size is the content length in bytes.
	Size int64
	// ModTime is when the blob was last stored. Garbage collectors should
	// spare recent blobs: a push may have matched a resource or uploaded a
	// package that its app record does not reference yet.
	ModTime time.Time
}

// Blob is an open, immutable view of a stored blob. It satisfies io.ReadSeeker
// so that http.ServeContent can answer range requests (resumable droplet
// downloads) and io.ReaderAt for random access. A Blob keeps reading the
// content it was opened with even if the blob is replaced or deleted
// meanwhile. Reads and seeks on one Blob are not safe for concurrent use;
// ReadAt is. Close releases it; using it after Close returns an error.
type Blob interface {
	io.Reader
	io.ReaderAt
	io.Seeker
	io.Closer
	// Size returns the content length in bytes.
	Size() int64
	// Info returns the blob's description as of Open.
	Info() Info
}

// Blobstore stores blobs of the kinds above. Every method is safe for
// concurrent use, including concurrent writers of the same blob: a reader
// sees either the complete old content or the complete new one, never a mix
// and never a partial blob, even across a crash of the writer.
//
// Keys are checked with ValidateKey before anything else happens; a bad key
// returns an error wrapping ErrInvalidKey (as a *KeyError), an unknown kind
// one wrapping ErrInvalidKind.
type Blobstore interface {
	// Put streams r into the blob kind/key. For a content-addressed kind,
	// key is the expected digest (40 hex digits for SHA-1, 64 for
	// SHA-256); the content is hashed while it is written and, if the digest
	// differs, Put stores nothing and returns an error wrapping
	// ErrHashMismatch (a *HashMismatchError). Putting an existing
	// content-addressed blob again is harmless. For KindBuildCache, key is any
	// valid name and the content replaces what was there, unchecked. If r
	// fails or ctx ends before r is drained, nothing is stored. Put returns
	// the stored blob's Info.
	Put(ctx context.Context, kind Kind, key string, r io.Reader) (Info, error)
	// Add streams r into a content-addressed kind under the SHA-1 of its
	// content, computed while writing, and returns the Info whose Key is
	// that digest. Add with KindBuildCache returns an error wrapping
	// ErrInvalidKind.
	Add(ctx context.Context, kind Kind, r io.Reader) (Info, error)
	// Open returns the blob for reading, or an error wrapping ErrNotFound.
	// The caller must Close it.
	Open(ctx context.Context, kind Kind, key string) (Blob, error)
	// Stat describes the blob, or returns an error wrapping ErrNotFound.
	// It is how resource matching asks whether the pool has a file.
	Stat(ctx context.Context, kind Kind, key string) (Info, error)
	// Delete removes the blob, or returns an error wrapping ErrNotFound if
	// there was none. Blobs already open stay readable.
	Delete(ctx context.Context, kind Kind, key string) error
	// List yields every blob of a kind in ascending key order, for garbage
	// collection. Blobs put or deleted while the listing runs may or may not
	// appear; deleting the yielded blob from inside the loop is allowed. A
	// failure is yielded once as a non-nil error, after which the sequence
	// stops. An invalid kind yields only an error.
	List(ctx context.Context, kind Kind) iter.Seq2[Info, error]
}

// Errors callers decide on with errors.Is.
var (
	// ErrNotFound means the blob does not exist.
	ErrNotFound = errors.New("blob not found")
	// ErrHashMismatch means the content's digest differs from the key it was
	// put under; nothing was stored.
	ErrHashMismatch = errors.New("blob content does not match its hash")
	// ErrInvalidKey means a key is malformed for its kind.
	ErrInvalidKey = errors.New("invalid blob key")
	// ErrInvalidKind means a kind is unknown, or not allowed for the call.
	ErrInvalidKind = errors.New("invalid blob kind")
	// ErrTooLarge means the content exceeds the store's configured size
	// limit; nothing was stored.
	ErrTooLarge = errors.New("blob too large")
)

// KeyError reports a key rejected by ValidateKey. It wraps ErrInvalidKey.
type KeyError struct {
	// Kind is the kind the key was checked against.
	Kind Kind
	// Key is the offending key, clipped to a loggable length.
	Key string
	// Reason says what is wrong with it.
	Reason string
}

// Error implements error.
func (e *KeyError) Error() string {
	return fmt.Sprintf("blobstore: %s key %q: %s", e.Kind, e.Key, e.Reason)
}

// Unwrap returns ErrInvalidKey.
func (e *KeyError) Unwrap() error { return ErrInvalidKey }

// HashMismatchError reports content whose digest differs from its key. It
// wraps ErrHashMismatch.
type HashMismatchError struct {
	// Kind is the kind the content was put into.
	Kind Kind
	// Want is the key the caller gave.
	Want string
	// Got is the digest of the content actually received.
	Got string
}

// Error implements error.
func (e *HashMismatchError) Error() string {
	return fmt.Sprintf("blobstore: %s %s: content hashes to %s: %v", e.Kind, e.Want, e.Got, ErrHashMismatch)
}

// Unwrap returns ErrHashMismatch.
func (e *HashMismatchError) Unwrap() error { return ErrHashMismatch }

// Key lengths in hex digits of the supported digests.
const (
	SHA1KeyLen   = 2 * sha1.Size
	SHA256KeyLen = 2 * sha256.Size
	// MaxNameLen bounds a KindBuildCache key; 128 fits any id and stays far
	// below file-name limits of common filesystems (255 bytes).
	MaxNameLen = 128
)

// ValidateKey checks key against kind. Content-addressed kinds take exactly
// 40 (SHA-1) or 64 (SHA-256) lowercase hex digits: one spelling per content,
// so the same bytes never land under two keys. KindBuildCache takes 1 to
// MaxNameLen characters from [a-z0-9._-] starting with a letter or digit;
// lowercase only so that names cannot collide on case-insensitive
// filesystems. Every valid key is therefore a single, non-hidden path
// element: no separators, no "." or "..". Errors wrap ErrInvalidKind or
// ErrInvalidKey (*KeyError).
func ValidateKey(kind Kind, key string) error {
	if err := kind.Validate(); err != nil {
		return err
	}
	bad := func(reason string) error {
		return &KeyError{Kind: kind, Key: clip(key), Reason: reason}
	}
	if kind.ContentAddressed() {
		if len(key) != SHA1KeyLen && len(key) != SHA256KeyLen {
			return bad(fmt.Sprintf("want %d (sha1) or %d (sha256) hex digits, got %d bytes", SHA1KeyLen, SHA256KeyLen, len(key)))
		}
		for i := 0; i < len(key); i++ {
			if c := key[i]; !isDigit(c) && (c < 'a' || c > 'f') {
				return bad(fmt.Sprintf("byte %d is not a lowercase hex digit", i))
			}
		}
		return nil
	}
	if key == "" || len(key) > MaxNameLen {
		return bad(fmt.Sprintf("want 1 to %d bytes, got %d", MaxNameLen, len(key)))
	}
	if !isDigit(key[0]) && !isLower(key[0]) {
		return bad("must start with a lowercase letter or digit")
	}
	for i := 1; i < len(key); i++ {
		if c := key[i]; !isDigit(c) && !isLower(c) && c != '.' && c != '_' && c != '-' {
			return bad(fmt.Sprintf("byte %d is not one of [a-z0-9._-]", i))
		}
	}
	return nil
}

// NewHash returns the digest that verifies content put under a content
// addressed key: SHA-1 for a 40-digit key, SHA-256 for a 64-digit one, nil for
// any other length. Implementations use it on their write path after
// ValidateKey.
func NewHash(key string) hash.Hash {
	switch len(key) {
	case SHA1KeyLen:
		return sha1.New() // content address, see package doc.
	case SHA256KeyLen:
		return sha256.New()
	}
	return nil
}

// NewSHA1 returns the digest Add uses to name content.
func NewSHA1() hash.Hash {
	return sha1.New() // content address, see package doc.
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }

// clip keeps hostile keys from flooding error messages and logs.
func clip(s string) string {
	const limit = 80
	if len(s) > limit {
		return s[:limit] + "..."
	}
	return s
}
