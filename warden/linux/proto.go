package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/kiln-paas/kiln/warden"
)

// The backend and a container's init talk over a SOCK_SEQPACKET unix
// socket: one JSON request per connection, carrying the process's standard
// streams as SCM_RIGHTS file descriptors, answered by one or more JSON
// replies. Packets keep message boundaries, so descriptors always arrive
// with the request they belong to.

// maxPacket bounds one message. A request holds a process's arguments and
// environment; 1 MiB is far above what execve accepts in practice.
const maxPacket = 1 << 20

// Request operations.
const (
	opRun    = "run"    // start a process; replies started, then exited
	opWait   = "wait"   // reply once process ID has exited
	opSignal = "signal" // signal process ID's group
	opList   = "list"   // reply with every known process
)

// request is what the backend sends to a container's init.
type request struct {
	Op     string    `json:"op"`
	ID     string    `json:"id,omitempty"`
	Signal int       `json:"signal,omitempty"`
	Exec   *execSpec `json:"exec,omitempty"`
}

// execSpec describes a process to start.
type execSpec struct {
	Path string   `json:"path"`
	Args []string `json:"args,omitempty"`
	Env  []string `json:"env,omitempty"`
	// Dir is absolute inside the container.
	Dir    string `json:"dir"`
	UID    uint32 `json:"uid"`
	GID    uint32 `json:"gid"`
	NoFile uint64 `json:"nofile,omitempty"`
	// Stdio says where standard input, output and error go: streamNull,
	// streamFile (a descriptor the request carries, in stream order) or
	// streamPipe (init makes a pipe and returns the backend's end with the
	// started reply, in stream order). Pipes are made by init so that the
	// process's ends never exist in the backend, where a concurrent fork
	// (another container's init) could hold a copy and delay end-of-file.
	Stdio [3]string `json:"stdio"`
}

// Stream kinds of execSpec.Stdio.
const (
	streamNull = ""
	streamFile = "file"
	streamPipe = "pipe"
)

// count returns how many streams are of kind k.
func (e *execSpec) count(k string) int {
	n := 0
	for _, s := range e.Stdio {
		if s == k {
			n++
		}
	}
	return n
}

// Error kinds carried in replies, mapped to warden's sentinels.
const (
	kindNotFound = "not-found"
	kindExists   = "exists"
	kindDone     = "done"
	kindInvalid  = "invalid"
	kindLimit    = "limit"
)

// reply is what init answers.
type reply struct {
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
	// PID is the process's id inside the container's pid namespace.
	PID    int         `json:"pid,omitempty"`
	Exited bool        `json:"exited,omitempty"`
	Status int         `json:"status,omitempty"`
	Procs  []procEntry `json:"procs,omitempty"`
}

// procEntry is one process init knows.
type procEntry struct {
	ID     string `json:"id"`
	PID    int    `json:"pid"`
	Exited bool   `json:"exited,omitempty"`
	Status int    `json:"status,omitempty"`
}

// err turns an error reply into an error matching warden's sentinels.
func (r reply) err() error {
	if r.Error == "" {
		return nil
	}
	var sentinel error
	switch r.Kind {
	case kindNotFound:
		sentinel = warden.ErrNotFound
	case kindExists:
		sentinel = warden.ErrExists
	case kindDone:
		sentinel = warden.ErrProcessDone
	case kindInvalid:
		sentinel = warden.ErrInvalidSpec
	case kindLimit:
		sentinel = warden.ErrLimitExceeded
	default:
		return errors.New(r.Error)
	}
	return fmt.Errorf("%s: %w", r.Error, sentinel)
}

// decodeRequest parses a request packet.
func decodeRequest(b []byte) (request, error) {
	var r request
	if err := json.Unmarshal(b, &r); err != nil {
		return request{}, fmt.Errorf("decode request: %w", err)
	}
	switch r.Op {
	case opRun:
		if r.Exec == nil || r.Exec.Path == "" || r.ID == "" {
			return request{}, fmt.Errorf("decode request: run without id or program: %w", warden.ErrInvalidSpec)
		}
		for _, k := range r.Exec.Stdio {
			if k != streamNull && k != streamFile && k != streamPipe {
				return request{}, fmt.Errorf("decode request: stream kind %q: %w", k, warden.ErrInvalidSpec)
			}
		}
	case opWait, opSignal:
		if r.ID == "" {
			return request{}, fmt.Errorf("decode request: %s without id: %w", r.Op, warden.ErrInvalidSpec)
		}
	case opList:
	default:
		return request{}, fmt.Errorf("decode request: unknown op %q: %w", r.Op, warden.ErrInvalidSpec)
	}
	return r, nil
}

// decodeReply parses a reply packet.
func decodeReply(b []byte) (reply, error) {
	var r reply
	if err := json.Unmarshal(b, &r); err != nil {
		return reply{}, fmt.Errorf("decode reply: %w", err)
	}
	return r, nil
}

// send writes v as one packet, with files as SCM_RIGHTS.
func send(conn *net.UnixConn, v any, files ...*os.File) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxPacket {
		return fmt.Errorf("message of %d bytes exceeds %d: %w", len(b), maxPacket, warden.ErrInvalidSpec)
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	_, _, err = conn.WriteMsgUnix(b, oob, nil)
	return err
}

// replyBuf is the buffer size for replies: a list of processes is the
// longest, a few hundred bytes per process.
const replyBuf = 256 << 10

// recv reads one packet of at most size bytes and the descriptors it
// carries (owned by the caller, close-on-exec).
func recv(conn *net.UnixConn, size int) ([]byte, []*os.File, error) {
	buf := make([]byte, size)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, err
	}
	var files []*os.File
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, nil, fmt.Errorf("control message: %w", err)
		}
		for _, m := range msgs {
			fds, err := unix.ParseUnixRights(&m)
			if err != nil {
				continue
			}
			for _, fd := range fds {
				unix.CloseOnExec(fd)
				files = append(files, os.NewFile(uintptr(fd), "passed"))
			}
		}
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		for _, f := range files {
			f.Close()
		}
		return nil, nil, errors.New("truncated message")
	}
	if n == 0 {
		return nil, files, errors.New("empty message")
	}
	return buf[:n], files, nil
}
