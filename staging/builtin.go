package staging

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// Builtins returns the built-in buildpacks in detection order: Go,
// Node.js, Python, static site, binary. More specific markers come first:
// a Go or Node.js app often also holds an index.html.
func Builtins() []Buildpack {
	return []Buildpack{GoBuildpack{}, NodeBuildpack{}, PythonBuildpack{}, StaticBuildpack{}, BinaryBuildpack{}}
}

// isFile reports whether name is a regular file in fsys.
func isFile(fsys fs.FS, name string) bool {
	fi, err := fs.Stat(fsys, name)
	return err == nil && fi.Mode().IsRegular()
}

// readSource reads a small file of the package.
func readSource(fsys fs.FS, name string, max int64) ([]byte, error) {
	fi, err := fs.Stat(fsys, name)
	if err != nil {
		return nil, err
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, max)
	}
	return fs.ReadFile(fsys, name)
}

// sourceProcfile returns the package's Procfile process types, or nil.
func sourceProcfile(fsys fs.FS) map[string]string {
	data, err := readSource(fsys, "Procfile", 1<<20)
	if err != nil {
		return nil
	}
	procs, err := ParseProcfile(data)
	if err != nil {
		return nil
	}
	return procs
}

// writeProfile writes app/.profile.d/<name>.sh.
func writeProfile(ctx context.Context, b *Build, name, script string) error {
	return b.WriteFile(ctx, path.Join(".profile.d", name+".sh"), []byte(script), 0o644)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
