// Package fake is an in-memory warden.Backend for tests of code that runs
// containers (the DEA, staging, whole kernels in kerneltest). It is a real
// implementation that passes warden/wardentest: files streamed in are kept
// in memory and streamed out again, processes "run" as goroutines that
// honour Wait, Signal, Stop (grace then kill) and Destroy, limits are
// recorded and the disk and memory ones enforced.
//
// # What a process does
//
// Nothing is executed on the host. When Run is called the fake decides what
// the process does, in this order:
//
//  1. Scripts added with Backend.Script, newest first: the first that
//     returns ok gives the process's Behavior.
//  2. The shell vocabulary below, when the program is "sh" (or "bash") with
//     arguments "-c" and a script made only of these commands, or is one of
//     echo, cat, sleep and pwd run directly.
//  3. Config.DefaultBehavior, which by default is a long-running server:
//     it runs until signalled and binds the container's mapped ports.
//
// # Binding ports
//
// A Behavior process that does not set NoBind "binds" every host port
// mapped into its container with NetIn before it started: the fake opens a
// real TCP listener on Config.HostIP (127.0.0.1 by default) and that port,
// so health checks succeed and HTTP routed through a real router reaches
// it. Unless Behavior.Handler says otherwise it answers every request with
// 200 and a JSON body
//
//	{"handle":"<container handle>","instance_index":"<$INSTANCE_INDEX>","path":"<request path>"}
//
// (instance_index omitted when the variable is not set) and the headers
// X-Kiln-Handle and X-Kiln-Instance-Index. The listener closes when the
// process exits. Shell-vocabulary processes never bind.
//
// # Shell vocabulary
//
// A deliberately tiny interpreter, just enough for conformance tests and
// users' scripted scenarios. Commands are separated by ";" or newlines,
// joined by "&&", or run in the background with a trailing "&" (the job is
// a child in the same process group: it outlives the script, is listed in
// Info.PIDs and is killed by Stop). Words may be quoted with '...' or
// "..."; $NAME and ${NAME} expand from the process environment (outside
// single quotes). Output of echo and cat may be redirected with "> file"
// or ">> file" (container paths; /dev/null discards).
//
//	exit [N]          exit with status N (default: the last status)
//	echo [-n] ARGS    print ARGS
//	pwd               print the working directory as a container path ("/app")
//	sleep SECONDS     sleep (fractions allowed); signals interrupt it
//	trap '' SIG...    ignore signals (TERM, INT, HUP, QUIT, USR1, USR2); trap - SIG... restores
//	cat [FILE...]     print container files, or standard input without FILE
//	ulimit -n         print the file descriptor limit, or "unlimited"
//	wait              wait for this script's background jobs
//
// A script using anything else (another command, a trap with an action, a
// pipe) is not interpreted: the process gets its Behavior as in step 3.
// Signals end a process with status 128+n unless ignored; SIGKILL cannot
// be ignored.
//
// # Observing and injecting
//
// Backend.Runs lists every process started with its resolved environment;
// Backend.FailNext makes the next call of an operation fail;
// Backend.Exit makes a running process exit (crash) on demand;
// Backend.OutOfMemory simulates the kernel's OOM killer; Backend.SetUsage
// overrides reported memory and CPU use.
package fake

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/kiln-paas/kiln/warden"
)

