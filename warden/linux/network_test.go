package linux_test

import (
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/internal/syncbuf"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/wardentest"
)

func TestConformancePrivateNetwork(t *testing.T) {
	requireHost(t)
	wardentest.Run(t, func(t *testing.T) warden.Backend {
		cfg := testConfig(t)
		cfg.PrivateNetwork = true
		return newBackend(t, cfg)
	})
}

func TestPrivateNetworkForwards(t *testing.T) {
	requireHost(t)
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 on the host base to serve with")
	}
	cfg := testConfig(t)
	cfg.PrivateNetwork = true
	b := newBackend(t, cfg)
	c := create(t, b, warden.ContainerSpec{})
	m, err := c.NetIn(testCtx(t), 0, 8080)
	if err != nil {
		t.Fatal(err)
	}
	if m.ContainerPort != 8080 || m.HostPort == 0 {
		t.Fatalf("mapping %+v", m)
	}
	// Only loopback inside.
	if st, out, _ := sh(t, c, "tail -n +3 /proc/net/dev | cut -d: -f1"); st != 0 || strings.TrimSpace(out) != "lo" {
		t.Errorf("interfaces = %d %q, want lo only", st, out)
	}
	serveOnce(t, c, m.HostPort, "host")
	// The host port is taken while mapped.
	if _, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(m.HostPort)))); err == nil {
		t.Error("mapped host port was free")
	}

	// A new backend forwards the recorded ports again.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := newBackend(t, cfg)
	c2, err := b2.Lookup(testCtx(t), c.Handle())
	if err != nil {
		t.Fatal(err)
	}
	serveOnce(t, c2, m.HostPort, "again")
}

// serveOnce runs a one-connection server on port 8080 in c and talks to it
// through hostPort.
func serveOnce(t *testing.T, c warden.Container, hostPort uint32, word string) {
	t.Helper()
	var out syncbuf.Buffer
	server := `import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8080))
s.listen()
print("ready", flush=True)
c, _ = s.accept()
c.sendall(b"hello " + c.recv(100))
c.close()`
	p, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "python3", Args: []string{"-c", server}}, warden.ProcessIO{Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "ready") {
		if time.Now().After(deadline) {
			t.Fatal("server never ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(hostPort))), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(word)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "hello "+word {
		t.Errorf("through the forwarder: %q, %v", got, err)
	}
	if st, err := p.Wait(testCtx(t)); err != nil || st != 0 {
		t.Errorf("server exited %d, %v", st, err)
	}
}
