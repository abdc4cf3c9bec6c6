package staging_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-paas/kiln/staging"
	"github.com/kiln-paas/kiln/staging/droplet"
)

// TestStageBinary stages a prebuilt executable in bin/ with a Procfile
// naming it bare ("web: hello"): the binary buildpack detects it and the
// droplet's PATH finds it.
func TestStageBinary(t *testing.T) {
	t.Parallel()
	// An executable script stands in for a compiled binary: what matters
	// is the executable bit and the Procfile, and it spares a Go build.
	app, err := os.ReadFile(filepath.Join("..", "examples", "apps", "python", "app.py"))
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "bin", "hello"), append([]byte("#!/usr/bin/python3\n"), app...), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "Procfile"), []byte("web: hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	backend := newBackend(t)
	s := staging.New(testConfig(t, true), backend, nil)
	drop, res, err := stage(t, s, staging.Request{}, zipDir(t, src))
	if err != nil {
		t.Fatal(err)
	}
	if res.Buildpack != "binary" || res.StartCommand != "hello" {
		t.Errorf("result = %+v, want binary buildpack starting hello", res)
	}
	if body := runDroplet(t, backend, drop); !strings.Contains(body, "Hello from python! instance 1, 1 service(s): mydb") {
		t.Errorf("body = %q", body)
	}
}

// TestProcfileOverrides: a Procfile web: line replaces the buildpack's
// start command and "python" in it runs the staged interpreter.
func TestProcfileOverrides(t *testing.T) {
	t.Parallel()
	app, err := os.ReadFile(filepath.Join("..", "examples", "apps", "python", "app.py"))
	if err != nil {
		t.Fatal(err)
	}
	z := zipOf(t,
		zent{name: "server.py", body: string(app)},
		zent{name: "Procfile", body: "web: python server.py\nworker: python -c 'print(1)'\n"},
	)
	backend := newBackend(t)
	s := staging.New(testConfig(t, true), backend, nil)
	drop, res, err := stage(t, s, staging.Request{}, z)
	if err != nil {
		t.Fatal(err)
	}
	if res.Buildpack != "python" || res.StartCommand != "python server.py" || res.ProcessTypes["worker"] == "" {
		t.Errorf("result = %+v", res)
	}
	if body := runDroplet(t, backend, drop); !strings.Contains(body, "Hello from python! instance 1, 1 service(s): mydb") {
		t.Errorf("body = %q", body)
	}
}

// TestBuildpackChoice: a requested buildpack is used without detection
// order mattering.
func TestBuildpackChoice(t *testing.T) {
	t.Parallel()
	z := zipOf(t, zent{name: "index.html", body: "<h1>hi</h1>"}, zent{name: "app.py", body: "print(1)\n"})
	s := staging.New(testConfig(t, true), newBackend(t), nil)
	_, res, err := stage(t, s, staging.Request{}, z)
	if err != nil || res.Buildpack != "python" {
		t.Fatalf("detected %q (%v), want python first", res.Buildpack, err)
	}
	drop, res, err := stage(t, s, staging.Request{Buildpack: "static"}, z)
	if err != nil || res.Buildpack != "static" {
		t.Fatalf("chose %q (%v), want static", res.Buildpack, err)
	}
	files, err := droplet.Files(bytes.NewReader(drop))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(files, " "), ".kiln/bin/kiln-static") {
		t.Errorf("static droplet lacks the file server: %v", files)
	}
}

// TestDropletToTempFile: without Request.Droplet the droplet lands in a
// temporary file whose hash the result reports.
func TestDropletToTempFile(t *testing.T) {
	t.Parallel()
	z := zipOf(t, zent{name: "app.py", body: "print(1)\n"})
	s := staging.New(testConfig(t, true), newBackend(t), nil)
	res, err := s.Stage(t.Context(), staging.Request{AppID: "tmp", Package: bytes.NewReader(z), PackageSize: int64(len(z))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(res.DropletPath) })
	f, err := os.Open(res.DropletPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := io.Copy(io.Discard, f)
	if err != nil || n != res.DropletSize || res.DropletSHA1 == "" {
		t.Errorf("droplet file holds %d bytes (%v), result says %d, sha1 %q", n, err, res.DropletSize, res.DropletSHA1)
	}
}
