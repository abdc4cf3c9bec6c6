package droplet_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/staging/droplet"
)

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func tarOf(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var sampleInfo = droplet.Info{
	DetectedBuildpack: "test",
	Buildpack:         "test",
	StartCommand:      "./run",
	Stack:             "linux",
	ProcessTypes:      map[string]string{"web": "./run"},
}

func TestPackRoundTrip(t *testing.T) {
	t.Parallel()
	app := tarOf(t, []entry{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/tool", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o755},
		{name: "run", typ: tar.TypeSymlink, link: "bin/tool"},
		{name: "data.txt", typ: tar.TypeReg, body: "hello"},
	})
	var buf bytes.Buffer
	sum, err := droplet.Pack(&buf, sampleInfo, bytes.NewReader(app))
	if err != nil {
		t.Fatal(err)
	}
	h := sha1.Sum(buf.Bytes())
	if diff := cmp.Diff(droplet.Sum{SHA1: hex.EncodeToString(h[:]), Size: int64(buf.Len())}, sum); diff != "" {
		t.Errorf("sum (-want +got):\n%s", diff)
	}
	info, err := droplet.ReadInfo(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sampleInfo, info); diff != "" {
		t.Errorf("info (-want +got):\n%s", diff)
	}
	files, err := droplet.Files(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"bin", "bin/tool", "run", "data.txt"}, files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	dir := t.TempDir()
	if _, err := droplet.Extract(bytes.NewReader(buf.Bytes()), dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "app", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("app/run mode %v, want executable", fi.Mode())
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "app", "data.txt")); string(b) != "hello" {
		t.Errorf("data.txt = %q", b)
	}
}

func TestPackRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		app  []entry
	}{
		{"absolute", []entry{{name: "/etc/passwd", typ: tar.TypeReg}}},
		{"climbing", []entry{{name: "../x", typ: tar.TypeReg}}},
		{"link out", []entry{{name: "l", typ: tar.TypeSymlink, link: "../../etc"}}},
		{"absolute link", []entry{{name: "l", typ: tar.TypeSymlink, link: "/etc"}}},
		{"device", []entry{{name: "dev", typ: tar.TypeChar}}},
		{"hard link", []entry{{name: "h", typ: tar.TypeLink, link: "x"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := droplet.Pack(&bytes.Buffer{}, sampleInfo, bytes.NewReader(tarOf(t, tt.app)))
			if !errors.Is(err, droplet.ErrInvalid) {
				t.Errorf("Pack: %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := droplet.Pack(&bytes.Buffer{}, droplet.Info{Stack: "linux"}, bytes.NewReader(tarOf(t, nil))); !errors.Is(err, droplet.ErrInvalid) {
		t.Errorf("Pack without start command: %v, want ErrInvalid", err)
	}
}

func TestExtractRejects(t *testing.T) {
	t.Parallel()
	info := entry{name: droplet.InfoFile, typ: tar.TypeReg, body: `{"start_command":"x","stack":"linux","detected_buildpack":"t"}`}
	tests := []struct {
		name    string
		entries []entry
	}{
		{"no info", []entry{{name: "app/", typ: tar.TypeDir}}},
		{"bad info", []entry{{name: droplet.InfoFile, typ: tar.TypeReg, body: "{"}}},
		{"empty command", []entry{{name: droplet.InfoFile, typ: tar.TypeReg, body: `{"start_command":" "}`}}},
		{"outside app", []entry{info, {name: "etc/passwd", typ: tar.TypeReg}}},
		{"climbing", []entry{info, {name: "app/../../x", typ: tar.TypeReg}}},
		{"absolute", []entry{info, {name: "/app/x", typ: tar.TypeReg}}},
		{"link leaves app", []entry{info, {name: "app/l", typ: tar.TypeSymlink, link: "../staging_info.json"}}},
		{"app is link", []entry{info, {name: "app", typ: tar.TypeSymlink, link: "."}}},
		{"fifo", []entry{info, {name: "app/f", typ: tar.TypeFifo}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			_, err := droplet.Extract(bytes.NewReader(gz(t, tarOf(t, tt.entries))), dir)
			if !errors.Is(err, droplet.ErrInvalid) {
				t.Errorf("Extract: %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := droplet.ReadInfo(strings.NewReader("not gzip")); !errors.Is(err, droplet.ErrInvalid) {
		t.Errorf("ReadInfo(garbage): %v, want ErrInvalid", err)
	}
}

// TestLaunch runs the launcher with /bin/sh on the host: HOME, PATH with
// app/bin, .profile.d and .profile, and compound start commands.
func TestLaunch(t *testing.T) {
	t.Parallel()
	app := tarOf(t, []entry{
		{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/greet", typ: tar.TypeReg, body: "#!/bin/sh\necho \"hi $GREETING\"\n", mode: 0o755},
		{name: ".profile.d/", typ: tar.TypeDir, mode: 0o755},
		{name: ".profile.d/a.sh", typ: tar.TypeReg, body: "export GREETING=from-profile-d\n"},
		{name: ".profile.d/skip.txt", typ: tar.TypeReg, body: "exit 3\n"},
		{name: ".profile", typ: tar.TypeReg, body: "export LAST=profile\n"},
	})
	info := sampleInfo
	info.StartCommand = `greet && echo "home=$HOME last=$LAST arg=$0"`
	var buf bytes.Buffer
	if _, err := droplet.Pack(&buf, info, bytes.NewReader(app)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	got, err := droplet.Extract(&buf, dir)
	if err != nil {
		t.Fatal(err)
	}
	path, args := droplet.Launch(got)
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("launch: %v\n%s", err, out)
	}
	want := "hi from-profile-d\nhome=" + filepath.Join(dir, "app") + " last=profile arg=/bin/sh\n"
	if diff := cmp.Diff(want, string(out)); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}