// Config configures a fake Backend.
type Config struct {
	// HostIP is the address mapped ports listen on. Default "127.0.0.1".
	HostIP string
	// Capacity is reported by Backend.Capacity; MaxContainers, when not
	// zero, is enforced by Create. Default: 16 GiB memory, 64 GiB disk,
	// 256 containers (a plausible small DEA).
	Capacity warden.Capacity
	// DefaultBehavior is what a process neither scripted nor interpreted
	// does. Default: run until signalled and bind mapped ports.
	DefaultBehavior Behavior
	// TaskMemoryBytes is the resident memory a fake process (or background
	// job) counts for when its Behavior does not say. Default 1 MiB.
	TaskMemoryBytes uint64
	// Logger receives debug events; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults described on Config's fields.
func DefaultConfig() Config {
	return Config{
		HostIP: "127.0.0.1",
		Capacity: warden.Capacity{
			MemoryBytes:   16 << 30,
			DiskBytes:     64 << 30,
			MaxContainers: 256,
		},
		TaskMemoryBytes: 1 << 20,
	}
}

// Validate reports a configuration New would reject.
func (c Config) Validate() error {
	if net.ParseIP(c.HostIP) == nil {
		return fmt.Errorf("fake: HostIP %q is not an IP address: %w", c.HostIP, warden.ErrInvalidSpec)
	}
	if c.Capacity.MaxContainers < 0 {
		return fmt.Errorf("fake: negative MaxContainers: %w", warden.ErrInvalidSpec)
	}
	if c.DefaultBehavior.Exit && c.DefaultBehavior.ExitAfter < 0 {
		return fmt.Errorf("fake: negative DefaultBehavior.ExitAfter: %w", warden.ErrInvalidSpec)
	}
	return nil
}

// Behavior scripts what one fake process does. The zero value is a server
// that runs until signalled and binds its container's mapped ports.
type Behavior struct {
	// Stdout and Stderr are written when the process starts.
	Stdout string
	Stderr string
	// Exit makes the process exit by itself with ExitStatus after
	// ExitAfter. A crash is an Exit with a non-zero status.
	Exit       bool
	ExitStatus int
	ExitAfter  time.Duration
	// NoBind keeps the process from binding its mapped ports, as an app
	// that fails its health check.
	NoBind bool
	// BindAfter delays binding, as a slow-starting app.
	BindAfter time.Duration
	// IgnoreTerm makes SIGTERM (and SIGINT) have no effect, as an app that
	// does not shut down; Stop then kills it after the grace period.
	IgnoreTerm bool
	// MemoryBytes is the resident memory the process reports (0 means
	// Config.TaskMemoryBytes). Above the container's memory limit the
	// process is OOM-killed.
	MemoryBytes uint64
	// Handler answers HTTP requests on the bound ports instead of the
	// default JSON echo.
	Handler http.Handler
}

// Script chooses a Behavior for a process about to run in the container
// named handle; ok false passes to the next script.
type Script func(handle string, spec warden.ProcessSpec) (b Behavior, ok bool)

// ForProgram returns a Script giving b to every process whose
// ProcessSpec.Path is path.
func ForProgram(path string, b Behavior) Script {
	return func(_ string, spec warden.ProcessSpec) (Behavior, bool) {
		return b, spec.Path == path
	}
}

// ForHandle returns a Script giving b to every process run in the container
// named handle.
func ForHandle(handle string, b Behavior) Script {
	return func(h string, _ warden.ProcessSpec) (Behavior, bool) {
		return b, h == handle
	}
}

// Op names a backend operation for FailNext.
type Op string

// Operations whose failure can be injected.
const (
	OpCreate     Op = "create"
	OpLookup     Op = "lookup"
	OpContainers Op = "containers"
	OpDestroy    Op = "destroy"
	OpCapacity   Op = "capacity"
	OpStreamIn   Op = "stream-in"
	OpStreamOut  Op = "stream-out"
	OpRun        Op = "run"
	OpAttach     Op = "attach"
	OpNetIn      Op = "net-in"
	OpSetLimits  Op = "set-limits"
	OpInfo       Op = "info"
	OpStop       Op = "stop"
	OpSignal     Op = "signal"
)

// RunRecord describes one process the fake started.
type RunRecord struct {
	// Handle is the container's.
	Handle string
	// ID is the process's.
	ID string
	// Spec is the spec as given to Run.
	Spec warden.ProcessSpec
	// Env is the resolved environment (container env merged with Spec.Env).
	Env []string
	// Interpreted says the shell vocabulary ran it; otherwise a Behavior did.
	Interpreted bool
	// Started is when Run started it.
	Started time.Time
}

type failure struct {
	op     Op
	handle string
	err    error
}

// Backend is the in-memory warden.Backend. Create it with New. It is safe
// for concurrent use.
type Backend struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	containers map[string]*container
	ports      map[uint32]string // host port -> handle
	scripts    []Script
	failures   []failure
	runs       []RunRecord
	seq        int // handles, process ids
	pid        int // fake host pids
}

