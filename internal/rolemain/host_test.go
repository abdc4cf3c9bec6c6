package rolemain

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-paas/kiln/bus/natsbus"
)

var discard = slog.New(slog.DiscardHandler)

func TestStagingConfig(t *testing.T) {
	t.Setenv("PATH", "/opt/tools")
	c := stagingConfig("/data", "/data/tmp")
	if c.CacheDir != "/data/staging-cache" || c.TempDir != "/data/tmp" {
		t.Errorf("dirs: cache %q, temp %q", c.CacheDir, c.TempDir)
	}
	// go is not on this PATH: its usual home is added for build processes.
	if want := "/opt/tools" + string(os.PathListSeparator) + "/usr/local/go/bin"; c.Path != want {
		t.Errorf("Path = %q, want %q", c.Path, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		file    string
		content string // written before LoadKey; "-" for no file
		want    string // "" for a new random key
	}{
		{name: "created", file: "new.key", content: "-"},
		{name: "empty file replaced", file: "empty.key", content: ""},
		{name: "existing kept", file: "old.key", content: "shared-secret", want: "shared-secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.file)
			if tt.content != "-" {
				if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			key, err := LoadKey(path)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != "" {
				if string(key) != tt.want {
					t.Errorf("key %q, want %q", key, tt.want)
				}
				return
			}
			if raw, err := hex.DecodeString(string(key)); err != nil || len(raw) != 32 {
				t.Errorf("key %q: want 32 hex-encoded bytes (%v)", key, err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
			}
			again, err := LoadKey(path)
			if err != nil || string(again) != string(key) {
				t.Errorf("second LoadKey = %q, %v; want the same key", again, err)
			}
		})
	}
	if _, err := LoadKey(filepath.Join(dir, "missing", "dir", "token.key")); err == nil {
		t.Error("LoadKey succeeded in a missing directory")
	}
}

func TestRandomHex(t *testing.T) {
	a, b := RandomHex(12), RandomHex(12)
	if len(a) != 24 || a == b {
		t.Errorf("RandomHex(12) = %q, %q: want 24 hex digits, different each time", a, b)
	}
}

func TestBackend(t *testing.T) {
	tests := []struct {
		kind    string
		wantErr error
	}{
		{kind: "process"},
		{kind: "docker", wantErr: ErrUnknownBackend},
		{kind: "", wantErr: ErrUnknownBackend},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			dir := t.TempDir()
			b, closeFn, err := Backend(tt.kind, dir, discard)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Backend(%q) error = %v, want %v", tt.kind, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			t.Cleanup(closeFn)
			if b == nil {
				t.Fatal("nil backend")
			}
			if _, err := os.Stat(filepath.Join(dir, "containers")); err != nil {
				t.Errorf("backend root: %v", err)
			}
		})
	}
}

func TestStager(t *testing.T) {
	dir := t.TempDir()
	s, closeFn, err := Stager(dir, filepath.Join(dir, "tmp"), discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	if s == nil {
		t.Fatal("nil stager")
	}
	if _, err := os.Stat(filepath.Join(dir, "staging")); err != nil {
		t.Errorf("staging backend root: %v", err)
	}
}

func TestConnectNATS(t *testing.T) {
	scfg := natsbus.DefaultServerConfig() // 127.0.0.1, a free port
	srv, err := natsbus.RunServer(scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)

	b, err := ConnectNATS(context.Background(), srv.ClientURL(), "test", discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if !b.Connected() {
		t.Error("not connected")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ConnectNATS(ctx, srv.ClientURL()+","+srv.ClientURL(), "test", slog.New(slog.NewTextHandler(io.Discard, nil))); !errors.Is(err, context.Canceled) {
		t.Errorf("ConnectNATS with a cancelled context: %v, want context.Canceled", err)
	}
}
