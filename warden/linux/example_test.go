package linux_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/linux"
)

// Run an isolated process, as a DEA does. It needs root, so it does not
// run as a test; a program using the backend calls linux.Init first thing
// in main.
func Example() {
	linux.Init() // in main: a re-executed copy becomes a container init here
	if err := linux.Check(); err != nil {
		log.Printf("falling back to warden/process: %v", err)
		return
	}
	ctx := context.Background()
	root, err := os.MkdirTemp("", "kiln-containers-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	cfg := linux.DefaultConfig()
	cfg.Root = root
	b, err := linux.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	c, err := b.Create(ctx, warden.ContainerSpec{Handle: "web-0", Limits: warden.Limits{MemoryBytes: 256 << 20, FileDescriptors: 1024}})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Destroy(ctx, c.Handle())
	var out strings.Builder
	p, err := c.Run(ctx, warden.ProcessSpec{Path: "sh", Args: []string{"-c", "echo $(id -u) sees $(ls /proc | grep -c '^[0-9]') processes"}},
		warden.ProcessIO{Stdout: &out})
	if err != nil {
		log.Fatal(err)
	}
	status, _ := p.Wait(ctx)
	fmt.Print(status, " ", out.String()) // 0 10000 sees 2 processes
	if p.(linux.ExitReasoner).ExitReason() == linux.ReasonOutOfMemory {
		fmt.Println("killed for exceeding its memory limit")
	}
}
