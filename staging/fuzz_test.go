package staging_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path"
	"strings"
	"testing"

	"github.com/kiln-paas/kiln/staging"
	"github.com/kiln-paas/kiln/warden"
)

// FuzzPackage feeds arbitrary bytes to OpenPackage and WriteTar. Neither
// may panic, and every archive they accept holds only clean relative names,
// no special files, and links that (followed through the archive's other
// links) stay inside it, within the limits.
func FuzzPackage(f *testing.F) {
	link := fs.ModeSymlink | 0o777
	f.Add(zipOf(f, zent{name: "index.html", body: "<p>hi</p>"}, zent{name: "bin/run", body: "x", mode: 0o755}))
	f.Add(zipOf(f, zent{name: "../evil", body: "x"}))
	f.Add(zipOf(f, zent{name: "a", body: ".", mode: link}, zent{name: "b", body: "a/..", mode: link}))
	f.Add(zipOf(f, zent{name: "d/", mode: fs.ModeDir | 0o755}, zent{name: "d/l", body: "../x", mode: link}, zent{name: "x", body: "1"}))
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	limits := staging.PackageLimits{MaxFiles: 64, MaxBytes: 1 << 20}
	f.Fuzz(func(t *testing.T, b []byte) {
		pkg, err := staging.OpenPackage(bytes.NewReader(b), int64(len(b)), limits)
		if err != nil {
			if !errors.Is(err, staging.ErrBadPackage) {
				t.Fatalf("OpenPackage error %v does not match ErrBadPackage", err)
			}
			return
		}
		var out bytes.Buffer
		if err := pkg.WriteTar(&out); err != nil {
			if !errors.Is(err, staging.ErrBadPackage) {
				t.Fatalf("WriteTar error %v does not match ErrBadPackage", err)
			}
			return
		}
		checkTar(t, out.Bytes(), limits)
	})
}

func checkTar(t *testing.T, b []byte, limits staging.PackageLimits) {
	links := map[string]string{}
	var total int64
	n := 0
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("WriteTar produced a bad tar: %v", err)
		}
		n++
		name := strings.TrimSuffix(h.Name, "/")
		if clean, err := warden.CleanEntryName(".", name); err != nil || clean != name {
			t.Fatalf("entry %q is not clean (%q, %v)", h.Name, clean, err)
		}
		switch h.Typeflag {
		case tar.TypeDir, tar.TypeReg:
		case tar.TypeSymlink:
			if err := warden.CheckLinkTarget(name, h.Linkname); err != nil {
				t.Fatalf("accepted link %q -> %q: %v", name, h.Linkname, err)
			}
			links[name] = h.Linkname
		default:
			t.Fatalf("entry %q has type %q", h.Name, h.Typeflag)
		}
		total += h.Size
	}
	if n > limits.MaxFiles || total > limits.MaxBytes {
		t.Fatalf("accepted %d entries, %d bytes: over the limits", n, total)
	}
	for l := range links {
		if escapes(links, path.Dir(l), links[l], 0) {
			t.Fatalf("accepted link %q -> %q, which leaves the package through other links", l, links[l])
		}
	}
}

// escapes resolves target from dir through links the way the kernel does.
func escapes(links map[string]string, dir, target string, depth int) bool {
	if depth > 50 {
		return false // a loop; the stager refuses those, the kernel errors
	}
	cur := []string{}
	if dir != "." {
		cur = strings.Split(dir, "/")
	}
	for _, el := range strings.Split(target, "/") {
		switch el {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return true
			}
			cur = cur[:len(cur)-1]
			continue
		}
		cur = append(cur, el)
		if next, ok := links[strings.Join(cur, "/")]; ok {
			j := strings.Join(cur, "/")
			if escapes(links, path.Dir(j), next, depth+1) {
				return true
			}
			cur = strings.Split(path.Clean(path.Dir(j)+"/"+next), "/")
		}
	}
	return false
}