var _ warden.Backend = (*Backend)(nil)

// New returns an empty fake backend.
func New(cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Backend{
		cfg:        cfg,
		log:        log,
		containers: map[string]*container{},
		ports:      map[uint32]string{},
		pid:        1000,
	}, nil
}

// Script adds s; later scripts take precedence over earlier ones.
func (b *Backend) Script(s Script) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.scripts = append(b.scripts, s)
}

// FailNext makes the next call of op on the container named handle (any
// container, or the backend itself, when handle is "") return err. Several
// failures queue up in call order.
func (b *Backend) FailNext(op Op, handle string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = append(b.failures, failure{op: op, handle: handle, err: err})
}

// injected consumes and returns a queued failure for op on handle.
func (b *Backend) injected(op Op, handle string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, f := range b.failures {
		if f.op == op && (f.handle == "" || f.handle == handle) {
			b.failures = slices.Delete(b.failures, i, i+1)
			return fmt.Errorf("fake: injected %s failure: %w", op, f.err)
		}
	}
	return nil
}

// Runs returns every process started so far, oldest first.
func (b *Backend) Runs() []RunRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.runs)
}

// Exit makes process id of the container named handle exit now with
// status, as a crash would. It returns ErrNotFound or ErrProcessDone.
func (b *Backend) Exit(handle, id string, status int) error {
	c, err := b.container(handle)
	if err != nil {
		return err
	}
	p, err := c.process(id)
	if err != nil {
		return err
	}
	if !p.main.forceExit(status) {
		return fmt.Errorf("fake: process %s/%s: %w", handle, id, warden.ErrProcessDone)
	}
	return nil
}

// OutOfMemory records warden.EventOutOfMemory on the container named handle
// and kills all its processes, as the kernel's OOM killer would.
func (b *Backend) OutOfMemory(handle string) error {
	c, err := b.container(handle)
	if err != nil {
		return err
	}
	c.oomKill()
	return nil
}

// SetUsage overrides the memory and CPU use Info reports for the container
// named handle (disk use is always measured). Zero fields restore the
// measured values.
func (b *Backend) SetUsage(handle string, u warden.Usage) error {
	c, err := b.container(handle)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.usage = u
	return nil
}

// Close destroys every container, stopping all fake processes and
// listeners. The backend stays usable.
func (b *Backend) Close() error {
	b.mu.Lock()
	handles := make([]string, 0, len(b.containers))
	for h := range b.containers {
		handles = append(handles, h)
	}
	b.mu.Unlock()
	for _, h := range handles {
		if err := b.Destroy(context.Background(), h); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) container(handle string) (*container, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.containers[handle]
	if c == nil {
		return nil, fmt.Errorf("fake: container %q: %w", handle, warden.ErrNotFound)
	}
	return c, nil
}

func (b *Backend) nextSeq() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	return b.seq
}

func (b *Backend) nextPID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pid++
	return b.pid
}

// behavior picks the Behavior of a process that the shell does not run.
func (b *Backend) behavior(handle string, spec warden.ProcessSpec) (Behavior, bool) {
	b.mu.Lock()
	scripts := slices.Clone(b.scripts)
	b.mu.Unlock()
	for i := len(scripts) - 1; i >= 0; i-- {
		if beh, ok := scripts[i](handle, spec); ok {
			return beh, true
		}
	}
	return b.cfg.DefaultBehavior, false
}

