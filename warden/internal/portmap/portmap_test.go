package portmap

import (
	"errors"
	"net"
	"strconv"
	"testing"

	"github.com/kiln-paas/kiln/warden"
)

func TestClaimRelease(t *testing.T) {
	var m Map
	if err := m.Claim("a", 1000); err != nil {
		t.Fatal(err)
	}
	if err := m.Claim("b", 1000); !errors.Is(err, warden.ErrExists) {
		t.Errorf("Claim of a held port = %v, want ErrExists", err)
	}
	if err := m.Claim("a", 1000); !errors.Is(err, warden.ErrExists) {
		t.Errorf("second Claim by the same container = %v, want ErrExists", err)
	}
	if err := m.Claim("b", 1001); err != nil {
		t.Fatal(err)
	}
	m.Release("a")
	if err := m.Claim("b", 1000); err != nil {
		t.Errorf("Claim after Release = %v", err)
	}
	if err := m.Claim("c", 1001); !errors.Is(err, warden.ErrExists) {
		t.Errorf("Claim of b's other port by c = %v, want ErrExists", err)
	}
}

func TestRestore(t *testing.T) {
	var m Map
	m.Restore("a", []warden.PortMapping{{HostPort: 1, ContainerPort: 1}, {HostPort: 2, ContainerPort: 8080}})
	m.Restore("b", []warden.PortMapping{{HostPort: 2, ContainerPort: 2}}) // a later record wins
	for port, want := range map[uint32]error{1: warden.ErrExists, 2: warden.ErrExists, 3: nil} {
		if err := m.Claim("c", port); !errors.Is(err, want) {
			t.Errorf("Claim(%d) = %v, want %v", port, err, want)
		}
	}
	m.Release("b")
	if err := m.Claim("c", 2); err != nil {
		t.Errorf("port 2 still held after releasing b: %v", err)
	}
}

func TestFreeAndReserve(t *testing.T) {
	port, err := Free("127.0.0.1", 0)
	if err != nil || port == 0 {
		t.Fatalf("Free = %d, %v", port, err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if _, err := Free("127.0.0.1", port); !errors.Is(err, warden.ErrExists) {
		t.Errorf("Free of a port in use = %v, want ErrExists", err)
	}
	var m Map
	got, err := m.Reserve("127.0.0.1", "a", 0)
	if err != nil || got == 0 {
		t.Fatalf("Reserve = %d, %v", got, err)
	}
	if err := m.Claim("b", got); !errors.Is(err, warden.ErrExists) {
		t.Errorf("reserved port not claimed: %v", err)
	}
	if _, err := Free("not-an-ip", 0); err == nil || errors.Is(err, warden.ErrExists) {
		t.Errorf("Free on a bad address = %v", err)
	}
}
