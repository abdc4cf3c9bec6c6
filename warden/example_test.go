package warden_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/fake"
)

// startInstance is how a DEA uses any Backend: create a container, map a
// port, run the start command with PORT set, and stop it gracefully.
func startInstance(ctx context.Context, b warden.Backend, handle string) (int, error) {
	c, err := b.Create(ctx, warden.ContainerSpec{Handle: handle, Properties: warden.Properties{"instance": handle}})
	if err != nil {
		return 0, fmt.Errorf("create: %w", err)
	}
	defer func() { _ = b.Destroy(context.WithoutCancel(ctx), handle) }()
	port, err := c.NetIn(ctx, 0, 0)
	if err != nil {
		return 0, err
	}
	var out strings.Builder
	p, err := c.Run(ctx, warden.ProcessSpec{
		Path: "sh",
		Args: []string{"-c", "echo starting on $PORT > /dev/null; echo up; sleep 100"},
		Env:  []string{fmt.Sprintf("PORT=%d", port.ContainerPort)},
	}, warden.ProcessIO{Stdout: &out})
	if err != nil {
		return 0, err
	}
	if err := c.Stop(ctx, 10*time.Second); err != nil {
		return 0, err
	}
	return p.Wait(ctx)
}

func Example() {
	ctx := context.Background()
	b, _ := fake.New(fake.DefaultConfig())
	defer b.Close()
	status, err := startInstance(ctx, b, "app-1-0")
	fmt.Println(status, err)

	// Errors are typed: callers decide with errors.Is.
	_, err = b.Lookup(ctx, "app-1-0")
	fmt.Println(errors.Is(err, warden.ErrNotFound))
	// Output:
	// 143 <nil>
	// true
}

func ExampleCleanPath() {
	for _, p := range []string{"/home/vcap/app/", "logs/../tmp", "../../etc/passwd"} {
		clean, err := warden.CleanPath(p)
		fmt.Printf("%q %q %v\n", p, clean, errors.Is(err, warden.ErrInvalidPath))
	}
	// Output:
	// "/home/vcap/app/" "home/vcap/app" false
	// "logs/../tmp" "tmp" false
	// "../../etc/passwd" "" true
}
