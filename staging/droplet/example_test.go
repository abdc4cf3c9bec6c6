package droplet_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/kiln-paas/kiln/staging/droplet"
)

// A stager packs the compiled app with its metadata; a DEA reads the
// metadata, extracts the droplet and runs the launch command in it.
func Example() {
	src, _ := os.MkdirTemp("", "app")
	defer os.RemoveAll(src)
	_ = os.WriteFile(filepath.Join(src, "hello.txt"), []byte("hello from the droplet\n"), 0o644)

	var buf bytes.Buffer
	_, err := droplet.PackDir(&buf, droplet.Info{
		DetectedBuildpack: "static",
		StartCommand:      "cat hello.txt",
		Stack:             "linux",
	}, src)
	if err != nil {
		fmt.Println(err)
		return
	}

	info, _ := droplet.ReadInfo(bytes.NewReader(buf.Bytes()))
	fmt.Println("start command:", info.StartCommand)

	dst, _ := os.MkdirTemp("", "instance")
	defer os.RemoveAll(dst)
	if _, err := droplet.Extract(bytes.NewReader(buf.Bytes()), dst); err != nil {
		fmt.Println(err)
		return
	}
	path, args := droplet.Launch(info)
	cmd := exec.Command(path, args...)
	cmd.Dir = dst
	out, _ := cmd.Output()
	fmt.Print(string(out))
	// Output:
	// start command: cat hello.txt
	// hello from the droplet
}
