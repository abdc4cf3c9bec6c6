package process_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/process"
)

// Run a host process in a container directory, then find it again from a
// second Backend, as a restarted DEA would.
func Example() {
	ctx := context.Background()
	root, _ := os.MkdirTemp("", "kiln-warden-example-")
	defer os.RemoveAll(root)

	cfg := process.DefaultConfig()
	cfg.Root = root
	b, err := process.New(cfg)
	if err != nil {
		panic(err)
	}
	c, _ := b.Create(ctx, warden.ContainerSpec{Handle: "web-0", Properties: warden.Properties{"app": "web"}})
	var out strings.Builder
	p, _ := c.Run(ctx, warden.ProcessSpec{Path: "sh", Args: []string{"-c", "echo hello from $(pwd | xargs basename)"}},
		warden.ProcessIO{Stdout: &out})
	status, _ := p.Wait(ctx)
	fmt.Print(status, " ", out.String())

	_, _ = c.Run(ctx, warden.ProcessSpec{ID: "server", Path: "sleep", Args: []string{"100"}, StdoutPath: "logs/stdout"}, warden.ProcessIO{})
	_ = b.Close() // the sleeper keeps running

	b2, _ := process.New(cfg)
	defer b2.Close()
	found, _ := b2.Containers(ctx, warden.Properties{"app": "web"})
	info, _ := found[0].Info(ctx)
	fmt.Println(info.Handle, info.ProcessIDs)
	_ = b2.Destroy(ctx, "web-0")
	// Output:
	// 0 hello from rootfs
	// web-0 [server]
}
