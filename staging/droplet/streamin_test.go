package droplet_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/staging/droplet"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/process"
)

func TestStreamIn(t *testing.T) {
	t.Parallel()
	cfg := process.DefaultConfig()
	cfg.Root = t.TempDir()
	b, err := process.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	app := tarOf(t, []entry{
		{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/run", typ: tar.TypeReg, body: "#!/bin/sh\necho ran\n", mode: 0o755},
		{name: "run", typ: tar.TypeSymlink, link: "bin/run"},
	})
	var good bytes.Buffer
	if _, err := droplet.Pack(&good, sampleInfo, bytes.NewReader(app)); err != nil {
		t.Fatal(err)
	}
	bad := gz(t, tarOf(t, []entry{
		{name: droplet.InfoFile, typ: tar.TypeReg, body: `{"start_command":"x"}`},
		{name: "app/ok", typ: tar.TypeReg, body: "fine"},
		{name: "app/l", typ: tar.TypeSymlink, link: "../../../etc"},
	}))
	tests := []struct {
		name    string
		droplet []byte
		wantErr error
		check   string // a file expected in the container afterwards
	}{
		{"good", good.Bytes(), nil, "app/bin/run"},
		{"bad link", bad, droplet.ErrInvalid, ""},
		{"garbage", []byte("not a droplet"), droplet.ErrInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := b.Create(ctx, warden.ContainerSpec{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = b.Destroy(context.Background(), c.Handle()) })
			info, err := droplet.StreamIn(ctx, c, "/", bytes.NewReader(tt.droplet))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("StreamIn: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if info.StartCommand != sampleInfo.StartCommand {
				t.Errorf("info = %+v", info)
			}
			ci, err := c.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(ci.Path, tt.check)); err != nil {
				t.Errorf("%s missing after StreamIn: %v", tt.check, err)
			}
			path, args := droplet.Launch(info)
			var out bytes.Buffer
			p, err := c.Run(ctx, warden.ProcessSpec{Path: path, Args: args}, warden.ProcessIO{Stdout: &out, Stderr: &out})
			if err != nil {
				t.Fatal(err)
			}
			if st, err := p.Wait(ctx); st != 0 || err != nil || out.String() != "ran\n" {
				t.Errorf("launch: status %d, %v, output %q", st, err, out.String())
			}
		})
	}
}
