package staging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// goHome is where the Go toolchain usually lives when go is not on PATH.
const goHome = "/usr/local/go/bin"

// HostPath returns a PATH for build processes on this host: the current
// process's PATH, plus the usual Go toolchain directory when go is not on
// it, so the Go buildpack finds its compiler.
func HostPath() string {
	p := os.Getenv("PATH")
	if _, err := exec.LookPath("go"); err != nil {
		p += string(os.PathListSeparator) + goHome
	}
	return p
}

// HostGoCache returns the host's GOCACHE as the go command reports it, or
// "" (meaning per-app build caches) when go is missing or caching is off.
func HostGoCache() string {
	goTool := "go"
	if _, err := exec.LookPath(goTool); err != nil {
		goTool = filepath.Join(goHome, "go")
	}
	out, err := exec.Command(goTool, "env", "GOCACHE").Output()
	if dir := strings.TrimSpace(string(out)); err == nil && dir != "off" {
		return dir
	}
	return ""
}

// BuiltinsSharingGoCache returns Builtins with the Go buildpack sharing the
// build cache directory goCache (see GoBuildpack.SharedBuildCache); an
// empty goCache leaves Builtins unchanged.
func BuiltinsSharingGoCache(goCache string) []Buildpack {
	packs := Builtins()
	for i, p := range packs {
		if _, ok := p.(GoBuildpack); ok {
			packs[i] = GoBuildpack{SharedBuildCache: goCache}
		}
	}
	return packs
}
