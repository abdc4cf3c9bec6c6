// Package blobtest is the conformance suite every blobstore.Blobstore must
// pass, and a shared benchmark. memblob and fsblob run it from their own
// tests; a third-party store should too:
//
//	func TestConformance(t *testing.T) {
//		blobtest.Run(t, func(t *testing.T) blobstore.Blobstore { return newMyStore(t) })
//	}
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha1" // content address, see blobstore's package doc.
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/controller/blobstore"
)

// Run checks store against the blobstore.Blobstore contract in subtests. It
// calls newStore once per subtest, from parallel subtests, and each call must
// return an empty store of its own (use t.TempDir and t.Cleanup for
// resources).
func Run(t *testing.T, newStore func(t *testing.T) blobstore.Blobstore) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s blobstore.Blobstore)
	}{
		{"PutOpen", testPutOpen},
		{"Add", testAdd},
		{"PutExisting", testPutExisting},
		{"HashMismatch", testHashMismatch},
		{"InvalidKey", testInvalidKey},
		{"InvalidKind", testInvalidKind},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"ReplaceBuildCache", testReplaceBuildCache},
		{"KindsAreSeparate", testKindsAreSeparate},
		{"Ranges", testRanges},
		{"ServeContent", testServeContent},
		{"ClosedBlob", testClosedBlob},
		{"List", testList},
		{"ListDeleteWhileIterating", testListDelete},
		{"ListStopsEarly", testListStop},
		{"ReaderError", testReaderError},
		{"Canceled", testCanceled},
		{"ConcurrentSameBlob", testConcurrentSame},
		{"ConcurrentReplace", testConcurrentReplace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// Content returns n deterministic pseudo-random bytes for seed.
func Content(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(p[i:], r.Uint64())
	}
	return p[:n:n]
}

// SHA1 returns the lowercase hex SHA-1 of p: its content-addressed key.
func SHA1(p []byte) string {
	sum := sha1.Sum(p) // content address.
	return hex.EncodeToString(sum[:])
}

// SHA256 returns the lowercase hex SHA-256 of p.
func SHA256(p []byte) string {
	sum := sha256.Sum256(p)
	return hex.EncodeToString(sum[:])
}

func put(t *testing.T, s blobstore.Blobstore, kind blobstore.Kind, key string, p []byte) blobstore.Info {
	t.Helper()
	in, err := s.Put(t.Context(), kind, key, bytes.NewReader(p))
	if err != nil {
		t.Fatalf("Put(%s, %s): %v", kind, key, err)
	}
	return in
}

// read returns a blob's full content via Open.
func read(t *testing.T, s blobstore.Blobstore, kind blobstore.Kind, key string) []byte {
	t.Helper()
	b, err := s.Open(t.Context(), kind, key)
	if err != nil {
		t.Fatalf("Open(%s, %s): %v", kind, key, err)
	}
	defer closeBlob(t, b)
	p, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read %s/%s: %v", kind, key, err)
	}
	return p
}

func closeBlob(t *testing.T, b blobstore.Blob) {
	t.Helper()
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want %v", what, err, target)
	}
}

// sameInfo compares Infos ignoring ModTime, which only has to be recent.
func sameInfo(t *testing.T, what string, got, want blobstore.Info) {
	t.Helper()
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(blobstore.Info{}, "ModTime")); diff != "" {
		t.Errorf("%s: Info mismatch (-want +got):\n%s", what, diff)
	}
	if age := time.Since(got.ModTime); got.ModTime.IsZero() || age > time.Hour || age < -time.Hour {
		t.Errorf("%s: ModTime %v is not recent", what, got.ModTime)
	}
}

