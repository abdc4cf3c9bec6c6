package staging_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/internal/syncbuf"
	"github.com/kiln-paas/kiln/staging"
	"github.com/kiln-paas/kiln/staging/droplet"
)

// A buildpack in shell: detects apps with a kiln.txt, counts its runs in
// the build cache, writes a start script, and releases it.
const (
	shDetect  = `[ -f "$1/kiln.txt" ] && echo "Kiln Text" && exit 0; exit 1`
	shCompile = `set -e
echo "compiling in $1 with cache $2"
n=$(cat "$2/runs" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$2/runs"
mkdir -p "$1/bin"
printf '#!/bin/sh\necho "runs=%s text=$(cat kiln.txt)"\n' "$n" > "$1/bin/show"
chmod +x "$1/bin/show"`
	shRelease = `cat <<'YAML'
---
config_vars: {}
default_process_types:
  web: show
  worker: show --worker
YAML`
)

func TestExternalBuildpack(t *testing.T) {
	t.Parallel()
	dir := writeBuildpack(t, filepath.Join(t.TempDir(), "kiln-text-buildpack"), shDetect, shCompile, shRelease)
	if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte("1.2.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tgz := filepath.Join(t.TempDir(), "bp.tgz")
	// Archives usually hold one top-level directory.
	tgzDir(t, filepath.Dir(dir), tgz)
	zipPath := filepath.Join(t.TempDir(), "bp.zip")
	if err := os.WriteFile(zipPath, zipDir(t, dir), 0o644); err != nil {
		t.Fatal(err)
	}
	backend := newBackend(t)
	for _, src := range []struct{ name, path string }{{"dir", dir}, {"tgz", tgz}, {"zip", zipPath}} {
		t.Run(src.name, func(t *testing.T) {
			t.Parallel()
			bp, err := staging.External("text", src.path)
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(t, false)
			cfg.Buildpacks = append([]staging.Buildpack{bp}, staging.Builtins()...)
			s := staging.New(cfg, backend, nil)
			z := zipOf(t, zent{name: "kiln.txt", body: "hello"}, zent{name: "index.html", body: "not chosen: text detects first"})

			var cache bytes.Buffer
			var log syncbuf.Buffer
			drop, res, err := stage(t, s, staging.Request{CacheOut: &cache, LogWriter: &log}, z)
			if err != nil {
				t.Fatalf("Stage: %v\n%s", err, log.String())
			}
			want := staging.Result{
				DetectedBuildpack: "Kiln Text", Buildpack: "text", BuildpackVersion: "1.2.3",
				StartCommand: "show", ProcessTypes: map[string]string{"web": "show", "worker": "show --worker"},
				Stack: "linux", DropletSHA1: res.DropletSHA1, DropletSize: int64(len(drop)), CacheSize: int64(cache.Len()),
				Duration: res.Duration,
			}
			if diff := cmp.Diff(want, res); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if !strings.Contains(log.String(), "compiling in ") {
				t.Errorf("compile output missing from the log:\n%s", log.String())
			}
			if got := launch(t, drop); got != "runs=1 text=hello\n" {
				t.Errorf("first droplet says %q", got)
			}

			// Restage with the cache: the buildpack sees its previous run.
			drop2, _, err := stage(t, s, staging.Request{CacheIn: bytes.NewReader(cache.Bytes())}, z)
			if err != nil {
				t.Fatal(err)
			}
			if got := launch(t, drop2); got != "runs=2 text=hello\n" {
				t.Errorf("second droplet says %q", got)
			}
		})
	}
}

// launch extracts the droplet to a temp dir and runs its start command
// with the host's shell, returning its output.
func launch(t *testing.T, drop []byte) string {
	t.Helper()
	dir := t.TempDir()
	info, err := droplet.Extract(bytes.NewReader(drop), dir)
	if err != nil {
		t.Fatal(err)
	}
	path, args := droplet.Launch(info)
	out, err := runIn(dir, path, args...)
	if err != nil {
		t.Fatalf("launch: %v\n%s", err, out)
	}
	return out
}

func TestExternalRejects(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	if _, err := staging.External("x", empty); err == nil {
		t.Error("External accepted a directory without bin/compile")
	}
	if _, err := staging.External("x", filepath.Join(empty, "missing.tgz")); err == nil {
		t.Error("External accepted a missing archive")
	}
	dir := writeBuildpack(t, t.TempDir(), "true", "true", "true")
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "bin", "evil")); err != nil {
		t.Fatal(err)
	}
	if _, err := staging.External("x", dir); err == nil {
		t.Error("External accepted a link pointing out")
	}
}
