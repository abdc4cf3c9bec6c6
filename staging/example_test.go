package staging_test

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/kiln-paas/kiln/staging"
	"github.com/kiln-paas/kiln/staging/droplet"
	"github.com/kiln-paas/kiln/warden/process"
)

// Stage a Python app in a warden/process container and read the droplet's
// metadata back, as a DEA would before running it.
func Example() {
	root, _ := os.MkdirTemp("", "warden")
	defer os.RemoveAll(root)
	wcfg := process.DefaultConfig()
	wcfg.Root = filepath.Join(root, "containers")
	backend, err := process.New(wcfg)
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()

	cfg := staging.DefaultConfig()
	cfg.Path = os.Getenv("PATH") // where the host's python3 is
	cfg.CacheDir = filepath.Join(root, "cache")
	stager, err := staging.NewStager(cfg, backend, nil)
	if err != nil {
		log.Fatal(err)
	}

	// The package, as the controller stores it: a zip of the app's files.
	var pkg bytes.Buffer
	zw := zip.NewWriter(&pkg)
	w, _ := zw.Create("app.py")
	w.Write([]byte("print('hello')\n"))
	zw.Close()

	var drop, stagingLog bytes.Buffer
	res, err := stager.Stage(context.Background(), staging.Request{
		AppID:       "42",
		Name:        "hello",
		Package:     bytes.NewReader(pkg.Bytes()),
		PackageSize: int64(pkg.Len()),
		LogWriter:   &stagingLog,
		Droplet:     &drop,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("buildpack:", res.Buildpack)
	fmt.Println("start command:", res.StartCommand)

	info, err := droplet.ReadInfo(&drop)
	if err != nil {
		log.Fatal(err)
	}
	path, args := droplet.Launch(info)
	fmt.Println("launch:", path, args[0], "<launcher script>", args[2], args[3])
	// Output:
	// buildpack: python
	// start command: python app.py
	// launch: /bin/sh -c <launcher script> kiln-launch python app.py
}