func testPutOpen(t *testing.T, s blobstore.Blobstore) {
	big := Content(300<<10, 1)
	small := Content(100, 2)
	tests := []struct {
		name    string
		kind    blobstore.Kind
		key     string
		content []byte
	}{
		{"package-sha1", blobstore.KindPackage, SHA1(big), big},
		{"droplet-sha1", blobstore.KindDroplet, SHA1(small), small},
		{"droplet-sha256", blobstore.KindDroplet, SHA256(big), big},
		{"resource-sha1", blobstore.KindResource, SHA1(small), small},
		{"resource-empty", blobstore.KindResource, SHA1(nil), nil},
		{"buildcache-name", blobstore.KindBuildCache, "app-42", big},
		{"buildcache-one-char", blobstore.KindBuildCache, "7", small},
		{"buildcache-empty", blobstore.KindBuildCache, "empty.cache", nil},
	}
	for _, tc := range tests {
		want := blobstore.Info{Kind: tc.kind, Key: tc.key, Size: int64(len(tc.content))}
		in := put(t, s, tc.kind, tc.key, tc.content)
		sameInfo(t, tc.name+" Put", in, want)
		st, err := s.Stat(t.Context(), tc.kind, tc.key)
		if err != nil {
			t.Fatalf("%s: Stat: %v", tc.name, err)
		}
		sameInfo(t, tc.name+" Stat", st, want)
		b, err := s.Open(t.Context(), tc.kind, tc.key)
		if err != nil {
			t.Fatalf("%s: Open: %v", tc.name, err)
		}
		if b.Size() != want.Size {
			t.Errorf("%s: Blob.Size() = %d, want %d", tc.name, b.Size(), want.Size)
		}
		sameInfo(t, tc.name+" Blob.Info", b.Info(), want)
		got, err := io.ReadAll(b)
		closeBlob(t, b)
		if err != nil || !bytes.Equal(got, tc.content) {
			t.Errorf("%s: content read back differs (%d bytes, err %v), want %d bytes", tc.name, len(got), err, len(tc.content))
		}
	}
}

func testAdd(t *testing.T, s blobstore.Blobstore) {
	for i, kind := range []blobstore.Kind{blobstore.KindPackage, blobstore.KindDroplet, blobstore.KindResource} {
		p := Content(70<<10+i, uint64(10+i))
		in, err := s.Add(t.Context(), kind, bytes.NewReader(p))
		if err != nil {
			t.Fatalf("Add(%s): %v", kind, err)
		}
		sameInfo(t, "Add", in, blobstore.Info{Kind: kind, Key: SHA1(p), Size: int64(len(p))})
		if got := read(t, s, kind, SHA1(p)); !bytes.Equal(got, p) {
			t.Errorf("Add(%s): content under its SHA-1 differs", kind)
		}
	}
	in, err := s.Add(t.Context(), blobstore.KindResource, bytes.NewReader(nil))
	if err != nil {
		t.Fatalf("Add(empty): %v", err)
	}
	if in.Key != SHA1(nil) || in.Size != 0 {
		t.Errorf("Add(empty) = %+v, want key %s size 0", in, SHA1(nil))
	}
	_, err = s.Add(t.Context(), blobstore.KindBuildCache, bytes.NewReader([]byte("x")))
	wantErr(t, "Add(buildcache)", err, blobstore.ErrInvalidKind)
	assertEmpty(t, s, blobstore.KindBuildCache)
}

// testPutExisting: putting a content-addressed blob twice is harmless, which
// is what two pushes of the same file do.
func testPutExisting(t *testing.T, s blobstore.Blobstore) {
	p := Content(5000, 3)
	put(t, s, blobstore.KindResource, SHA1(p), p)
	in := put(t, s, blobstore.KindResource, SHA1(p), p)
	if in.Size != int64(len(p)) {
		t.Errorf("second Put size %d, want %d", in.Size, len(p))
	}
	if _, err := s.Add(t.Context(), blobstore.KindResource, bytes.NewReader(p)); err != nil {
		t.Errorf("Add of existing content: %v", err)
	}
	if got := read(t, s, blobstore.KindResource, SHA1(p)); !bytes.Equal(got, p) {
		t.Error("content changed after repeated puts")
	}
	if got := listKeys(t, s, blobstore.KindResource); !slices.Equal(got, []string{SHA1(p)}) {
		t.Errorf("List = %v, want only %s", got, SHA1(p))
	}
}

