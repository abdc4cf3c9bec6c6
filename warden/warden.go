// Package warden defines kiln's container backend: the narrow contract a DEA
// (and staging) use to run applications in isolation, after the original
// warden and its successor garden.
//
// A Backend creates, finds, lists and destroys Containers. A Container holds
// a private file tree (filled and read with tar streams), runs Processes with
// their own environment, working directory, user and stdio, maps host ports
// to the ports its processes listen on, enforces limits (memory, disk, file
// descriptors) and reports its state, usage and events. Stopping a container
// sends SIGTERM to every process it runs, waits a grace period, then kills
// whatever is left, including grandchildren.
//
// Implementations: warden/fake (in memory, scriptable, for tests),
// warden/process (plain host processes, no root needed) and warden/linux
// (namespaces and cgroups). warden/wardentest holds the conformance suite
// every implementation passes.
//
// Paths inside a container are slash-separated and relative to the
// container's root; a leading "/" is allowed and means the root. A path that
// would leave the root ("..", symbolic links pointing out) is rejected with
// an error matching ErrInvalidPath. See CleanPath.
//
// Errors returned by implementations wrap the sentinel errors in errors.go so
// callers can decide with errors.Is.
package warden

import (
	"context"
	"io"
	"strconv"
	"time"
)

// Backend creates and tracks containers. Every method is safe for concurrent
// use.
type Backend interface {
	// Create makes a new, active container from spec. An empty spec.Handle is
	// replaced by a generated, unique one. Creating a handle that exists
	// returns ErrExists; an invalid spec returns ErrInvalidSpec; exceeding the
	// backend's capacity (MaxContainers) returns ErrLimitExceeded.
	Create(ctx context.Context, spec ContainerSpec) (Container, error)
	// Lookup returns the container with handle, or ErrNotFound.
	Lookup(ctx context.Context, handle string) (Container, error)
	// Containers lists the containers whose properties include every
	// key/value pair of match (nil or empty match lists all), in no
	// particular order. Containers found on disk after a restart of the
	// creating program are included when the backend can reattach to them.
	Containers(ctx context.Context, match Properties) ([]Container, error)
	// Destroy kills every process of the container at once (no grace),
	// releases its ports and removes its files. Destroying a handle that
	// does not exist (or no longer exists) returns nil, so callers may retry.
	// A destroyed Container value returns ErrNotFound from every method
	// except Handle.
	Destroy(ctx context.Context, handle string) error
	// Capacity reports what the backend can hold in total.
	Capacity(ctx context.Context) (Capacity, error)
}