// Create implements warden.Backend.
func (b *Backend) Create(ctx context.Context, spec warden.ContainerSpec) (warden.Container, error) {
	if err := b.injected(OpCreate, spec.Handle); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	handle := spec.Handle
	if handle == "" {
		handle = "fake-" + strconv.Itoa(b.nextSeq())
	}
	if err := warden.ValidateHandle(handle); err != nil {
		return nil, fmt.Errorf("fake: create: %w", err)
	}
	if err := warden.ValidateEnv(spec.Env); err != nil {
		return nil, fmt.Errorf("fake: create %s: %w", handle, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.containers[handle]; ok {
		return nil, fmt.Errorf("fake: create %s: %w", handle, warden.ErrExists)
	}
	if max := b.cfg.Capacity.MaxContainers; max > 0 && len(b.containers) >= max {
		return nil, fmt.Errorf("fake: create %s: %d containers: %w", handle, max, warden.ErrLimitExceeded)
	}
	c := newContainer(b, handle, spec)
	b.containers[handle] = c
	b.log.Debug("container-created", "handle", handle)
	return c, nil
}

// Lookup implements warden.Backend.
func (b *Backend) Lookup(ctx context.Context, handle string) (warden.Container, error) {
	if err := b.injected(OpLookup, handle); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return b.container(handle)
}

// Containers implements warden.Backend.
func (b *Backend) Containers(ctx context.Context, match warden.Properties) ([]warden.Container, error) {
	if err := b.injected(OpContainers, ""); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []warden.Container
	for _, c := range b.containers {
		if matches(c.props, match) {
			out = append(out, c)
		}
	}
	return out, nil
}

func matches(props, match warden.Properties) bool {
	for k, v := range match {
		if got, ok := props[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Destroy implements warden.Backend.
func (b *Backend) Destroy(ctx context.Context, handle string) error {
	if err := b.injected(OpDestroy, handle); err != nil {
		return err
	}
	b.mu.Lock()
	c := b.containers[handle]
	delete(b.containers, handle)
	b.mu.Unlock()
	if c == nil {
		return nil
	}
	err := c.destroy(ctx)
	b.mu.Lock()
	for port, h := range b.ports {
		if h == handle {
			delete(b.ports, port)
		}
	}
	b.mu.Unlock()
	b.log.Debug("container-destroyed", "handle", handle)
	return err
}

// Capacity implements warden.Backend.
func (b *Backend) Capacity(ctx context.Context) (warden.Capacity, error) {
	if err := b.injected(OpCapacity, ""); err != nil {
		return warden.Capacity{}, err
	}
	return b.cfg.Capacity, ctx.Err()
}

// reservePort records hostPort (0: a free one) as mapped to handle. A port
// the kernel offers but this fake still holds for another container (a
// stopped one keeps its mapping until destroyed) is skipped, so asking for
// any free port never fails with ErrExists.
func (b *Backend) reservePort(handle string, hostPort uint32) (uint32, error) {
	pick := hostPort == 0
	for attempt := 0; ; attempt++ {
		if pick {
			p, err := freePort(b.cfg.HostIP)
			if err != nil {
				return 0, err
			}
			hostPort = p
		}
		b.mu.Lock()
		h, taken := b.ports[hostPort]
		if !taken {
			b.ports[hostPort] = handle
			b.mu.Unlock()
			return hostPort, nil
		}
		b.mu.Unlock()
		if !pick || attempt == maxPortAttempts {
			return 0, fmt.Errorf("fake: host port %d mapped by %s: %w", hostPort, h, warden.ErrExists)
		}
	}
}

// maxPortAttempts bounds the search for a free port the fake does not hold
// already; the kernel hands out ports round-robin, so one retry nearly
// always suffices.
const maxPortAttempts = 16

// freePort asks the kernel for a free TCP port on ip. The port is released
// at once so the fake process can bind it later: another program could
// take it in between, which tests accept (the kernel hands out ports
// round-robin, so reuse within moments is rare).
func freePort(ip string) (uint32, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("fake: find free port: %w", err)
	}
	defer ln.Close()
	return uint32(ln.Addr().(*net.TCPAddr).Port), nil
}