func testHashMismatch(t *testing.T, s blobstore.Blobstore) {
	good := Content(4096, 4)
	bad := Content(4096, 5)
	for _, kind := range []blobstore.Kind{blobstore.KindPackage, blobstore.KindDroplet, blobstore.KindResource} {
		for _, key := range []string{SHA1(good), SHA256(good)} {
			_, err := s.Put(t.Context(), kind, key, bytes.NewReader(bad))
			wantErr(t, "Put(wrong content)", err, blobstore.ErrHashMismatch)
			var me *blobstore.HashMismatchError
			if !errors.As(err, &me) {
				t.Fatalf("Put(wrong content): error %T is not a *HashMismatchError", err)
			}
			wantGot := SHA1(bad)
			if len(key) == blobstore.SHA256KeyLen {
				wantGot = SHA256(bad)
			}
			if me.Want != key || me.Got != wantGot || me.Kind != kind {
				t.Errorf("HashMismatchError = %+v, want Kind %s Want %s Got %s", me, kind, key, wantGot)
			}
			_, err = s.Stat(t.Context(), kind, key)
			wantErr(t, "Stat after mismatch", err, blobstore.ErrNotFound)
		}
		assertEmpty(t, s, kind)
	}
	// A mismatching put must not disturb the good blob under that key.
	put(t, s, blobstore.KindDroplet, SHA1(good), good)
	_, err := s.Put(t.Context(), blobstore.KindDroplet, SHA1(good), bytes.NewReader(bad))
	wantErr(t, "Put(wrong content over existing)", err, blobstore.ErrHashMismatch)
	if got := read(t, s, blobstore.KindDroplet, SHA1(good)); !bytes.Equal(got, good) {
		t.Error("a mismatching Put changed the existing blob")
	}
	// A truncated upload is a mismatch too.
	_, err = s.Put(t.Context(), blobstore.KindPackage, SHA1(good), bytes.NewReader(good[:100]))
	wantErr(t, "Put(truncated)", err, blobstore.ErrHashMismatch)
}

// BadKeys are keys every store must reject for each kind.
func BadKeys(kind blobstore.Kind) []string {
	common := []string{
		"", ".", "..", "../x", "a/b", "/abs", "a\\b", "a\x00b", " a", "a b",
		"..%2f", "\u00e9t\u00e9",
	}
	if kind.ContentAddressed() {
		sum := SHA1([]byte("x"))
		return append(common,
			"abc",                                  // too short
			sum[:39],                               // 39 digits
			sum+"0",                                // 41 digits
			SHA256([]byte("x"))[:63],               // 63 digits
			strings.ToUpper(sum),                   // uppercase hex
			"g"+sum[1:],                            // not hex
			strings.Repeat("../", 10)+"etc/passwd", // traversal, 40 bytes
			"app-42",                               // a name, not a digest
		)
	}
	return append(common,
		"App", "-lead", ".hidden", "_x", "a/../b",
		string(make([]byte, blobstore.MaxNameLen+1)),
		string(bytes.Repeat([]byte("a"), blobstore.MaxNameLen+1)),
	)
}

func testInvalidKey(t *testing.T, s blobstore.Blobstore) {
	ctx := t.Context()
	for _, kind := range blobstore.Kinds() {
		for _, key := range BadKeys(kind) {
			ops := map[string]error{}
			_, ops["Put"] = s.Put(ctx, kind, key, bytes.NewReader([]byte("x")))
			_, ops["Stat"] = s.Stat(ctx, kind, key)
			b, err := s.Open(ctx, kind, key)
			if err == nil {
				closeBlob(t, b)
			}
			ops["Open"] = err
			ops["Delete"] = s.Delete(ctx, kind, key)
			for op, err := range ops {
				wantErr(t, op+"("+string(kind)+", "+key+")", err, blobstore.ErrInvalidKey)
				var ke *blobstore.KeyError
				if err != nil && !errors.As(err, &ke) {
					t.Errorf("%s(%s, %q): error %T is not a *KeyError", op, kind, key, err)
				}
			}
		}
		assertEmpty(t, s, kind)
	}
}

func testInvalidKind(t *testing.T, s blobstore.Blobstore) {
	ctx := t.Context()
	p := []byte("x")
	for _, kind := range []blobstore.Kind{"", "blobs", "packages/../droplets", "Droplets"} {
		_, err := s.Put(ctx, kind, SHA1(p), bytes.NewReader(p))
		wantErr(t, "Put", err, blobstore.ErrInvalidKind)
		_, err = s.Add(ctx, kind, bytes.NewReader(p))
		wantErr(t, "Add", err, blobstore.ErrInvalidKind)
		_, err = s.Stat(ctx, kind, SHA1(p))
		wantErr(t, "Stat", err, blobstore.ErrInvalidKind)
		_, err = s.Open(ctx, kind, SHA1(p))
		wantErr(t, "Open", err, blobstore.ErrInvalidKind)
		wantErr(t, "Delete", s.Delete(ctx, kind, SHA1(p)), blobstore.ErrInvalidKind)
		n := 0
		for _, err := range s.List(ctx, kind) {
			n++
			wantErr(t, "List", err, blobstore.ErrInvalidKind)
		}
		if n != 1 {
			t.Errorf("List(%q) yielded %d items, want exactly one error", kind, n)
		}
	}
}

