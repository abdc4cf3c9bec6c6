package staging

import (
	"context"
	"io/fs"
	"path"
	"strings"
)

// BinaryBuildpack stages prebuilt executables: apps whose Procfile's web
// command runs an executable file of the package ("web: ./server" or
// "web: bin/server --flag", or "web: server" for bin/server, as bin/ is on
// the droplet's PATH). Nothing is compiled; the Procfile is the
// start command. Executable bits come from the zip's permissions.
type BinaryBuildpack struct{}

// Name implements Buildpack.
func (BinaryBuildpack) Name() string { return "binary" }

// Detect implements Buildpack.
func (BinaryBuildpack) Detect(_ context.Context, b *Build) (string, bool, error) {
	return "binary", binaryTarget(b.Source) != "", nil
}

// binaryTarget returns the executable the Procfile's web command names,
// or "".
func binaryTarget(fsys fs.FS) string {
	web := strings.Fields(sourceProcfile(fsys)["web"])
	if len(web) == 0 {
		return ""
	}
	name := path.Clean(strings.TrimPrefix(web[0], "./"))
	if !strings.Contains(web[0], "/") {
		// A bare name is looked up on PATH, where the droplet has bin/.
		name = "bin/" + name
	}
	if !fs.ValidPath(name) {
		return ""
	}
	fi, err := fs.Stat(fsys, name)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return ""
	}
	return name
}

// Compile implements Buildpack.
func (BinaryBuildpack) Compile(_ context.Context, b *Build) error {
	b.Logf("Using the prebuilt executable %s", binaryTarget(b.Source))
	return nil
}

// Release implements Buildpack. The start command comes from the
// Procfile, which the stager applies after every release.
func (BinaryBuildpack) Release(context.Context, *Build) (Release, error) {
	return Release{ProcessTypes: map[string]string{}}, nil
}
