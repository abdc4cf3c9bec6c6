package staging

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/kiln-paas/kiln/warden"
)

// GoBuildpack builds Go modules (apps with a go.mod) with the staging
// host's Go toolchain ("go" on Config.Path) and module proxy. Every main
// package of the module is built, statically (CGO_ENABLED=0), into the
// app's bin/; the start command runs the main package at the module's root,
// or the only main package. The module and build caches (GOMODCACHE,
// GOCACHE) live in the app's build cache, so restaging the same app
// downloads and compiles only what changed. GOTOOLCHAIN defaults to
// "local": a go.mod asking for a newer Go fails rather than downloading a
// toolchain (set GOTOOLCHAIN in the app's environment to allow it).
//
// The zero value is ready to use.
type GoBuildpack struct {
	// SharedBuildCache, if set, is a directory used as GOCACHE by every
	// staging instead of the app's own build cache, as build processes
	// see it (a host directory with warden/process). A cold staging of a
	// small web app then takes seconds instead of a minute of compiling
	// the standard library, and the app's cache stays small. Go's cache is
	// content-addressed and safe for concurrent builds, but any build can
	// write into it: share it only among apps that trust each other.
	SharedBuildCache string
}

// Name implements Buildpack.
func (GoBuildpack) Name() string { return "go" }

var goDirective = regexp.MustCompile(`(?m)^go\s+([0-9][0-9A-Za-z.\-]*)\s*$`)

// Detect implements Buildpack: a go.mod at the root.
func (GoBuildpack) Detect(_ context.Context, b *Build) (string, bool, error) {
	data, err := readSource(b.Source, "go.mod", 1<<20)
	if err != nil {
		return "", false, nil
	}
	if m := goDirective.FindSubmatch(data); m != nil {
		return "go " + string(m[1]), true, nil
	}
	return "go", true, nil
}

func (g GoBuildpack) env(b *Build) []string {
	gocache := b.CacheDir + "/go/build"
	if g.SharedBuildCache != "" {
		gocache = g.SharedBuildCache
	}
	// -modcacherw: the module cache travels as a tar in the build cache;
	// read-only directories would not extract again.
	goflags := "-mod=mod -modcacherw -buildvcs=false"
	if isFile(b.Source, "vendor/modules.txt") {
		goflags = "-mod=vendor -modcacherw -buildvcs=false"
	}
	env := []string{
		"GOMODCACHE=" + b.CacheDir + "/go/mod",
		"GOCACHE=" + gocache,
		"GOPATH=" + b.CacheDir + "/go/path",
		"CGO_ENABLED=0",
		"GOWORK=off",
		"GOFLAGS=" + goflags,
	}
	if _, ok := warden.LookupEnv(b.Env, "GOTOOLCHAIN"); !ok {
		env = append(env, "GOTOOLCHAIN=local")
	}
	return env
}

// Compile implements Buildpack.
func (g GoBuildpack) Compile(ctx context.Context, b *Build) error {
	goBin, err := b.LookPath(ctx, "go")
	if err != nil {
		return err
	}
	opts := RunOptions{Env: g.env(b)}
	var ver strings.Builder
	if err := b.Run(ctx, RunOptions{Env: opts.Env, Stdout: &ver}, goBin, "env", "GOVERSION"); err != nil {
		return err
	}
	b.Logf("Using %s (%s)", strings.TrimSpace(ver.String()), goBin)
	var list strings.Builder
	opts.Stdout = &list
	b.Logf("Resolving main packages")
	if err := b.Run(ctx, opts, goBin, "list", "-f", `{{if eq .Name "main"}}{{.ImportPath}}{{"\t"}}{{.Module.Path}}{{end}}`, "./..."); err != nil {
		return err
	}
	mains := parseGoMains(list.String())
	if len(mains) == 0 {
		return fmt.Errorf("the module has no main package to build")
	}
	pkgs := make([]string, len(mains))
	for i, m := range mains {
		pkgs[i] = m.importPath
	}
	b.Logf("Building %s", strings.Join(pkgs, " "))
	opts.Stdout = nil
	args := append([]string{"build", "-trimpath", "-o", b.AppDir + "/bin/"}, pkgs...)
	if err := b.Run(ctx, opts, goBin, args...); err != nil {
		return err
	}
	return b.WriteFile(ctx, ".kiln/go-start", []byte(goStart(mains)), 0o644)
}

// Release implements Buildpack.
func (GoBuildpack) Release(ctx context.Context, b *Build) (Release, error) {
	data, err := b.ReadFile(ctx, ".kiln/go-start", 4096)
	if err != nil {
		return Release{}, err
	}
	rel := Release{ProcessTypes: map[string]string{}}
	if start := strings.TrimSpace(string(data)); start != "" {
		rel.ProcessTypes["web"] = start
	}
	return rel, nil
}

type goMain struct{ importPath, module string }

func parseGoMains(out string) []goMain {
	var mains []goMain
	for _, line := range strings.Split(out, "\n") {
		ip, mod, ok := strings.Cut(strings.TrimSpace(line), "\t")
		if ok && ip != "" {
			mains = append(mains, goMain{ip, mod})
		}
	}
	sort.Slice(mains, func(i, j int) bool { return mains[i].importPath < mains[j].importPath })
	return mains
}

var majorVersion = regexp.MustCompile(`^v[0-9]+$`)

// goBinaryName is the name "go build -o dir/" gives a main package's
// binary: the last element of its import path, skipping a major version
// suffix.
func goBinaryName(importPath string) string {
	base := path.Base(importPath)
	if majorVersion.MatchString(base) && path.Dir(importPath) != "." {
		base = path.Base(path.Dir(importPath))
	}
	return base
}

// goStart picks the start command: the root main package, else the only
// one, else none (the app needs a Procfile).
func goStart(mains []goMain) string {
	for _, m := range mains {
		if m.importPath == m.module {
			return "./bin/" + goBinaryName(m.importPath)
		}
	}
	if len(mains) == 1 {
		return "./bin/" + goBinaryName(mains[0].importPath)
	}
	return ""
}