func testNotFound(t *testing.T, s blobstore.Blobstore) {
	ctx := t.Context()
	put(t, s, blobstore.KindDroplet, SHA1([]byte("there")), []byte("there"))
	for _, kind := range blobstore.Kinds() {
		key := SHA1([]byte("absent"))
		if !kind.ContentAddressed() {
			key = "absent"
		}
		_, err := s.Stat(ctx, kind, key)
		wantErr(t, "Stat", err, blobstore.ErrNotFound)
		_, err = s.Open(ctx, kind, key)
		wantErr(t, "Open", err, blobstore.ErrNotFound)
		wantErr(t, "Delete", s.Delete(ctx, kind, key), blobstore.ErrNotFound)
	}
}

func testDelete(t *testing.T, s blobstore.Blobstore) {
	ctx := t.Context()
	p := Content(10000, 6)
	put(t, s, blobstore.KindPackage, SHA1(p), p)
	b, err := s.Open(ctx, blobstore.KindPackage, SHA1(p))
	if err != nil {
		t.Fatal(err)
	}
	defer closeBlob(t, b)
	if err := s.Delete(ctx, blobstore.KindPackage, SHA1(p)); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err = s.Stat(ctx, blobstore.KindPackage, SHA1(p))
	wantErr(t, "Stat after Delete", err, blobstore.ErrNotFound)
	wantErr(t, "second Delete", s.Delete(ctx, blobstore.KindPackage, SHA1(p)), blobstore.ErrNotFound)
	assertEmpty(t, s, blobstore.KindPackage)
	// A download in progress survives the delete.
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, p) {
		t.Errorf("blob opened before Delete: read %d bytes, err %v; want the full content", len(got), err)
	}
	// And the key can be stored again.
	put(t, s, blobstore.KindPackage, SHA1(p), p)
	if got := read(t, s, blobstore.KindPackage, SHA1(p)); !bytes.Equal(got, p) {
		t.Error("content after re-put differs")
	}
}

func testReplaceBuildCache(t *testing.T, s blobstore.Blobstore) {
	old, replacement := Content(20000, 7), Content(300, 8)
	put(t, s, blobstore.KindBuildCache, "app-1", old)
	b, err := s.Open(t.Context(), blobstore.KindBuildCache, "app-1")
	if err != nil {
		t.Fatal(err)
	}
	defer closeBlob(t, b)
	in := put(t, s, blobstore.KindBuildCache, "app-1", replacement)
	if in.Size != int64(len(replacement)) {
		t.Errorf("replacing Put size %d, want %d", in.Size, len(replacement))
	}
	if got := read(t, s, blobstore.KindBuildCache, "app-1"); !bytes.Equal(got, replacement) {
		t.Error("build cache not replaced")
	}
	if got, err := io.ReadAll(b); err != nil || !bytes.Equal(got, old) {
		t.Errorf("blob opened before the replacement: read %d bytes, err %v; want the old content", len(got), err)
	}
}

