package warden_test

import (
	"archive/tar"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/warden"
)

func TestCleanPath(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		invalid bool
	}{
		{"", ".", false},
		{"/", ".", false},
		{".", ".", false},
		{"app", "app", false},
		{"/app/./x/", "app/x", false},
		{"//a//b", "a/b", false},
		{"a/../b", "b", false},
		{"a/..", ".", false},
		{"..", "", true},
		{"../x", "", true},
		{"/../etc", "", true},
		{"a/../../b", "", true},
		{"a\x00b", "", true},
	}
	for _, tc := range tests {
		got, err := warden.CleanPath(tc.in)
		if tc.invalid {
			if !errors.Is(err, warden.ErrInvalidPath) {
				t.Errorf("CleanPath(%q) = %q, %v; want ErrInvalidPath", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CleanPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestCleanEntryName(t *testing.T) {
	tests := []struct {
		dst, name string
		want      string
		invalid   bool
	}{
		{".", "a/b", "a/b", false},
		{"app", "./x", "app/x", false},
		{"app", "dir/", "app/dir", false},
		{".", "/etc/passwd", "", true},
		{"app", "../x", "", true},
		{".", "l/../x", "", true},
	}
	for _, tc := range tests {
		got, err := warden.CleanEntryName(tc.dst, tc.name)
		if tc.invalid != (err != nil) || (err != nil && !errors.Is(err, warden.ErrInvalidPath)) || got != tc.want {
			t.Errorf("CleanEntryName(%q, %q) = %q, %v; want %q (invalid %v)", tc.dst, tc.name, got, err, tc.want, tc.invalid)
		}
	}
}

func TestCheckLinkTarget(t *testing.T) {
	tests := []struct {
		link, target string
		ok           bool
	}{
		{"l", "sub", true},
		{"a/l", "../b", true},
		{"a/b/l", "../../c", true},
		{"l", "..", false},
		{"a/l", "../../x", false},
		{"l", "/etc", false},
		{"l", "", false},
	}
	for _, tc := range tests {
		err := warden.CheckLinkTarget(tc.link, tc.target)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, warden.ErrInvalidPath)) {
			t.Errorf("CheckLinkTarget(%q, %q) = %v, want ok=%v", tc.link, tc.target, err, tc.ok)
		}
	}
}

// links is a file tree of symbolic links for ResolvePath.
type links map[string]string

func (l links) readlink(p string) (string, bool, error) {
	t, ok := l[p]
	return t, ok, nil
}

func TestResolvePath(t *testing.T) {
	tree := links{
		"self":     ".",
		"up":       "..",
		"a/up":     "..",
		"alias":    "real",
		"loop":     "loop",
		"abs":      "/etc",
		"chain":    "alias/x",
		"real/rel": "../alias",
	}
	tests := []struct {
		in         string
		followLast bool
		want       string
		invalid    bool
	}{
		{".", true, ".", false},
		{"real/x", true, "real/x", false},
		{"alias/x", true, "real/x", false},
		{"alias", false, "alias", false},
		{"alias", true, "real", false},
		{"self/self/f", true, "f", false},
		{"a/up/f", true, "f", false},
		{"a/up/../f", true, "", true},
		{"up/f", true, "", true},
		{"up", false, "up", false},
		{"abs/passwd", true, "", true},
		{"loop/x", true, "", true},
		{"chain", true, "real/x", false},
		{"real/rel/y", true, "real/y", false},
		{"missing/dir/f", true, "missing/dir/f", false},
	}
	for _, tc := range tests {
		got, err := warden.ResolvePath(tc.in, tc.followLast, tree.readlink)
		if tc.invalid {
			if !errors.Is(err, warden.ErrInvalidPath) {
				t.Errorf("ResolvePath(%q) = %q, %v; want ErrInvalidPath", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ResolvePath(%q, %v) = %q, %v; want %q", tc.in, tc.followLast, got, err, tc.want)
		}
	}
}

func TestValidateHandle(t *testing.T) {
	for _, h := range []string{"a", "app-1_2.v3", strings.Repeat("x", 128), "0e4b0f6e-5a2c-4c1e-9d8e-3f1b2a7c9d10"} {
		if err := warden.ValidateHandle(h); err != nil {
			t.Errorf("ValidateHandle(%q) = %v, want nil", h, err)
		}
	}
	for _, h := range []string{"", ".", "..", ".x", "a/b", "a b", "é", strings.Repeat("x", 129), "a\x00"} {
		if err := warden.ValidateHandle(h); !errors.Is(err, warden.ErrInvalidSpec) {
			t.Errorf("ValidateHandle(%q) = %v, want ErrInvalidSpec", h, err)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	got := warden.MergeEnv([]string{"A=1", "B=2", "bad", "=x"}, []string{"B=3", "C=", "A=4"})
	want := []string{"A=4", "B=3", "C="}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("MergeEnv (-want +got):\n%s", diff)
	}
	if v, ok := warden.LookupEnv([]string{"X=1", "X=2=3"}, "X"); !ok || v != "2=3" {
		t.Errorf("LookupEnv = %q, %v", v, ok)
	}
	if _, ok := warden.LookupEnv(nil, "X"); ok {
		t.Error("LookupEnv on empty env found X")
	}
}

func TestValidateEnv(t *testing.T) {
	tests := []struct {
		env []string
		ok  bool
	}{
		{nil, true},
		{[]string{"A=1", "B=", "C=x=y"}, true},
		{[]string{"A=1", "NOVALUE"}, false},
		{[]string{"=1"}, false},
		{[]string{""}, false},
	}
	for _, tc := range tests {
		err := warden.ValidateEnv(tc.env)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, warden.ErrInvalidSpec)) {
			t.Errorf("ValidateEnv(%q) = %v; want ok=%v or ErrInvalidSpec", tc.env, err, tc.ok)
		}
	}
}

func TestSignal(t *testing.T) {
	if s := warden.SignalTerminate.String(); s != "SIGTERM" {
		t.Errorf("String = %q", s)
	}
	if s := warden.Signal(42).String(); s != "signal(42)" {
		t.Errorf("String = %q", s)
	}
	if st := warden.SignalKill.ExitStatus(); st != 137 {
		t.Errorf("ExitStatus = %d", st)
	}
}

func TestCheckTarHeader(t *testing.T) {
	if err := warden.CheckTarHeader(&tar.Header{Name: "f", PAXRecords: map[string]string{"path": "f"}}); err != nil {
		t.Errorf("plain entry: %v", err)
	}
	sparse := &tar.Header{Name: "s", PAXRecords: map[string]string{"GNU.sparse.size": "1000000000000000"}}
	if err := warden.CheckTarHeader(sparse); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("sparse entry: %v, want ErrUnsupported", err)
	}
}

// FuzzCleanPath checks that a path accepted by CleanPath is clean,
// relative and never climbs out, whatever a caller sends.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"", "/", "a/../b", "../x", "/a/./b/", "a//..//..", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := warden.CleanPath(p)
		if err != nil {
			if !errors.Is(err, warden.ErrInvalidPath) {
				t.Fatalf("CleanPath(%q) error %v does not match ErrInvalidPath", p, err)
			}
			return
		}
		if strings.HasPrefix(got, "/") || got == ".." || strings.HasPrefix(got, "../") || strings.Contains(got, "/../") {
			t.Fatalf("CleanPath(%q) = %q escapes", p, got)
		}
		again, err := warden.CleanPath(got)
		if err != nil || again != got {
			t.Fatalf("CleanPath not idempotent: %q -> %q -> %q, %v", p, got, again, err)
		}
	})
}
