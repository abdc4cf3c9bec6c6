// Package portmap keeps the host ports that warden's host backends
// (warden/process, warden/linux) have mapped into their containers
// (warden.Container.NetIn), so that no two containers of one backend map
// the same port, and finds free ones.
package portmap

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"

	"github.com/kiln-paas/kiln/warden"
)

// Map records which container maps each host port. The zero value is an
// empty map ready to use; it is safe for concurrent use.
type Map struct {
	mu    sync.Mutex
	owner map[uint32]string // host port -> handle
}

// Claim records that the container handle maps host port, or returns an
// error matching warden.ErrExists when another mapping holds it.
func (m *Map) Claim(handle string, port uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.owner[port]; ok {
		return fmt.Errorf("host port %d mapped by %s: %w", port, h, warden.ErrExists)
	}
	m.setLocked(handle, port)
	return nil
}

func (m *Map) setLocked(handle string, port uint32) {
	if m.owner == nil {
		m.owner = map[uint32]string{}
	}
	m.owner[port] = handle
}

// Restore records the mappings of a container found after a restart; they
// replace any other container's record of the same ports.
func (m *Map) Restore(handle string, ports []warden.PortMapping) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range ports {
		m.setLocked(handle, p.HostPort)
	}
}

// Release forgets every port handle maps.
func (m *Map) Release(handle string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for port, h := range m.owner {
		if h == handle {
			delete(m.owner, port)
		}
	}
}

// Reserve finds host port on hostIP (0: a free one, see Free) and claims
// it for handle.
func (m *Map) Reserve(hostIP, handle string, port uint32) (uint32, error) {
	port, err := Free(hostIP, port)
	if err != nil {
		return 0, err
	}
	return port, m.Claim(handle, port)
}

// Free checks that TCP port (0: any the kernel picks) on hostIP can be
// listened on and returns it. A port in use returns an error matching
// warden.ErrExists. The port is released at once, so that a container's
// process can bind it; the kernel hands out ephemeral ports round-robin,
// so another program taking it in the meantime is unlikely.
func Free(hostIP string, port uint32) (uint32, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(hostIP, strconv.FormatUint(uint64(port), 10)))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return 0, fmt.Errorf("host port %d in use: %w", port, warden.ErrExists)
		}
		return 0, fmt.Errorf("find port: %w", err)
	}
	got := uint32(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return got, nil
}
