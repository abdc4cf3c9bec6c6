package linux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-paas/kiln/warden"
)

// With Config.PrivateNetwork each container has its own network namespace
// holding only a loopback interface, and NetIn forwards in user space: the
// backend listens on Config.HostIP:hostPort and, for each connection,
// dials 127.0.0.1:containerPort from inside the container's namespace and
// copies both ways. It costs two goroutines and a copy of every byte per
// connection, but needs no veth pairs, bridges or NAT rules, and the
// container cannot reach the host's interfaces or other containers at all
// (it has no outbound network either).

// forwarder serves one container's port mappings.
type forwarder struct {
	netns *os.File // the container's /proc/<init>/ns/net

	mu     sync.Mutex
	lns    []net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newForwarder(initPID int) (*forwarder, error) {
	ns, err := os.Open("/proc/" + strconv.Itoa(initPID) + "/ns/net")
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	return &forwarder{netns: ns, conns: map[net.Conn]struct{}{}}, nil
}

// listen reserves hostIP:hostPort (0: a free port) and forwards it to
// containerPort (0: the same number) inside the container.
func (f *forwarder) listen(hostIP string, hostPort, containerPort uint32) (warden.PortMapping, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(hostIP, strconv.FormatUint(uint64(hostPort), 10)))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return warden.PortMapping{}, fmt.Errorf("host port %d in use: %w", hostPort, warden.ErrExists)
		}
		return warden.PortMapping{}, fmt.Errorf("listen: %w", err)
	}
	m := warden.PortMapping{HostPort: uint32(ln.Addr().(*net.TCPAddr).Port), ContainerPort: containerPort}
	if m.ContainerPort == 0 {
		m.ContainerPort = m.HostPort
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		ln.Close()
		return warden.PortMapping{}, warden.ErrStopped
	}
	f.lns = append(f.lns, ln)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.serve(ln, m.ContainerPort) // ends when close closes ln
	}()
	return m, nil
}

func (f *forwarder) serve(ln net.Listener, port uint32) {
	for {
		in, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		if !f.track(in) {
			in.Close()
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(in)
			f.pipe(in, port)
		}()
	}
}

func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
	c.Close()
}

// pipe connects one accepted connection to the container's port.
func (f *forwarder) pipe(in net.Conn, port uint32) {
	out, err := f.dial(port)
	if err != nil {
		return // the client sees its connection closed, as with nothing listening
	}
	if !f.track(out) {
		out.Close()
		return
	}
	defer f.untrack(out)
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite() // pass the end of the stream on
		}
		done <- struct{}{}
	}
	go cp(out, in) // ends when in ends or is closed
	cp(in, out)
	<-done
}

// dial connects to 127.0.0.1:port inside the container's namespace: the
// socket is created by a thread that has joined the namespace (a socket
// stays in the namespace it was created in), which then returns to the
// host's.
func (f *forwarder) dial(port uint32) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		host, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer host.Close()
		if err := unix.Setns(int(f.netns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("join network namespace: %w", err)}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.FormatUint(uint64(port), 10)))
		if unix.Setns(int(host.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and dies with this goroutine
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// close stops forwarding: listeners and connections are closed and their
// goroutines waited for.
func (f *forwarder) close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	for _, ln := range f.lns {
		ln.Close()
	}
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	f.netns.Close()
}
