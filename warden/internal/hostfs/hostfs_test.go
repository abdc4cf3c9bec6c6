package hostfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/warden"
)

type entry struct {
	Name, Body, Link string
	Dir              bool
}

func tarOf(t *testing.T, es ...entry) io.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.Name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.Body))}
		switch {
		case e.Dir:
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case e.Link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.Link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.Body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func readTar(t *testing.T, r io.Reader) []entry {
	t.Helper()
	var out []entry
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, entry{Name: h.Name, Body: string(b), Link: h.Linkname, Dir: h.Typeflag == tar.TypeDir})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func TestExtractArchiveRoundTrip(t *testing.T) {
	rootfs := t.TempDir()
	ctx := context.Background()
	in := tarOf(t,
		entry{Name: "d", Dir: true},
		entry{Name: "d/f", Body: "hello"},
		entry{Name: "d/l", Link: "f"},
		entry{Name: "top", Body: "x"},
	)
	if err := Extract(ctx, rootfs, "/app", in, 0, nil); err != nil {
		t.Fatal(err)
	}
	rc, err := Archive(ctx, rootfs, "/app")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	want := []entry{
		{Name: "d/", Dir: true},
		{Name: "d/f", Body: "hello"},
		{Name: "d/l", Link: "f"},
		{Name: "top", Body: "x"},
	}
	if diff := cmp.Diff(want, readTar(t, rc)); diff != "" {
		t.Errorf("archive of /app (-want +got):\n%s", diff)
	}
	rc, err = Archive(ctx, rootfs, "app/d/f")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if diff := cmp.Diff([]entry{{Name: "f", Body: "hello"}}, readTar(t, rc)); diff != "" {
		t.Errorf("archive of a file (-want +got):\n%s", diff)
	}
}

func TestExtractRefuses(t *testing.T) {
	tests := []struct {
		name    string
		entries []entry
		limit   uint64
		want    error
	}{
		{"dot dot", []entry{{Name: "../x", Body: "x"}}, 0, warden.ErrInvalidPath},
		{"absolute link", []entry{{Name: "l", Link: "/etc"}}, 0, warden.ErrInvalidPath},
		{"link out", []entry{{Name: "l", Link: "../.."}}, 0, warden.ErrInvalidPath},
		{"write through link out", []entry{{Name: "s", Link: "."}, {Name: "s/l", Link: "../out"}}, 0, warden.ErrInvalidPath},
		{"over limit", []entry{{Name: "a", Body: "12345"}, {Name: "b", Body: "123456"}}, 10, warden.ErrLimitExceeded},
		{"file over dir", []entry{{Name: "d", Dir: true}, {Name: "d", Body: "x"}}, 0, warden.ErrExists},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			outer := t.TempDir()
			rootfs := filepath.Join(outer, "rootfs")
			if err := os.Mkdir(rootfs, 0o755); err != nil {
				t.Fatal(err)
			}
			err := Extract(context.Background(), rootfs, ".", tarOf(t, tc.entries...), tc.limit, nil)
			if !errors.Is(err, tc.want) {
				t.Errorf("Extract = %v, want %v", err, tc.want)
			}
			if got, _ := os.ReadDir(outer); len(got) != 1 {
				t.Errorf("extraction wrote beside the root: %v", got)
			}
		})
	}
}

func TestExtractOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving files away needs root")
	}
	rootfs := t.TempDir()
	o := &Owner{UID: 12345, GID: 12346}
	in := tarOf(t, entry{Name: "a/b/f", Body: "x"}, entry{Name: "a/l", Link: "b"})
	if err := Extract(context.Background(), rootfs, "dst", in, 0, o); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"dst", "dst/a", "dst/a/b", "dst/a/b/f", "dst/a/l"} {
		uid, gid := owner(t, filepath.Join(rootfs, p))
		if uid != o.UID || gid != o.GID {
			t.Errorf("%s belongs to %d:%d, want %d:%d", p, uid, gid, o.UID, o.GID)
		}
	}
}

func TestArchiveMissing(t *testing.T) {
	_, err := Archive(context.Background(), t.TempDir(), "nope")
	if !errors.Is(err, warden.ErrNotFound) {
		t.Errorf("Archive of a missing path = %v, want ErrNotFound", err)
	}
}

func TestFSError(t *testing.T) {
	tests := []struct {
		in   error
		want error
	}{
		{nil, nil},
		{fs.ErrNotExist, warden.ErrNotFound},
		{errors.New("openat a: path escapes from parent"), warden.ErrInvalidPath},
		{fs.ErrPermission, fs.ErrPermission},
	}
	for _, tc := range tests {
		got := FSError(tc.in)
		if tc.want == nil {
			if got != nil {
				t.Errorf("FSError(nil) = %v", got)
			}
			continue
		}
		if !errors.Is(got, tc.want) {
			t.Errorf("FSError(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestDiskUsageAndRemoveAll(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	if err := os.MkdirAll(filepath.Join(dir, "ro"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]int{"a": 3, "ro/b": 4} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	if got, err := DiskUsage(dir); err != nil || got != 7 {
		t.Errorf("DiskUsage = %d, %v; want 7 (links not counted)", got, err)
	}
	if err := os.Chmod(filepath.Join(dir, "ro"), 0o500); err != nil {
		t.Fatal(err)
	}
	if err := RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there: %v", dir, err)
	}
}

func TestFreeBytes(t *testing.T) {
	if n, err := FreeBytes(t.TempDir()); err != nil || n == 0 {
		t.Errorf("FreeBytes = %d, %v", n, err)
	}
	if _, err := FreeBytes(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("FreeBytes of a missing directory succeeded")
	}
}

func owner(t *testing.T, p string) (uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}
