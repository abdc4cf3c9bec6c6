package staging_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/staging"
)

// zent is one entry of a zip built by a test.
type zent struct {
	name string
	body string
	mode fs.FileMode // 0 means a 0644 file, or a directory for names ending in "/"
}

func zipOf(t testing.TB, entries ...zent) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if strings.HasSuffix(e.name, "/") {
				mode = fs.ModeDir | 0o755
			}
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zipDir zips a host directory, keeping permissions and links.
func zipDir(t testing.TB, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := zip.FileInfoHeader(fi)
		if err != nil {
			return err
		}
		h.Name, h.Method = filepath.ToSlash(rel), zip.Deflate
		if fi.IsDir() {
			h.Name += "/"
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			return err
		}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = w.Write(b)
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			_, err = io.WriteString(w, target)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarNames lists a tar archive's entries as "name" or "name -> target".
func tarNames(t testing.TB, b []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		n := h.Name
		if h.Typeflag == tar.TypeSymlink {
			n += " -> " + h.Linkname
		}
		names = append(names, n)
	}
}

func TestOpenPackageAccepts(t *testing.T) {
	t.Parallel()
	z := zipOf(t,
		zent{name: "./"},
		zent{name: "bin/"},
		zent{name: "bin/run", body: "#!/bin/sh\n", mode: 0o755},
		zent{name: "lib/a/b.txt", body: "b"},
		zent{name: "node_modules/.bin/tool", body: "../tool/cli.js", mode: fs.ModeSymlink | 0o777},
		zent{name: "node_modules/tool/cli.js", body: "x"},
		zent{name: "current", body: "lib/a", mode: fs.ModeSymlink | 0o777},
		zent{name: "self", body: ".", mode: fs.ModeSymlink | 0o777},
	)
	pkg, err := staging.OpenPackage(bytes.NewReader(z), int64(len(z)), staging.DefaultPackageLimits())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := pkg.WriteTar(&buf); err != nil {
		t.Fatal(err)
	}
	want := []string{"bin/", "bin/run", "lib/a/b.txt", "node_modules/.bin/tool -> ../tool/cli.js", "node_modules/tool/cli.js", "current -> lib/a", "self -> ."}
	if diff := cmp.Diff(want, tarNames(t, buf.Bytes())); diff != "" {
		t.Errorf("tar entries (-want +got):\n%s", diff)
	}
	if got := pkg.Size(); got != int64(len("#!/bin/sh\n")+1+len("../tool/cli.js")+1+len("lib/a")+1) {
		t.Errorf("Size() = %d", got)
	}
}

func TestOpenPackageRejects(t *testing.T) {
	t.Parallel()
	link := fs.ModeSymlink | 0o777
	tests := []struct {
		name    string
		entries []zent
		limits  staging.PackageLimits
	}{
		{"dot dot", []zent{{name: "../evil", body: "x"}}, staging.PackageLimits{}},
		{"nested dot dot", []zent{{name: "a/../../evil", body: "x"}}, staging.PackageLimits{}},
		{"absolute", []zent{{name: "/etc/passwd", body: "x"}}, staging.PackageLimits{}},
		{"backslash", []zent{{name: `..\evil`, body: "x"}}, staging.PackageLimits{}},
		{"absolute link", []zent{{name: "l", body: "/etc", mode: link}}, staging.PackageLimits{}},
		{"link out", []zent{{name: "a/l", body: "../../etc", mode: link}}, staging.PackageLimits{}},
		{"link chain out", []zent{{name: "a", body: ".", mode: link}, {name: "b", body: "a/..", mode: link}}, staging.PackageLimits{}},
		{"link through link out", []zent{{name: "d/up", body: "..", mode: link}, {name: "x", body: "d/up/..", mode: link}}, staging.PackageLimits{}},
		{"link loop", []zent{{name: "a", body: "b", mode: link}, {name: "b", body: "a", mode: link}}, staging.PackageLimits{}},
		{"write through link", []zent{{name: "l", body: "sub", mode: link}, {name: "l/x", body: "x"}}, staging.PackageLimits{}},
		{"file below file", []zent{{name: "f", body: "x"}, {name: "f/g", body: "y"}}, staging.PackageLimits{}},
		{"duplicate", []zent{{name: "f", body: "x"}, {name: "f", body: "y"}}, staging.PackageLimits{}},
		{"device", []zent{{name: "dev", mode: fs.ModeDevice | 0o644}}, staging.PackageLimits{}},
		{"fifo", []zent{{name: "p", mode: fs.ModeNamedPipe | 0o644}}, staging.PackageLimits{}},
		{"too many files", []zent{{name: "a"}, {name: "b"}, {name: "c"}}, staging.PackageLimits{MaxFiles: 2}},
		{"too many bytes", []zent{{name: "a", body: strings.Repeat("x", 600)}, {name: "b", body: strings.Repeat("x", 600)}}, staging.PackageLimits{MaxBytes: 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			z := zipOf(t, tt.entries...)
			_, err := staging.OpenPackage(bytes.NewReader(z), int64(len(z)), tt.limits)
			if !errors.Is(err, staging.ErrBadPackage) {
				t.Errorf("OpenPackage: %v, want ErrBadPackage", err)
			}
		})
	}
	if _, err := staging.OpenPackage(strings.NewReader("not a zip"), 9, staging.DefaultPackageLimits()); !errors.Is(err, staging.ErrBadPackage) {
		t.Errorf("OpenPackage(garbage): %v, want ErrBadPackage", err)
	}
}

