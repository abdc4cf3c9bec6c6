package staging

import (
	"os"
	"strings"
	"testing"
)

func TestBuiltinsSharingGoCache(t *testing.T) {
	for _, cache := range []string{"", "/var/cache/go"} {
		var got string
		found := false
		for _, p := range BuiltinsSharingGoCache(cache) {
			if g, ok := p.(GoBuildpack); ok {
				got, found = g.SharedBuildCache, true
			}
		}
		if !found || got != cache {
			t.Errorf("BuiltinsSharingGoCache(%q): Go buildpack found=%v cache=%q", cache, found, got)
		}
		if n, want := len(BuiltinsSharingGoCache(cache)), len(Builtins()); n != want {
			t.Errorf("BuiltinsSharingGoCache(%q) has %d packs, want %d", cache, n, want)
		}
	}
}

func TestHostPathKeepsPATH(t *testing.T) {
	if p := HostPath(); !strings.HasPrefix(p, os.Getenv("PATH")) {
		t.Errorf("HostPath() = %q, does not start with PATH", p)
	}
}

func TestHostGoCache(t *testing.T) {
	t.Setenv("GOCACHE", t.TempDir())
	if got, want := HostGoCache(), os.Getenv("GOCACHE"); got != want {
		t.Errorf("HostGoCache() = %q, want %q (from GOCACHE)", got, want)
	}
	t.Setenv("GOCACHE", "off")
	if got := HostGoCache(); got != "" {
		t.Errorf("HostGoCache() with GOCACHE=off = %q, want empty", got)
	}
}
