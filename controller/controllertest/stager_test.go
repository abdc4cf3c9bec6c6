package controllertest

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/staging"
	"github.com/kiln-paas/kiln/staging/droplet"
)

// zipOf builds an app package holding files.
func zipOf(t *testing.T, files map[string]string) *bytes.Reader {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for name, content := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b.Bytes())
}

func TestStager(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		files   map[string]string
		wantLog string
		wantErr bool
	}{
		{"packs", map[string]string{"run": "#!/bin/sh", "lib/a.txt": "a"}, "-----> test buildpack: 2 files\n", false},
		{"fails", map[string]string{"FAIL": "x"}, "-----> FAIL file found\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Stager
			pkg := zipOf(t, tt.files)
			var drop, log bytes.Buffer
			res, err := s.Stage(context.Background(), staging.Request{Package: pkg, PackageSize: pkg.Size(), Droplet: &drop, LogWriter: &log})
			if log.String() != tt.wantLog {
				t.Errorf("log = %q, want %q", log.String(), tt.wantLog)
			}
			if s.Stagings() != 1 {
				t.Errorf("Stagings() = %d, want 1", s.Stagings())
			}
			if tt.wantErr {
				var ce *staging.CompileError
				if !errors.As(err, &ce) || ce.Buildpack != Buildpack {
					t.Fatalf("err = %v, want a CompileError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			info, err := droplet.ReadInfo(&drop)
			if err != nil {
				t.Fatal(err)
			}
			want := droplet.Info{DetectedBuildpack: Buildpack, StartCommand: "./run", Stack: "linux"}
			if d := cmp.Diff(want, info); d != "" {
				t.Errorf("droplet info (-want +got):\n%s", d)
			}
			if res.Buildpack != Buildpack || res.DropletSHA1 == "" || res.DropletSize == 0 {
				t.Errorf("result = %+v", res)
			}
		})
	}
}

func TestStagerBadInput(t *testing.T) {
	t.Parallel()
	var s Stager
	var drop bytes.Buffer
	junk := strings.NewReader("not a zip")
	if _, err := s.Stage(context.Background(), staging.Request{Package: junk, PackageSize: junk.Size(), Droplet: &drop}); !errors.Is(err, staging.ErrBadPackage) {
		t.Errorf("junk package: %v, want ErrBadPackage", err)
	}
	pkg := zipOf(t, map[string]string{"a": "b"})
	if _, err := s.Stage(context.Background(), staging.Request{Package: pkg, PackageSize: pkg.Size()}); err == nil {
		t.Error("no droplet writer: want an error")
	}
}

func TestStagerHold(t *testing.T) {
	t.Parallel()
	var s Stager
	gate := make(chan struct{})
	s.Hold(gate)
	pkg := zipOf(t, map[string]string{"a": "b"})
	var drop bytes.Buffer
	// An ended context releases a held staging.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := s.Stage(ctx, staging.Request{Package: pkg, PackageSize: pkg.Size(), Droplet: &drop}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("held staging: %v, want deadline exceeded", err)
	}
	close(gate)
	var log bytes.Buffer
	if _, err := s.Stage(context.Background(), staging.Request{Package: pkg, PackageSize: pkg.Size(), Droplet: &drop, LogWriter: &log}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(log.String(), "-----> waiting at the gate\n") {
		t.Errorf("log = %q", log.String())
	}
	s.Hold(nil)
}
