package staging_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/internal/syncbuf"
	"github.com/kiln-paas/kiln/staging"
)

// writeBuildpack writes a shell-script buildpack into dir.
func writeBuildpack(t testing.TB, dir, detect, compile, release string) string {
	t.Helper()
	for name, body := range map[string]string{"detect": detect, "compile": compile, "release": release} {
		p := filepath.Join(dir, "bin", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func externalBuildpack(t testing.TB, name, detect, compile, release string) staging.Buildpack {
	t.Helper()
	bp, err := staging.External(name, writeBuildpack(t, t.TempDir(), detect, compile, release))
	if err != nil {
		t.Fatal(err)
	}
	return bp
}

func TestStageFailures(t *testing.T) {
	t.Parallel()
	backend := newBackend(t)
	hang := externalBuildpack(t, "hang", "echo hang", "exec sleep 60", "echo 'default_process_types: {web: x}'")
	garbage := externalBuildpack(t, "garbage", "echo garbage", "true", "echo '{{{ not yaml'")
	noweb := externalBuildpack(t, "noweb", "echo noweb", "true", "echo 'default_process_types: {worker: ./w}'")
	fat := externalBuildpack(t, "fat", "echo fat", `head -c 300000 /dev/urandom > "$1/blob"`, "echo 'default_process_types: {web: ./x}'")
	link := fs.ModeSymlink | 0o777
	tests := []struct {
		name       string
		zip        []byte
		buildpacks []staging.Buildpack
		req        staging.Request
		want       error
		wantInErr  string
		wantStatus int // for compile failures
		wantTail   string
	}{
		{
			name: "no buildpack: .npmignore alone is not node",
			zip:  zipOf(t, zent{name: ".npmignore", body: "test/\n"}, zent{name: "README", body: "hi"}),
			want: staging.ErrNoBuildpack, wantInErr: "tried go, nodejs, python, static, binary",
		},
		{
			name: "unknown buildpack",
			zip:  zipOf(t, zent{name: "index.html", body: "hi"}),
			req:  staging.Request{Buildpack: "cobol"},
			want: staging.ErrNoBuildpack, wantInErr: `"cobol"`,
		},
		{
			name: "go compile error",
			zip: zipOf(t, zent{name: "go.mod", body: "module example.com/broken\n\ngo 1.22\n"},
				zent{name: "main.go", body: "package main\n\nfunc main() { undefinedThing() }\n"}),
			want: staging.ErrCompileFailed, wantStatus: 1, wantTail: "undefined: undefinedThing",
		},
		{
			name: "python packages without an index",
			zip:  zipOf(t, zent{name: "app.py", body: "print(1)\n"}, zent{name: "requirements.txt", body: "# deps\nflask==3.0.0\n"}),
			want: staging.ErrCompileFailed, wantInErr: "is the Python package index reachable", wantStatus: 1,
		},
		{
			name: "node without start command",
			zip:  zipOf(t, zent{name: "package.json", body: `{"name":"x","version":"1.0.0"}`}),
			want: staging.ErrReleaseInvalid, wantInErr: "no web command",
		},
		{
			name:       "release prints invalid YAML",
			zip:        zipOf(t, zent{name: "x", body: "x"}),
			buildpacks: []staging.Buildpack{garbage},
			want:       staging.ErrReleaseInvalid, wantInErr: "invalid YAML",
		},
		{
			name:       "release without web",
			zip:        zipOf(t, zent{name: "x", body: "x"}),
			buildpacks: []staging.Buildpack{noweb},
			want:       staging.ErrReleaseInvalid,
		},
		{
			name:       "timeout",
			zip:        zipOf(t, zent{name: "x", body: "x"}),
			buildpacks: []staging.Buildpack{hang},
			req:        staging.Request{Limits: staging.Limits{Timeout: 2 * time.Second}},
			want:       staging.ErrTimeout,
		},
		{
			name:       "droplet too large",
			zip:        zipOf(t, zent{name: "x", body: "x"}),
			buildpacks: []staging.Buildpack{fat},
			req:        staging.Request{Limits: staging.Limits{MaxDropletBytes: 100_000}},
			want:       staging.ErrTooLarge,
		},
		{
			name: "package too large for the disk limit",
			zip:  zipOf(t, zent{name: "index.html", body: strings.Repeat("x", 200_000)}),
			req:  staging.Request{Limits: staging.Limits{DiskBytes: 100_000}},
			want: staging.ErrTooLarge,
		},
		{
			name: "bad package",
			zip:  zipOf(t, zent{name: "index.html", body: "x"}, zent{name: "l", body: "../../../etc/passwd", mode: link}),
			want: staging.ErrBadPackage,
		},
		{
			name: "not a zip",
			zip:  []byte("PK but not really"),
			want: staging.ErrBadPackage,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, true)
			if tt.buildpacks != nil {
				cfg.Buildpacks = tt.buildpacks
			}
			var log syncbuf.Buffer
			tt.req.LogWriter = &log
			_, _, err := stage(t, staging.New(cfg, backend, nil), tt.req, tt.zip)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Stage: %v, want %v\nlog:\n%s", err, tt.want, log.String())
			}
			t.Logf("error: %v", err)
			if tt.wantInErr != "" && !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantInErr)
			}
			var ce *staging.CompileError
			if errors.As(err, &ce) {
				if ce.ExitStatus != tt.wantStatus {
					t.Errorf("ExitStatus = %d, want %d", ce.ExitStatus, tt.wantStatus)
				}
				if tt.wantTail != "" && !strings.Contains(strings.Join(ce.LastLines, "\n"), tt.wantTail) {
					t.Errorf("LastLines %q do not contain %q", ce.LastLines, tt.wantTail)
				}
			}
		})
	}
}