func testKindsAreSeparate(t *testing.T, s blobstore.Blobstore) {
	p := []byte("same bytes in two kinds")
	put(t, s, blobstore.KindPackage, SHA1(p), p)
	_, err := s.Stat(t.Context(), blobstore.KindDroplet, SHA1(p))
	wantErr(t, "Stat in another kind", err, blobstore.ErrNotFound)
	put(t, s, blobstore.KindDroplet, SHA1(p), p)
	if err := s.Delete(t.Context(), blobstore.KindPackage, SHA1(p)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(t.Context(), blobstore.KindDroplet, SHA1(p)); err != nil {
		t.Errorf("deleting the package removed the droplet: %v", err)
	}
}

func testRanges(t *testing.T, s blobstore.Blobstore) {
	p := Content(1<<20+17, 9)
	put(t, s, blobstore.KindDroplet, SHA1(p), p)
	b, err := s.Open(t.Context(), blobstore.KindDroplet, SHA1(p))
	if err != nil {
		t.Fatal(err)
	}
	defer closeBlob(t, b)
	for _, r := range []struct{ off, n int }{{0, 10}, {12345, 4096}, {len(p) - 5, 5}, {1 << 19, 1 << 19}} {
		buf := make([]byte, r.n)
		if n, err := b.ReadAt(buf, int64(r.off)); n != r.n || err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", r.off, r.n, n, err)
		}
		if !bytes.Equal(buf, p[r.off:r.off+r.n]) {
			t.Errorf("ReadAt(%d, %d): wrong bytes", r.off, r.n)
		}
	}
	buf := make([]byte, 10)
	if n, err := b.ReadAt(buf, int64(len(p)-3)); n != 3 || !errors.Is(err, io.EOF) {
		t.Errorf("ReadAt past the end = %d, %v; want 3, EOF", n, err)
	}
	// Resume a download: seek, then read the rest.
	if pos, err := b.Seek(777777, io.SeekStart); err != nil || pos != 777777 {
		t.Fatalf("Seek = %d, %v", pos, err)
	}
	// io.Copy, as an HTTP handler does it (through WriterTo where a Blob
	// has one), must honour the position too.
	var rest bytes.Buffer
	if _, err := io.Copy(&rest, b); err != nil || !bytes.Equal(rest.Bytes(), p[777777:]) {
		t.Errorf("copy after Seek: %d bytes, err %v; want %d bytes", rest.Len(), err, len(p)-777777)
	}
	if end, err := b.Seek(0, io.SeekEnd); err != nil || end != int64(len(p)) {
		t.Errorf("Seek(0, End) = %d, %v; want %d", end, err, len(p))
	}
}

// testServeContent checks the use the interface was shaped for: a DEA
// resuming a droplet download through http.ServeContent.
func testServeContent(t *testing.T, s blobstore.Blobstore) {
	p := Content(200000, 10)
	put(t, s, blobstore.KindDroplet, SHA1(p), p)
	b, err := s.Open(t.Context(), blobstore.KindDroplet, SHA1(p))
	if err != nil {
		t.Fatal(err)
	}
	defer closeBlob(t, b)
	req := httptest.NewRequest(http.MethodGet, "/staged_droplets/1/"+SHA1(p), nil)
	req.Header.Set("Range", "bytes=150000-")
	rec := httptest.NewRecorder()
	http.ServeContent(rec, req, "droplet.tgz", b.Info().ModTime, b)
	if rec.Code != http.StatusPartialContent {
		t.Fatalf("status %d, want 206", rec.Code)
	}
	if !bytes.Equal(rec.Body.Bytes(), p[150000:]) {
		t.Errorf("ranged body: %d bytes, want %d", rec.Body.Len(), len(p)-150000)
	}
}

func testClosedBlob(t *testing.T, s blobstore.Blobstore) {
	p := []byte("closed")
	put(t, s, blobstore.KindResource, SHA1(p), p)
	b, err := s.Open(t.Context(), blobstore.KindResource, SHA1(p))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := b.Read(make([]byte, 1)); err == nil {
		t.Error("Read after Close succeeded")
	}
	if _, err := b.ReadAt(make([]byte, 1), 0); err == nil {
		t.Error("ReadAt after Close succeeded")
	}
	if _, err := b.Seek(0, io.SeekStart); err == nil {
		t.Error("Seek after Close succeeded")
	}
	if _, err := io.Copy(io.Discard, b); err == nil {
		t.Error("io.Copy after Close succeeded")
	}
}

func listAll(t *testing.T, s blobstore.Blobstore, kind blobstore.Kind) []blobstore.Info {
	t.Helper()
	var out []blobstore.Info
	for in, err := range s.List(t.Context(), kind) {
		if err != nil {
			t.Fatalf("List(%s): %v", kind, err)
		}
		out = append(out, in)
	}
	return out
}

func listKeys(t *testing.T, s blobstore.Blobstore, kind blobstore.Kind) []string {
	t.Helper()
	var keys []string
	for _, in := range listAll(t, s, kind) {
		keys = append(keys, in.Key)
	}
	return keys
}

func assertEmpty(t *testing.T, s blobstore.Blobstore, kind blobstore.Kind) {
	t.Helper()
	if keys := listKeys(t, s, kind); len(keys) != 0 {
		t.Errorf("List(%s) = %v, want nothing stored", kind, keys)
	}
}

