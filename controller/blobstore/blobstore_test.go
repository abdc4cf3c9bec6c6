package blobstore_test

import (
	"crypto/sha1" // content address.
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/controller/blobstore"
)

const sha1Key = "da39a3ee5e6b4b0d3255bfef95601890afd80709" // SHA-1 of nothing

func TestValidateKey(t *testing.T) {
	sha256Key := strings.Repeat("0f", 32)
	tests := []struct {
		kind blobstore.Kind
		key  string
		want error // nil, ErrInvalidKey or ErrInvalidKind
	}{
		{blobstore.KindPackage, sha1Key, nil},
		{blobstore.KindDroplet, sha256Key, nil},
		{blobstore.KindResource, strings.Repeat("0", 40), nil},
		{blobstore.KindResource, strings.ToUpper(sha1Key), blobstore.ErrInvalidKey},
		{blobstore.KindResource, sha1Key[:39], blobstore.ErrInvalidKey},
		{blobstore.KindResource, sha1Key + "0", blobstore.ErrInvalidKey},
		{blobstore.KindResource, sha256Key[:63], blobstore.ErrInvalidKey},
		{blobstore.KindResource, "g" + sha1Key[1:], blobstore.ErrInvalidKey},
		{blobstore.KindResource, strings.Repeat("../", 10) + "etc/passwd", blobstore.ErrInvalidKey},
		{blobstore.KindResource, "", blobstore.ErrInvalidKey},
		{blobstore.KindPackage, "app-1", blobstore.ErrInvalidKey},
		{blobstore.KindBuildCache, "app-1", nil},
		{blobstore.KindBuildCache, "0", nil},
		{blobstore.KindBuildCache, "a.b_c-d", nil},
		{blobstore.KindBuildCache, sha1Key, nil},
		{blobstore.KindBuildCache, strings.Repeat("a", blobstore.MaxNameLen), nil},
		{blobstore.KindBuildCache, strings.Repeat("a", blobstore.MaxNameLen+1), blobstore.ErrInvalidKey},
		{blobstore.KindBuildCache, "", blobstore.ErrInvalidKey},
		{blobstore.KindBuildCache, ".", blobstore.ErrInvalidKey},
		{blobstore.KindBuildCache, "..", blobstore.ErrInvalidKey},
		{blobstore.KindBuildCache, ".tmp-1", blobstore.ErrInvalidKey},
		{blobstore.KindBuildCache, "-x", blobstore.ErrInvalidKey},
		{blobstore.KindBuildCache, "a/b", blobstore.ErrInvalidKey},
		{blobstore.KindBuildCache, `a\b`, blobstore.ErrInvalidKey},
		{blobstore.KindBuildCache, "App", blobstore.ErrInvalidKey},
		{blobstore.KindBuildCache, "a b", blobstore.ErrInvalidKey},
		{blobstore.KindBuildCache, "caf\u00e9", blobstore.ErrInvalidKey},
		{"", sha1Key, blobstore.ErrInvalidKind},
		{"droplet", sha1Key, blobstore.ErrInvalidKind},
		{"../droplets", sha1Key, blobstore.ErrInvalidKind},
	}
	for _, tc := range tests {
		err := blobstore.ValidateKey(tc.kind, tc.key)
		if tc.want == nil {
			if err != nil {
				t.Errorf("ValidateKey(%q, %q) = %v, want nil", tc.kind, tc.key, err)
			}
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("ValidateKey(%q, %q) = %v, want %v", tc.kind, tc.key, err, tc.want)
		}
		var ke *blobstore.KeyError
		if isKeyErr := errors.As(err, &ke); isKeyErr != (tc.want == blobstore.ErrInvalidKey) {
			t.Errorf("ValidateKey(%q, %q): *KeyError = %v, want %v", tc.kind, tc.key, isKeyErr, !isKeyErr)
		}
	}
}

func TestKeyErrorClipsKey(t *testing.T) {
	long := strings.Repeat("A", 10000)
	err := blobstore.ValidateKey(blobstore.KindBuildCache, long)
	var ke *blobstore.KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("error %v is not a *KeyError", err)
	}
	if len(ke.Key) > 100 || len(err.Error()) > 300 {
		t.Errorf("error carries %d key bytes, message %d bytes; want them clipped", len(ke.Key), len(err.Error()))
	}
}