// Container is one isolated unit of files, processes and ports. Every method
// is safe for concurrent use.
type Container interface {
	// Handle returns the container's unique name. It never blocks or fails.
	Handle() string

	// StreamIn extracts the tar archive read from r into the directory dst
	// (created when missing). Directories, regular files and symbolic links
	// are supported; an entry whose name is absolute or leaves dst, a link
	// whose target is absolute or points out of the container, and any write
	// through a link that leaves the container return ErrInvalidPath; other
	// entry types return an error matching errors.ErrUnsupported. Exceeding
	// the disk limit returns ErrLimitExceeded. Entries extracted before an
	// error stay in place. Works on stopped containers.
	StreamIn(ctx context.Context, dst string, r io.Reader) error
	// StreamOut returns a tar archive of src. For a directory the archive
	// holds its contents with names relative to src (so StreamIn of the
	// result into another directory copies the tree); for a file it holds
	// one entry named after the file's base name. Symbolic links are stored
	// as links, never followed. A missing src returns ErrNotFound. Works on
	// stopped containers. The caller must Close the reader; errors met while
	// producing the archive are returned by Read.
	StreamOut(ctx context.Context, src string) (io.ReadCloser, error)

	// Run starts a process. It returns once the process is started, not when
	// it exits. Run on a stopped container returns ErrStopped; a spec.ID
	// already used in this container returns ErrExists.
	Run(ctx context.Context, spec ProcessSpec, pio ProcessIO) (Process, error)
	// Attach returns the process with id (one listed in Info.ProcessIDs),
	// for example after the caller restarted. Output produced before Attach
	// is not replayed to pio; implementations that cannot reconnect stdio to
	// a running process ignore pio (spec.StdoutPath and StderrPath keep
	// working). Unknown ids return ErrNotFound.
	Attach(ctx context.Context, id string, pio ProcessIO) (Process, error)

	// NetIn maps hostPort on the backend's host address (Info.HostIP) to
	// containerPort inside the container. Zero for either asks the backend
	// to choose a free port; backends without network isolation choose the
	// same number for both, so the process must listen on the returned
	// ContainerPort (callers pass it as the PORT environment variable). A
	// host port in use returns ErrExists; NetIn on a stopped container
	// returns ErrStopped.
	NetIn(ctx context.Context, hostPort, containerPort uint32) (PortMapping, error)

	// SetLimits replaces the container's limits (zero fields mean
	// unlimited). Limits apply to processes started afterwards and, where
	// the backend can, to running ones. A limit the backend cannot enforce
	// at all is still recorded and reported by Info.
	SetLimits(ctx context.Context, limits Limits) error

	// Info reports the container's state, processes, ports, limits, usage
	// and events.
	Info(ctx context.Context) (ContainerInfo, error)

	// Stop sends SIGTERM to every process of the container (the whole tree,
	// grandchildren included), waits up to grace for them to exit, then
	// sends SIGKILL to whatever is left and waits for it to go. Afterwards
	// the container is stopped: its files can still be streamed, but Run
	// and NetIn return ErrStopped. A grace of zero kills at once. Stopping a
	// stopped container returns nil. If ctx ends first Stop kills at once
	// and returns ctx's error.
	Stop(ctx context.Context, grace time.Duration) error
}

// Process is one process running (or having run) in a container. Every
// method is safe for concurrent use.
type Process interface {
	// ID returns the process's identifier, unique within its container.
	ID() string
	// Wait blocks until the process exits and returns its exit status, or
	// ctx's error if ctx ends first. A process killed by signal n exits
	// with status 128+n (143 for SIGTERM, 137 for SIGKILL), as shells
	// report it. When the backend cannot know the status (a process
	// reattached after a restart is not the backend's child), Wait returns
	// ExitStatusUnknown and a nil error once the process is gone. Wait may
	// be called any number of times.
	Wait(ctx context.Context) (int, error)
	// Signal delivers sig to the process and its descendants. Signalling a
	// process that has exited returns ErrProcessDone.
	Signal(ctx context.Context, sig Signal) error
}

// ExitStatusUnknown is the status Wait reports for a process that exited
// while the backend could not observe its status.
const ExitStatusUnknown = -1

// Properties are free-form key/value labels attached to a container at
// creation (for example the DEA's instance id), returned by Info and
// matched by Backend.Containers.
type Properties map[string]string

// ContainerSpec describes a container to create.
type ContainerSpec struct {
	// Handle names the container; empty means generate one. A handle is 1
	// to 128 characters from [A-Za-z0-9._-] and does not start with a dot
	// (see ValidateHandle).
	Handle string
	// Properties label the container.
	Properties Properties
	// Env ("KEY=value") is given to every process, before ProcessSpec.Env
	// (which wins on duplicate keys).
	Env []string
	// Limits are the initial limits (zero fields mean unlimited).
	Limits Limits
}

// Limits bound a container's resources. Zero means unlimited.
type Limits struct {
	// MemoryBytes bounds the resident memory of all processes together.
	// Exceeding it kills the processes and records EventOutOfMemory.
	MemoryBytes uint64
	// DiskBytes bounds the total size of the container's files. StreamIn
	// past it fails with ErrLimitExceeded.
	DiskBytes uint64
	// FileDescriptors bounds the open files of each process
	// (RLIMIT_NOFILE).
	FileDescriptors uint64
}

// Capacity is what a backend can hold in total. Zero fields mean unknown or
// unbounded.
type Capacity struct {
	// MemoryBytes is the host memory available to containers.
	MemoryBytes uint64
	// DiskBytes is the disk space available to containers.
	DiskBytes uint64
	// MaxContainers is the number of containers the backend accepts.
	MaxContainers int
}

