package fake

import (
	"archive/tar"
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/warden"
)

func TestParseScript(t *testing.T) {
	env := []string{"A=1", "SP=x y", "E="}
	tests := []struct {
		script string
		want   []command
		ok     bool
	}{
		{"echo hi", []command{{argv: []string{"echo", "hi"}}}, true},
		{"echo $A ${A}b \"$SP\" '$A'", []command{{argv: []string{"echo", "1", "1b", "x y", "$A"}}}, true},
		{"echo $E x", []command{{argv: []string{"echo", "x"}}}, true},
		{"echo \"$E\" x", []command{{argv: []string{"echo", "", "x"}}}, true},
		{"trap '' TERM; sleep 1 > /dev/null & wait", []command{
			{argv: []string{"trap", "", "TERM"}},
			{argv: []string{"sleep", "1"}, redirect: "/dev/null", background: true},
			{argv: []string{"wait"}},
		}, true},
		{"cat f && echo a >> log\nexit 3", []command{
			{argv: []string{"cat", "f"}, andNext: true},
			{argv: []string{"echo", "a"}, redirect: "log", append: true},
			{argv: []string{"exit", "3"}},
		}, true},
		{"cd app && ./start", nil, false},
		{"echo a | cat", nil, false},
		{"trap 'echo bye' TERM", nil, false},
		{"ulimit -v", nil, false},
		{"echo $(pwd)", nil, false},
	}
	for _, tc := range tests {
		got, ok := parseScript(tc.script, env)
		if ok != tc.ok {
			t.Errorf("parseScript(%q) ok = %v, want %v", tc.script, ok, tc.ok)
			continue
		}
		if diff := cmp.Diff(tc.want, got.cmds, cmp.AllowUnexported(command{})); ok && diff != "" {
			t.Errorf("parseScript(%q) (-want +got):\n%s", tc.script, diff)
		}
	}
	if p, ok := parseScript("echo 'unterminated", env); !ok || p.syntaxErr == "" {
		t.Errorf("unterminated quote: %+v, %v; want a syntax error", p, ok)
	}
}

// FuzzParseScript checks the interpreter's parser never panics and that
// what it accepts uses only the vocabulary.
func FuzzParseScript(f *testing.F) {
	for _, s := range []string{"echo hi", "trap '' TERM; sleep 1 &", "a && b; c", "echo \"$X\" > f", "'", "${"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script string) {
		p, ok := parseScript(script, []string{"X=1"})
		if !ok || p.syntaxErr != "" {
			return
		}
		for _, c := range p.cmds {
			if !builtins[c.argv[0]] {
				t.Fatalf("accepted %q outside the vocabulary", c.argv[0])
			}
		}
	})
}

// FuzzStreamIn feeds arbitrary archives to the in-memory tree and checks
// every stored path is clean and inside the container.
func FuzzStreamIn(f *testing.F) {
	seed := func(entries ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range entries {
			_ = tw.WriteHeader(h)
			if h.Size > 0 {
				_, _ = tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
			}
		}
		_ = tw.Close()
		return buf.Bytes()
	}
	f.Add(seed(&tar.Header{Name: "a/b", Typeflag: tar.TypeReg, Size: 3, Mode: 0o644}))
	f.Add(seed(&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "."}, &tar.Header{Name: "l/m", Typeflag: tar.TypeSymlink, Linkname: "../x"}))
	f.Add(seed(&tar.Header{Name: "../x", Typeflag: tar.TypeReg, Size: 1}))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := newMemFS()
		_ = m.extract(context.Background(), "dst", bytes.NewReader(data), 1<<20)
		var size uint64
		for p, n := range m.nodes {
			if c, err := warden.CleanPath(p); err != nil || c != p {
				t.Fatalf("stored path %q is not clean (%q, %v)", p, c, err)
			}
			if n.kind == kindLink {
				if strings.HasPrefix(n.target, "/") {
					t.Fatalf("stored absolute link %q -> %q", p, n.target)
				}
			}
			size += uint64(len(n.data))
		}
		if size != m.size {
			t.Fatalf("size accounting %d, files hold %d", m.size, size)
		}
	})
}
