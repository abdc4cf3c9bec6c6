package natsbus

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/bustest"
)

// runExternalServer starts the nats-server binary named by
// KILN_TEST_NATS_SERVER (CI installs Debian's) on a free loopback port, as a
// production deployment would run it, and stops it with the test. It skips
// the test when the variable is empty.
func runExternalServer(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("KILN_TEST_NATS_SERVER")
	if bin == "" {
		t.Skip("KILN_TEST_NATS_SERVER not set: no external nats-server to test against")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("external nats-server did not listen on %s: %s", addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "nats://" + addr
}

// TestConformanceExternalServer runs the conformance suite over a real,
// separately running nats-server process.
func TestConformanceExternalServer(t *testing.T) {
	bustest.Run(t, func(t *testing.T) (a, b bus.Bus) {
		url := runExternalServer(t)
		return connectT(t, testConfig(url)), connectT(t, testConfig(url))
	})
}