// ProcessSpec describes a process to run.
type ProcessSpec struct {
	// ID names the process within its container; empty means generate one.
	ID string
	// Path is the program: a name looked up in the PATH of the process's
	// environment, or a path (relative paths resolve against Dir).
	Path string
	// Args are the arguments after the program name (argv[1:]).
	Args []string
	// Env ("KEY=value") adds to and overrides ContainerSpec.Env.
	Env []string
	// Dir is the working directory, a container path; empty means the
	// container's root. It must exist.
	Dir string
	// User runs the process as this user name; empty means the backend's
	// default. Backends that cannot switch users return an error matching
	// errors.ErrUnsupported for any other user.
	User string
	// StdoutPath and StderrPath, when set, are container paths the
	// process's output is appended to, in addition to ProcessIO. Unlike
	// ProcessIO writers, these keep receiving output after the caller
	// restarts.
	StdoutPath string
	StderrPath string
}

// ProcessIO connects a process's standard streams to the caller. Nil fields
// mean no input and discarded output. Writers are called from backend
// goroutines; Wait returns once the output the process wrote before exiting
// has been delivered. Stdin is read by a backend goroutine until it returns
// io.EOF or the process exits; a Reader that blocks forever keeps that
// goroutine, so close it when done.
type ProcessIO struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// PortMapping is one port mapped into a container.
type PortMapping struct {
	// HostPort is the port reachable on Info.HostIP.
	HostPort uint32
	// ContainerPort is the port a process in the container listens on.
	ContainerPort uint32
}

// State is a container's lifecycle state.
type State string

// Container states.
const (
	// StateActive: the container accepts processes.
	StateActive State = "active"
	// StateStopped: Stop was called; files remain readable.
	StateStopped State = "stopped"
)

// Event names something that happened to a container.
type Event string

// Container events.
const (
	// EventOutOfMemory: the processes exceeded Limits.MemoryBytes and were
	// killed.
	EventOutOfMemory Event = "out of memory"
)

// ContainerInfo is a snapshot of a container.
type ContainerInfo struct {
	// Handle is the container's name.
	Handle string
	// State is active or stopped.
	State State
	// Properties are the labels given at creation.
	Properties Properties
	// HostIP is the address mapped host ports listen on.
	HostIP string
	// Path is the host directory of the container's root when the backend
	// keeps files on the host, else "".
	Path string
	// ProcessIDs are the ids of processes that have not exited, sorted.
	ProcessIDs []string
	// PIDs are host process ids of the container's live processes
	// (including descendants) when the backend can see them, sorted.
	PIDs []int
	// Ports are the mappings made by NetIn, in order.
	Ports []PortMapping
	// Limits are the current limits.
	Limits Limits
	// Usage is the measured resource use.
	Usage Usage
	// Events happened to the container, oldest first.
	Events []Event
}

// Usage is measured resource use of a container.
type Usage struct {
	// MemoryBytes is the resident memory of the live processes.
	MemoryBytes uint64
	// CPU is the CPU time used by the processes (user plus system).
	CPU time.Duration
	// DiskBytes is the size of the container's files.
	DiskBytes uint64
}

// Signal is a signal to send to a process. Values are the Linux signal
// numbers, so a process killed by sig exits with status 128+int(sig).
type Signal int

// Signals a process can be sent.
const (
	SignalHangup    Signal = 1
	SignalInterrupt Signal = 2
	SignalQuit      Signal = 3
	SignalKill      Signal = 9
	SignalUser1     Signal = 10
	SignalUser2     Signal = 12
	SignalTerminate Signal = 15
)

// String returns the conventional name, e.g. "SIGTERM".
func (s Signal) String() string {
	switch s {
	case SignalHangup:
		return "SIGHUP"
	case SignalInterrupt:
		return "SIGINT"
	case SignalQuit:
		return "SIGQUIT"
	case SignalKill:
		return "SIGKILL"
	case SignalUser1:
		return "SIGUSR1"
	case SignalUser2:
		return "SIGUSR2"
	case SignalTerminate:
		return "SIGTERM"
	}
	return "signal(" + strconv.Itoa(int(s)) + ")"
}

// ExitStatus returns the exit status of a process killed by s.
func (s Signal) ExitStatus() int { return 128 + int(s) }