// TestStageCanceled: the caller's cancellation is not reported as a
// staging timeout, and the container is gone afterwards.
func TestStageCanceled(t *testing.T) {
	t.Parallel()
	backend := newBackend(t)
	cfg := testConfig(t, false)
	started := make(chan struct{})
	cfg.Buildpacks = []staging.Buildpack{externalBuildpack(t, "hang", "echo hang", "echo started; exec sleep 60", "true")}
	s := staging.New(cfg, backend, nil)
	z := zipOf(t, zent{name: "x", body: "x"})
	ctx, cancel := context.WithCancel(context.Background())
	log := &notifyWriter{match: "started", ch: started}
	errc := make(chan error, 1)
	go func() {
		_, err := s.Stage(ctx, staging.Request{AppID: "a", Package: bytes.NewReader(z), PackageSize: int64(len(z)), Droplet: &bytes.Buffer{}, LogWriter: log})
		errc <- err
	}()
	<-started
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) || errors.Is(err, staging.ErrTimeout) {
		t.Errorf("Stage after cancel: %v, want context.Canceled", err)
	}
	cs, err := backend.Containers(context.Background(), nil)
	if err != nil || len(cs) != 0 {
		t.Errorf("containers left: %d (%v)", len(cs), err)
	}
}

type notifyWriter struct {
	match string
	ch    chan struct{}
	done  bool
}

func (n *notifyWriter) Write(p []byte) (int, error) {
	if !n.done && strings.Contains(string(p), n.match) {
		n.done = true
		close(n.ch)
	}
	return len(p), nil
}

// tgzDir packs a directory as a .tgz file.
func tgzDir(t testing.TB, dir, dst string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStageOutOfMemory: a compile step above the memory limit is killed
// and reported as a compile failure naming the limit.
func TestStageOutOfMemory(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, false)
	cfg.Buildpacks = []staging.Buildpack{externalBuildpack(t, "hog", "echo hog",
		`exec python3 -c "import time; x = bytearray(400 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(30)"`,
		"echo 'default_process_types: {web: x}'")}
	s := staging.New(cfg, newBackend(t), nil)
	_, _, err := stage(t, s, staging.Request{Limits: staging.Limits{MemoryBytes: 100 << 20}}, zipOf(t, zent{name: "x", body: "x"}))
	var ce *staging.CompileError
	if !errors.As(err, &ce) || !strings.Contains(ce.Reason, "out of memory") {
		t.Fatalf("Stage: %v, want a CompileError for out of memory", err)
	}
	t.Logf("error: %v", err)
}

// TestMetrics: each staging is counted by result.
func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, false)
	cfg.Registerer = reg
	s := staging.New(cfg, newBackend(t), nil)
	if _, _, err := stage(t, s, staging.Request{}, zipOf(t, zent{name: "README", body: "x"})); !errors.Is(err, staging.ErrNoBuildpack) {
		t.Fatalf("Stage: %v", err)
	}
	if _, _, err := stage(t, s, staging.Request{}, zipOf(t, zent{name: "app.py", body: "print(1)\n"})); err != nil {
		t.Fatalf("Stage: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "kiln_staging_stagings_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if diff := cmp.Diff(map[string]float64{"no_buildpack": 1, "ok": 1}, got); diff != "" {
		t.Errorf("stagings_total (-want +got):\n%s", diff)
	}
}