func TestKinds(t *testing.T) {
	want := []blobstore.Kind{blobstore.KindPackage, blobstore.KindDroplet, blobstore.KindBuildCache, blobstore.KindResource}
	if diff := cmp.Diff(want, blobstore.Kinds()); diff != "" {
		t.Errorf("Kinds() (-want +got):\n%s", diff)
	}
	for _, k := range want {
		if err := k.Validate(); err != nil {
			t.Errorf("%s.Validate() = %v", k, err)
		}
		if got := k.ContentAddressed(); got != (k != blobstore.KindBuildCache) {
			t.Errorf("%s.ContentAddressed() = %v", k, got)
		}
	}
	if err := blobstore.Kind("blobs").Validate(); !errors.Is(err, blobstore.ErrInvalidKind) {
		t.Errorf("unknown kind: Validate() = %v, want ErrInvalidKind", err)
	}
}

func TestNewHash(t *testing.T) {
	s1 := sha1.Sum([]byte("abc")) // content address.
	s256 := sha256.Sum256([]byte("abc"))
	tests := []struct {
		key  string
		want string
	}{
		{strings.Repeat("0", blobstore.SHA1KeyLen), hex.EncodeToString(s1[:])},
		{strings.Repeat("0", blobstore.SHA256KeyLen), hex.EncodeToString(s256[:])},
	}
	for _, tc := range tests {
		h := blobstore.NewHash(tc.key)
		h.Write([]byte("abc"))
		if got := hex.EncodeToString(h.Sum(nil)); got != tc.want {
			t.Errorf("NewHash(%d digits) sums to %s, want %s", len(tc.key), got, tc.want)
		}
	}
	if h := blobstore.NewHash("app-1"); h != nil {
		t.Errorf("NewHash(name) = %T, want nil", h)
	}
	h := blobstore.NewSHA1()
	h.Write([]byte("abc"))
	if got := hex.EncodeToString(h.Sum(nil)); got != hex.EncodeToString(s1[:]) {
		t.Errorf("NewSHA1 sums to %s", got)
	}
}

func TestHashMismatchError(t *testing.T) {
	var err error = &blobstore.HashMismatchError{Kind: blobstore.KindDroplet, Want: "aa", Got: "bb"}
	if !errors.Is(err, blobstore.ErrHashMismatch) {
		t.Error("HashMismatchError does not match ErrHashMismatch")
	}
	if msg := err.Error(); !strings.Contains(msg, "aa") || !strings.Contains(msg, "bb") {
		t.Errorf("message %q lacks the digests", msg)
	}
}

// FuzzValidateKey checks that every accepted key is safe to use as one path
// element and spelled canonically, whatever bytes a client sends.
func FuzzValidateKey(f *testing.F) {
	for _, seed := range []string{sha1Key, strings.Repeat("ab", 32), "app-1", "..", "a/b", "", ".tmp-x", "A", "a\x00"} {
		f.Add(seed, uint8(0))
		f.Add(seed, uint8(2))
	}
	kinds := blobstore.Kinds()
	f.Fuzz(func(t *testing.T, key string, k uint8) {
		kind := kinds[int(k)%len(kinds)]
		err := blobstore.ValidateKey(kind, key)
		if err != nil {
			var ke *blobstore.KeyError
			if !errors.As(err, &ke) || !errors.Is(err, blobstore.ErrInvalidKey) {
				t.Fatalf("ValidateKey(%s, %q) = %v: not a *KeyError wrapping ErrInvalidKey", kind, key, err)
			}
			return
		}
		if !filepath.IsLocal(key) || filepath.Base(key) != key || filepath.Clean(key) != key {
			t.Fatalf("accepted key %q is not a single local path element", key)
		}
		if strings.HasPrefix(key, ".") || strings.ToLower(key) != key {
			t.Fatalf("accepted key %q is hidden or not lowercase", key)
		}
		if kind.ContentAddressed() {
			if len(key) != blobstore.SHA1KeyLen && len(key) != blobstore.SHA256KeyLen {
				t.Fatalf("accepted digest %q of length %d", key, len(key))
			}
			if _, err := hex.DecodeString(key); err != nil {
				t.Fatalf("accepted digest %q is not hex: %v", key, err)
			}
			if blobstore.NewHash(key) == nil {
				t.Fatalf("accepted digest %q has no hash", key)
			}
		} else if len(key) == 0 || len(key) > blobstore.MaxNameLen {
			t.Fatalf("accepted name of length %d", len(key))
		}
	})
}