func testList(t *testing.T, s blobstore.Blobstore) {
	for _, kind := range blobstore.Kinds() {
		assertEmpty(t, s, kind)
	}
	want := map[blobstore.Kind][]blobstore.Info{}
	for i := range 40 {
		p := Content(i*37, uint64(100+i))
		kind := []blobstore.Kind{blobstore.KindPackage, blobstore.KindDroplet, blobstore.KindResource}[i%3]
		key := SHA1(p)
		if i%4 == 0 {
			key = SHA256(p)
		}
		want[kind] = append(want[kind], put(t, s, kind, key, p))
	}
	// Names chosen so that shard-by-prefix layouts must still list in key order.
	for i, name := range []string{"b0", "a", "ab", "a.b", "a-", "zz9", "0", "a_c", "abc"} {
		p := Content(i, uint64(200+i))
		want[blobstore.KindBuildCache] = append(want[blobstore.KindBuildCache], put(t, s, blobstore.KindBuildCache, name, p))
	}
	for _, kind := range blobstore.Kinds() {
		w := want[kind]
		slices.SortFunc(w, func(a, b blobstore.Info) int { return strings.Compare(a.Key, b.Key) })
		got := listAll(t, s, kind)
		if diff := cmp.Diff(keysOf(w), keysOf(got)); diff != "" {
			t.Errorf("List(%s) keys, want ascending order (-want +got):\n%s", kind, diff)
			continue
		}
		for i := range got {
			sameInfo(t, "List("+string(kind)+")", got[i], blobstore.Info{Kind: kind, Key: w[i].Key, Size: w[i].Size})
		}
	}
}

func keysOf(infos []blobstore.Info) []string {
	keys := make([]string, 0, len(infos))
	for _, in := range infos {
		keys = append(keys, in.Key)
	}
	return keys
}

// testListDelete is garbage collection: delete what List yields.
func testListDelete(t *testing.T, s blobstore.Blobstore) {
	var keep []string
	for i := range 30 {
		p := Content(64, uint64(300+i))
		put(t, s, blobstore.KindResource, SHA1(p), p)
		if i%3 == 0 {
			keep = append(keep, SHA1(p))
		}
	}
	slices.Sort(keep)
	seen := 0
	for in, err := range s.List(t.Context(), blobstore.KindResource) {
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		seen++
		if !slices.Contains(keep, in.Key) {
			if err := s.Delete(t.Context(), blobstore.KindResource, in.Key); err != nil {
				t.Fatalf("Delete inside List: %v", err)
			}
		}
	}
	if seen != 30 {
		t.Errorf("List yielded %d blobs while deleting, want 30", seen)
	}
	if got := listKeys(t, s, blobstore.KindResource); !slices.Equal(got, keep) {
		t.Errorf("after collection List = %v, want %v", got, keep)
	}
}

func testListStop(t *testing.T, s blobstore.Blobstore) {
	for i := range 10 {
		put(t, s, blobstore.KindBuildCache, "app-"+string(rune('a'+i)), []byte{byte(i)})
	}
	n := 0
	for _, err := range s.List(t.Context(), blobstore.KindBuildCache) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if n == 3 {
			break
		}
	}
	if n != 3 {
		t.Errorf("iterated %d times, want to stop at 3", n)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var last error
	for _, err := range s.List(ctx, blobstore.KindBuildCache) {
		last = err
	}
	wantErr(t, "List with a canceled context", last, context.Canceled)
}

// failingReader returns n bytes of p, then err.
type failingReader struct {
	p   []byte
	n   int
	err error
}

func (r *failingReader) Read(b []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	k := copy(b, r.p[:min(len(r.p), r.n)])
	r.p, r.n = r.p[k:], r.n-k
	return k, nil
}

var errUpload = errors.New("client went away")

func testReaderError(t *testing.T, s blobstore.Blobstore) {
	p := Content(1<<20, 11)
	_, err := s.Put(t.Context(), blobstore.KindDroplet, SHA1(p), &failingReader{p: p, n: 300000, err: errUpload})
	wantErr(t, "Put with a failing reader", err, errUpload)
	_, err = s.Add(t.Context(), blobstore.KindPackage, &failingReader{p: p, n: 5000, err: errUpload})
	wantErr(t, "Add with a failing reader", err, errUpload)
	_, err = s.Put(t.Context(), blobstore.KindBuildCache, "app-9", &failingReader{p: p, n: 5000, err: errUpload})
	wantErr(t, "Put(buildcache) with a failing reader", err, errUpload)
	for _, kind := range blobstore.Kinds() {
		assertEmpty(t, s, kind)
	}
	// A failed replacement keeps the old build cache.
	put(t, s, blobstore.KindBuildCache, "app-9", []byte("old"))
	_, err = s.Put(t.Context(), blobstore.KindBuildCache, "app-9", &failingReader{p: p, n: 10, err: errUpload})
	wantErr(t, "failing replacement", err, errUpload)
	if got := read(t, s, blobstore.KindBuildCache, "app-9"); string(got) != "old" {
		t.Errorf("failed replacement left %q, want %q", got, "old")
	}
}

