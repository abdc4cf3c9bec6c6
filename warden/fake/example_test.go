package fake_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/fake"
)

// A DEA test runs an "app" in the fake: it binds its mapped port on
// loopback and answers HTTP, so health checks and routing work for real.
func Example() {
	ctx := context.Background()
	b, err := fake.New(fake.DefaultConfig())
	if err != nil {
		panic(err)
	}
	defer b.Close()

	c, _ := b.Create(ctx, warden.ContainerSpec{Handle: "web-0", Env: []string{"INSTANCE_INDEX=0"}})
	port, _ := c.NetIn(ctx, 0, 0)
	_, _ = c.Run(ctx, warden.ProcessSpec{Path: "/home/vcap/app/start"}, warden.ProcessIO{})

	url := "http://127.0.0.1:" + strconv.Itoa(int(port.HostPort)) + "/hello"
	// The fake binds asynchronously, like a real app: poll, with a
	// deadline generous enough for a loaded machine.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		resp, err := http.Get(url)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Print(resp.StatusCode, " ", string(body))
		break
	}
	_ = c.Stop(ctx, time.Second)
	// Output: 200 {"handle":"web-0","instance_index":"0","path":"/hello"}
}

// Scripts make processes misbehave on purpose: here an app that crashes.
func ExampleBackend_Script() {
	ctx := context.Background()
	b, _ := fake.New(fake.DefaultConfig())
	defer b.Close()
	b.Script(fake.ForProgram("./start", fake.Behavior{Stderr: "panic: boom\n", Exit: true, ExitStatus: 2}))

	c, _ := b.Create(ctx, warden.ContainerSpec{})
	var stderr strings.Builder
	p, _ := c.Run(ctx, warden.ProcessSpec{Path: "./start"}, warden.ProcessIO{Stderr: &stderr})
	status, _ := p.Wait(ctx)
	fmt.Printf("exit %d: %s", status, stderr.String())
	// Output: exit 2: panic: boom
}

// The shell vocabulary runs small scripts in memory.
func ExampleBackend_shell() {
	ctx := context.Background()
	b, _ := fake.New(fake.DefaultConfig())
	defer b.Close()

	c, _ := b.Create(ctx, warden.ContainerSpec{Env: []string{"NAME=kiln"}})
	var out strings.Builder
	p, _ := c.Run(ctx, warden.ProcessSpec{Path: "sh", Args: []string{"-c", "echo hello $NAME > greeting; cat greeting; pwd"}},
		warden.ProcessIO{Stdout: &out})
	status, _ := p.Wait(ctx)
	fmt.Print(status, "\n", out.String())
	// Output:
	// 0
	// hello kiln
	// /
}
