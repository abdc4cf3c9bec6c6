package hostfs

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-paas/kiln/warden"
)

// FuzzExtract feeds arbitrary archives to StreamIn's extractor on a real
// directory and checks nothing lands outside the container and every link
// stays inside.
func FuzzExtract(f *testing.F) {
	seed := func(hs ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hs {
			_ = tw.WriteHeader(h)
			_, _ = tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
		_ = tw.Close()
		return buf.Bytes()
	}
	f.Add(seed(&tar.Header{Name: "a/b", Typeflag: tar.TypeReg, Size: 2, Mode: 0o644}))
	f.Add(seed(&tar.Header{Name: "s", Typeflag: tar.TypeSymlink, Linkname: "."},
		&tar.Header{Name: "s/l", Typeflag: tar.TypeSymlink, Linkname: "../out"},
		&tar.Header{Name: "s/l/f", Typeflag: tar.TypeReg, Size: 1}))
	f.Add(seed(&tar.Header{Name: "d", Typeflag: tar.TypeDir, Mode: 0o500},
		&tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Size: 1, Mode: 0o400}))
	f.Fuzz(func(t *testing.T, data []byte) {
		outer, err := os.MkdirTemp("", "kiln-fuzz-extract-")
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = RemoveAll(outer) }()
		rootfs := filepath.Join(outer, "rootfs")
		if err := os.Mkdir(rootfs, 0o755); err != nil {
			t.Fatal(err)
		}
		_ = Extract(context.Background(), rootfs, "dst", bytes.NewReader(data), 1<<20, nil)
		entries, err := os.ReadDir(outer)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Fatalf("extraction created %v beside the root", entries)
		}
		err = filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(rootfs, p)
			if err := warden.CheckLinkTarget(filepath.ToSlash(rel), target); err != nil {
				t.Fatalf("link %s -> %s: %v", rel, target, err)
			}
			return nil
		})
		if err != nil && !strings.Contains(err.Error(), "permission denied") {
			t.Fatal(err)
		}
	})
}
