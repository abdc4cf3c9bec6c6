package staging

import (
	"context"
	"crypto/sha256"
	_ "embed" // the static file server's source
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kiln-paas/kiln/warden"
)

//go:embed internal/staticserver/main.go
var staticServerSource []byte

// staticServerPath is where static droplets hold the file server, relative
// to the app directory.
const staticServerPath = ".kiln/bin/kiln-static"

// StaticBuildpack stages static sites: apps with an index.html at the root
// or a Staticfile (usually empty; it may set "root: <dir>" to serve a
// subdirectory). The droplet serves the files with kiln's bundled static
// file server (see the package doc), which hides dot files, the
// Staticfile and the Procfile.
type StaticBuildpack struct{}

// Name implements Buildpack.
func (StaticBuildpack) Name() string { return "static" }

// Detect implements Buildpack.
func (StaticBuildpack) Detect(_ context.Context, b *Build) (string, bool, error) {
	return "static", isFile(b.Source, "Staticfile") || isFile(b.Source, "index.html"), nil
}

type staticfile struct {
	Root string `yaml:"root"`
}

func staticRoot(b *Build) (string, error) {
	data, err := readSource(b.Source, "Staticfile", 64<<10)
	if err != nil || len(strings.TrimSpace(string(data))) == 0 {
		return ".", nil
	}
	var sf staticfile
	if err := yaml.Unmarshal(data, &sf); err != nil {
		return "", fmt.Errorf("the Staticfile is not valid YAML: %w", err)
	}
	if sf.Root == "" {
		return ".", nil
	}
	root, err := warden.CleanPath(sf.Root)
	if err != nil || path.IsAbs(sf.Root) {
		return "", fmt.Errorf("the Staticfile root %q must be a directory inside the app", sf.Root)
	}
	return root, nil
}

// Compile implements Buildpack.
func (StaticBuildpack) Compile(ctx context.Context, b *Build) error {
	root, err := staticRoot(b)
	if err != nil {
		return err
	}
	bin, err := b.stager.staticServer(ctx)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("read static file server: %w", err)
	}
	b.Logf("Serving %s with kiln's static file server", root)
	return b.WriteFile(ctx, staticServerPath, data, 0o755)
}

// Release implements Buildpack.
func (StaticBuildpack) Release(_ context.Context, b *Build) (Release, error) {
	root, err := staticRoot(b)
	if err != nil {
		return Release{}, err
	}
	return Release{ProcessTypes: map[string]string{"web": "./" + staticServerPath + " -root " + shellQuote(root)}}, nil
}

// staticServer returns the host path of the static file server binary,
// building it with the host's Go toolchain the first time (per source
// hash and cache directory).
func (s *Stager) staticServer(ctx context.Context) (string, error) {
	s.staticMu.Lock()
	defer s.staticMu.Unlock()
	if s.staticBin != "" {
		if _, err := os.Stat(s.staticBin); err == nil {
			return s.staticBin, nil
		}
	}
	dir, err := s.hostCacheDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(staticServerSource)
	bin := filepath.Join(dir, "kiln-static-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(bin); err == nil {
		s.staticBin = bin
		return bin, nil
	}
	if err := s.buildStaticServer(ctx, dir, bin); err != nil {
		return "", err
	}
	s.staticBin = bin
	s.log.Info("static-server-built", "path", bin)
	return bin, nil
}

func (s *Stager) goTool() (string, error) {
	if s.cfg.GoTool != "" {
		return s.cfg.GoTool, nil
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	const fallback = "/usr/local/go/bin/go"
	if _, err := os.Stat(fallback); err == nil {
		return fallback, nil
	}
	return "", errors.New("no Go toolchain on the staging host to build the static file server")
}

func (s *Stager) buildStaticServer(ctx context.Context, dir, bin string) error {
	goBin, err := s.goTool()
	if err != nil {
		return err
	}
	src, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return fmt.Errorf("build static file server: %w", err)
	}
	defer os.RemoveAll(src)
	if err := os.WriteFile(filepath.Join(src, "main.go"), staticServerSource, 0o644); err != nil {
		return fmt.Errorf("build static file server: %w", err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module kiln-static\n\ngo 1.22\n"), 0o644); err != nil {
		return fmt.Errorf("build static file server: %w", err)
	}
	out := filepath.Join(src, "kiln-static")
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build static file server: %w\n%s", err, msg)
	}
	// Rename is atomic: concurrent stagers sharing the directory see the
	// whole binary or none.
	if err := os.Rename(out, bin); err != nil {
		return fmt.Errorf("build static file server: %w", err)
	}
	return nil
}