// TestZipBomb: a zip whose entry decompresses to far more than the limit
// is refused from its directory, and one lying about its size is refused
// while streaming.
func TestZipBomb(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("\x00", 3<<20) // 3 MiB of zeros deflate to ~3 KiB
	z := zipOf(t, zent{name: "bomb", body: big})
	if len(z) > 64<<10 {
		t.Fatalf("test zip is %d bytes, expected a high ratio", len(z))
	}
	_, err := staging.OpenPackage(bytes.NewReader(z), int64(len(z)), staging.PackageLimits{MaxBytes: 1 << 20, MaxFiles: 10})
	if !errors.Is(err, staging.ErrBadPackage) {
		t.Fatalf("OpenPackage(bomb): %v, want ErrBadPackage", err)
	}

	// Forge the sizes: claim 10 bytes for the 3 MiB entry.
	forged := forgeSize(t, z, 10)
	pkg, err := staging.OpenPackage(bytes.NewReader(forged), int64(len(forged)), staging.PackageLimits{MaxBytes: 1 << 20, MaxFiles: 10})
	if err != nil {
		t.Fatalf("OpenPackage(forged): %v (the directory claims 10 bytes)", err)
	}
	var out bytes.Buffer
	if err := pkg.WriteTar(&out); !errors.Is(err, staging.ErrBadPackage) {
		t.Errorf("WriteTar(forged): %v, want ErrBadPackage", err)
	}
	if out.Len() > 1<<20 {
		t.Errorf("WriteTar wrote %d bytes of a forged entry", out.Len())
	}
}

// forgeSize rewrites the uncompressed size of the zip's only entry in its
// local header and central directory.
func forgeSize(t *testing.T, z []byte, size uint32) []byte {
	t.Helper()
	out := bytes.Clone(z)
	put := func(off int) {
		out[off], out[off+1], out[off+2], out[off+3] = byte(size), byte(size>>8), byte(size>>16), byte(size>>24)
	}
	local := bytes.Index(out, []byte("PK\x03\x04"))
	central := bytes.Index(out, []byte("PK\x01\x02"))
	if local < 0 || central < 0 {
		t.Fatal("no zip headers")
	}
	// zip.Writer streams: sizes live in the data descriptor and the
	// central directory; the local header's are zero.
	put(central + 24)
	if dd := bytes.Index(out[local:central], []byte("PK\x07\x08")); dd >= 0 {
		put(local + dd + 12)
	}
	return out
}

func TestProcfile(t *testing.T) {
	t.Parallel()
	got, err := staging.ParseProcfile([]byte("# comment\nweb: ./bin/app -port $PORT\n\nworker:  python worker.py \nweb: ./bin/other\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"web": "./bin/other", "worker": "python worker.py"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"web", "web:", "we b: x", ": x"} {
		if _, err := staging.ParseProcfile([]byte(bad)); err == nil {
			t.Errorf("ParseProcfile(%q) succeeded", bad)
		}
	}
}

// TestLinkResolutionBounded: links naming other links many times are
// refused quickly instead of resolving exponentially.
func TestLinkResolutionBounded(t *testing.T) {
	t.Parallel()
	var entries []zent
	for i := range 40 {
		next := fmt.Sprintf("l%d", i+1)
		target := strings.Repeat(next+"/../", 5) + next
		if i == 39 {
			target = "."
		}
		entries = append(entries, zent{name: fmt.Sprintf("l%d", i), body: target, mode: fs.ModeSymlink | 0o777})
	}
	z := zipOf(t, entries...)
	_, err := staging.OpenPackage(bytes.NewReader(z), int64(len(z)), staging.DefaultPackageLimits())
	if !errors.Is(err, staging.ErrBadPackage) {
		t.Errorf("OpenPackage: %v, want ErrBadPackage", err)
	}
}