// cancelReader cancels its context after the first read.
type cancelReader struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (c cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p[:min(len(p), 1000)])
	c.cancel()
	return n, err
}

func testCanceled(t *testing.T, s blobstore.Blobstore) {
	p := Content(100000, 12)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Put(ctx, blobstore.KindDroplet, SHA1(p), bytes.NewReader(p))
	wantErr(t, "Put with a canceled context", err, context.Canceled)

	ctx, cancel = context.WithCancel(t.Context())
	_, err = s.Put(ctx, blobstore.KindDroplet, SHA1(p), cancelReader{r: bytes.NewReader(p), cancel: cancel})
	wantErr(t, "Put canceled midway", err, context.Canceled)

	ctx, cancel = context.WithCancel(t.Context())
	_, err = s.Add(ctx, blobstore.KindDroplet, cancelReader{r: bytes.NewReader(p), cancel: cancel})
	wantErr(t, "Add canceled midway", err, context.Canceled)
	assertEmpty(t, s, blobstore.KindDroplet)
}

// chunkReader hands out content in small reads so that concurrent writers
// interleave.
type chunkReader struct{ p []byte }

func (c *chunkReader) Read(b []byte) (int, error) {
	if len(c.p) == 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(len(b), 4096)], c.p)
	c.p = c.p[n:]
	return n, nil
}

// checkWhole opens kind/key and reports whether it holds exactly one of the
// candidates (false if absent).
func checkWhole(ctx context.Context, s blobstore.Blobstore, kind blobstore.Kind, key string, candidates ...[]byte) (bool, error) {
	b, err := s.Open(ctx, kind, key)
	if errors.Is(err, blobstore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer b.Close() // read-only: a close error cannot lose data
	got, err := io.ReadAll(b)
	if err != nil {
		return false, err
	}
	for _, c := range candidates {
		if bytes.Equal(got, c) {
			return true, nil
		}
	}
	return false, fmt.Errorf("%s/%s: reader saw a partial or mixed blob of %d bytes", kind, key, len(got))
}

func testConcurrentSame(t *testing.T, s blobstore.Blobstore) {
	p := Content(256<<10, 13)
	key := SHA1(p)
	g, ctx := errgroup.WithContext(t.Context())
	for range 6 {
		g.Go(func() error {
			_, err := s.Put(ctx, blobstore.KindDroplet, key, &chunkReader{p: p})
			return err
		})
	}
	g.Go(func() error {
		_, err := s.Add(ctx, blobstore.KindDroplet, &chunkReader{p: p})
		return err
	})
	for range 2 {
		g.Go(func() error {
			for range 50 {
				if _, err := checkWhole(ctx, s, blobstore.KindDroplet, key, p); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, s, blobstore.KindDroplet, key); !bytes.Equal(got, p) {
		t.Error("content after concurrent puts differs")
	}
	if got := listKeys(t, s, blobstore.KindDroplet); !slices.Equal(got, []string{key}) {
		t.Errorf("List after concurrent puts = %v, want only %s", got, key)
	}
}

func testConcurrentReplace(t *testing.T, s blobstore.Blobstore) {
	a, b := Content(100<<10, 14), Content(60<<10, 15)
	put(t, s, blobstore.KindBuildCache, "app-7", a)
	g, ctx := errgroup.WithContext(t.Context())
	for i := range 4 {
		g.Go(func() error {
			for j := range 5 {
				c := a
				if (i+j)%2 == 1 {
					c = b
				}
				if _, err := s.Put(ctx, blobstore.KindBuildCache, "app-7", &chunkReader{p: c}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		for range 60 {
			ok, err := checkWhole(ctx, s, blobstore.KindBuildCache, "app-7", a, b)
			if err != nil {
				return err
			}
			if !ok {
				return errors.New("build cache vanished while being replaced")
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := listKeys(t, s, blobstore.KindBuildCache); !slices.Equal(got, []string{"app-7"}) {
		t.Errorf("List after concurrent replaces = %v, want [app-7]", got)
	}
}
