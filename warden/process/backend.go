// Package process is a warden.Backend that runs containers as plain host
// processes: no namespaces, no cgroups, no root needed, any Linux. It is
// the DEA's backend where warden/linux cannot run, and a real backend for
// integration tests.
//
// # Layout and isolation
//
// Each container is a directory Config.Root/<handle> holding state.json
// (the persisted state) and rootfs/ (the container's files, what StreamIn
// and StreamOut see). Streaming goes through os.Root plus warden's path
// checks, so archives cannot write or read outside rootfs. Processes are
// ordinary host processes started with their working directory inside
// rootfs: they see the host file system, so absolute paths in their
// arguments are host paths. An absolute ProcessSpec.Path is looked up in
// rootfs first and on the host second (so "/app/start" finds the
// container's file and "/bin/sh" the host's). A program name without a
// slash is searched in the process's PATH (default Config.DefaultPath),
// whose entries are host directories, relative ones resolving against the
// working directory. HOME defaults to the container's root directory.
// ProcessSpec.User other than the current user needs root (and a root
// directory that user can reach).
//
// Each process starts in its own session and process group (setsid), so
// it is not killed when the creating program exits, and so Stop and Signal
// reach its whole tree: grandchildren stay in the session even when their
// parent dies. Info.PIDs lists every live process of the container's
// sessions and groups, found by reading /proc; a descendant that starts a
// session of its own (a daemon calling setsid) escapes, as it would escape
// a terminal. Reading /proc costs about a millisecond per hundred host
// processes, so Info may use a reading up to Config.UsageMaxAge old when
// nothing was started, signalled or reaped since; Stop and the memory
// monitor always read afresh, and concurrent readers share one reading.
//
// # Limits
//
// File descriptors: RLIMIT_NOFILE (soft and hard) is set before the
// program runs, by starting it through Config.Shell as
// `ulimit -n N && exec "$0" "$@"`, so there is no window in which the
// program runs unlimited; SetLimits also applies it to running processes
// with prlimit(2). Memory: resident memory (RSS) of the container's
// processes is sampled every Config.MemoryPollInterval; above the limit
// every process is killed and warden.EventOutOfMemory recorded (RLIMIT_AS
// is not used: it limits address space, which runtimes such as Go's and
// the JVM's reserve far beyond what they use). Disk: the size of rootfs's
// regular files, measured by walking it, bounds StreamIn; processes
// writing files are not stopped.
//
// # Ports
//
// NetIn maps a free TCP port on Config.HostIP; without network isolation
// the host and container ports are the same number, which the caller
// passes to its process (the PORT variable).
//
// # Surviving a restart
//
// Processes outlive the Backend. New finds the container directories under
// Config.Root and reattaches: Lookup, Containers, Info, Stop and Destroy
// work as before, and Attach returns the processes still running. A
// reattached process is not this program's child, so its exit is noticed
// by polling its pid (every Config.ExitPollInterval, checking the start
// time against pid reuse) and Wait reports warden.ExitStatusUnknown. Pipes
// to ProcessIO writers do not survive the creating program (a process
// writing to a closed pipe gets SIGPIPE): use ProcessSpec.StdoutPath and
// StderrPath for output that must; Attach with writers then follows those
// files. Only one Backend may use a Root at a time (New takes a lock).
//
// # Output
//
// With StdoutPath set the process writes straight to that file, and a
// Stdout writer, if any, is fed by following the file. Without it, a
// writer is fed through a pipe. Wait returns after the output written
// before the process exited is delivered; output of orphaned
// grandchildren still holding a pipe is delivered while they live, but
// Wait does not wait longer than Config.OutputDrainTimeout for it.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/internal/hostfs"
	"github.com/kiln-paas/kiln/warden/internal/portmap"
	"github.com/kiln-paas/kiln/warden/internal/registry"
	"github.com/kiln-paas/kiln/warden/internal/statefile"
)

// Config configures a process Backend.
type Config struct {
	// Root is the directory holding one directory per container. Required;
	// created if missing.
	Root string
	// HostIP is the address mapped ports are on. Default "127.0.0.1".
	HostIP string
	// MaxContainers bounds the containers Create accepts; 0 means no
	// bound. Default 1024.
	MaxContainers int
	// MemoryBytes and DiskBytes are reported by Capacity; 0 means measure
	// (MemTotal of /proc/meminfo; free space under Root).
	MemoryBytes uint64
	DiskBytes   uint64
	// MemoryPollInterval is how often memory limits are checked. Default
	// 1s: a runaway process can overshoot for that long.
	MemoryPollInterval time.Duration
	// ExitPollInterval is how often a reattached process is checked for
	// exit. Default 500ms.
	ExitPollInterval time.Duration
	// OutputDrainTimeout bounds how long Wait waits, after the process
	// exited, for output from descendants still running and holding its
	// output pipes. (With none left, Wait waits up to 5s for the output
	// already written.) Default 250ms.
	OutputDrainTimeout time.Duration
	// UsageMaxAge is how stale the process list behind Info (PIDs, memory
	// and CPU use) may be when nothing was started or killed since: reading
	// /proc costs about a millisecond per hundred host processes, and a DEA
	// asks for every container's usage in turn. Default 500ms; 0 reads
	// /proc on every Info.
	UsageMaxAge time.Duration
	// Shell runs the rlimit wrapper. Default "/bin/sh".
	Shell string
	// DefaultPath is the PATH of processes whose environment sets none.
	// Default "/usr/local/bin:/usr/bin:/bin".
	DefaultPath string
	// ProcRoot is where procfs is mounted. Default "/proc".
	ProcRoot string
	// Logger receives events; nil discards them.
	Logger *slog.Logger
	// Registerer receives the backend's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults described on Config's fields, with
// Root empty (callers must choose it).
func DefaultConfig() Config {
	return Config{
		HostIP:             "127.0.0.1",
		MaxContainers:      1024,
		MemoryPollInterval: time.Second,
		ExitPollInterval:   500 * time.Millisecond,
		OutputDrainTimeout: 250 * time.Millisecond,
		UsageMaxAge:        500 * time.Millisecond,
		Shell:              "/bin/sh",
		DefaultPath:        "/usr/local/bin:/usr/bin:/bin",
		ProcRoot:           "/proc",
	}
}

// Validate reports a configuration New would reject.
func (c Config) Validate() error {
	var errs []error
	if c.Root == "" {
		errs = append(errs, errors.New("missing Root"))
	}
	if net.ParseIP(c.HostIP) == nil {
		errs = append(errs, fmt.Errorf("host IP %q is not an IP address", c.HostIP))
	}
	if c.MaxContainers < 0 {
		errs = append(errs, errors.New("negative MaxContainers"))
	}
	if c.MemoryPollInterval <= 0 || c.ExitPollInterval <= 0 || c.OutputDrainTimeout < 0 || c.UsageMaxAge < 0 {
		errs = append(errs, errors.New("poll intervals must be positive, OutputDrainTimeout and UsageMaxAge not negative"))
	}
	if !filepath.IsAbs(c.Shell) {
		errs = append(errs, fmt.Errorf("shell %q is not an absolute path", c.Shell))
	}
	if c.ProcRoot == "" {
		errs = append(errs, errors.New("missing ProcRoot"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("process: config: %w: %w", warden.ErrInvalidSpec, err)
	}
	return nil
}

// Backend runs containers as host processes. Create it with New and Close
// it when done; Close leaves containers and their processes in place for
// the next Backend on the same Root. It is safe for concurrent use.
type Backend struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	lock    *os.File // flock on Root/.lock
	procs   *scanner

	ctx    context.Context // ends at Close; bounds monitors and pollers
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	containers map[string]*container
	ports      portmap.Map // host port -> handle, its own lock
}

var _ warden.Backend = (*Backend)(nil)

// New opens (creating if needed) cfg.Root, takes its lock and reattaches to
// the containers found there. It returns an error matching warden.ErrExists
// when another Backend holds the Root (after waiting up to a second for
// one that is closing).
func New(cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Root, 0o755); err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(cfg.Root, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	if err := flock(lock); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("process: root %s is in use by another backend: %w", cfg.Root, warden.ErrExists)
		}
		return nil, fmt.Errorf("process: lock %s: %w", cfg.Root, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		lock.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Backend{
		cfg:        cfg,
		log:        log,
		metrics:    m,
		lock:       lock,
		procs:      &scanner{procRoot: cfg.ProcRoot},
		ctx:        ctx,
		cancel:     cancel,
		containers: map[string]*container{},
	}
	if err := b.load(); err != nil {
		b.Close()
		return nil, err
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.watchMemory()
	}()
	return b, nil
}

// lockWait is how long New waits for Root's lock: a Backend that has just
// closed may still have it held for a moment by a child process between
// fork and exec (which share the lock's file description).
const lockWait = time.Second

// flock takes an exclusive lock on f, waiting up to lockWait.
func flock(f *os.File) error {
	deadline := time.Now().Add(lockWait)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond) // polling a lock held by another process
	}
}

// Close stops the backend's monitors and releases Root. Containers and
// their processes keep running for the next Backend. The Backend and its
// containers must not be used afterwards (Create fails; Wait on a
// reattached process blocks until its ctx ends, since nobody polls it).
// Closing twice is harmless.
func (b *Backend) Close() error {
	b.cancel()
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lock == nil {
		return nil
	}
	err := b.lock.Close() // releases the flock
	b.lock = nil
	return err
}

// load reattaches to the containers under Root.
func (b *Backend) load() error {
	err := statefile.Scan(b.cfg.Root, b.log, func(handle, dir string, raw []byte) error {
		st, err := decodeState(raw)
		if err == nil && st.Handle != handle {
			err = fmt.Errorf("state of %q in directory %q", st.Handle, handle)
		}
		if err != nil {
			return err
		}
		c := b.newContainer(dir, st)
		c.reattach()
		b.containers[st.Handle] = c
		b.ports.Restore(st.Handle, st.Ports)
		b.log.Info("container-reattached", "handle", st.Handle, "processes", len(c.procs))
		return nil
	})
	if err != nil {
		return fmt.Errorf("process: %w", err)
	}
	b.metrics.Containers.Set(float64(len(b.containers)))
	return nil
}

// Create implements warden.Backend.
func (b *Backend) Create(ctx context.Context, spec warden.ContainerSpec) (warden.Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	handle := spec.Handle
	if handle == "" {
		handle = uuid.NewString()
	}
	if err := warden.ValidateHandle(handle); err != nil {
		return nil, fmt.Errorf("process: create: %w", err)
	}
	if err := warden.ValidateEnv(spec.Env); err != nil {
		return nil, fmt.Errorf("process: create %s: %w", handle, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lock == nil {
		return nil, fmt.Errorf("process: create %s: backend closed: %w", handle, warden.ErrStopped)
	}
	if _, ok := b.containers[handle]; ok {
		return nil, fmt.Errorf("process: create %s: %w", handle, warden.ErrExists)
	}
	if b.cfg.MaxContainers > 0 && len(b.containers) >= b.cfg.MaxContainers {
		return nil, fmt.Errorf("process: create %s: %d containers: %w", handle, b.cfg.MaxContainers, warden.ErrLimitExceeded)
	}
	dir := filepath.Join(b.cfg.Root, handle)
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("process: create %s: directory exists: %w", handle, warden.ErrExists)
		}
		return nil, fmt.Errorf("process: create %s: %w", handle, err)
	}
	st := &containerState{Container: statefile.New(stateVersion, handle, spec)}
	err := os.Mkdir(filepath.Join(dir, rootDir), 0o755)
	if err == nil {
		err = writeState(dir, st)
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("process: create %s: %w", handle, err)
	}
	c := b.newContainer(dir, st)
	b.containers[handle] = c
	b.metrics.Containers.Set(float64(len(b.containers)))
	b.log.Info("container-created", "handle", handle)
	return c, nil
}

// Lookup implements warden.Backend.
func (b *Backend) Lookup(ctx context.Context, handle string) (warden.Container, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return registry.Lookup(ctx, b.containers, "process", handle)
}

// Containers implements warden.Backend.
func (b *Backend) Containers(ctx context.Context, match warden.Properties) ([]warden.Container, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return registry.Select(ctx, b.containers, func(c *container) bool { return c.matches(match) })
}

// Destroy implements warden.Backend.
func (b *Backend) Destroy(ctx context.Context, handle string) error {
	b.mu.Lock()
	c := b.containers[handle]
	b.mu.Unlock()
	if c == nil {
		return nil
	}
	if err := c.destroy(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	if b.containers[handle] == c {
		delete(b.containers, handle)
	}
	b.metrics.Containers.Set(float64(len(b.containers)))
	b.mu.Unlock()
	b.ports.Release(handle)
	b.log.Info("container-destroyed", "handle", handle)
	return nil
}

// Capacity implements warden.Backend.
func (b *Backend) Capacity(ctx context.Context) (warden.Capacity, error) {
	if err := ctx.Err(); err != nil {
		return warden.Capacity{}, err
	}
	capa := warden.Capacity{MemoryBytes: b.cfg.MemoryBytes, DiskBytes: b.cfg.DiskBytes, MaxContainers: b.cfg.MaxContainers}
	if capa.MemoryBytes == 0 {
		m, err := memTotal(b.cfg.ProcRoot)
		if err != nil {
			return warden.Capacity{}, fmt.Errorf("process: capacity: %w", err)
		}
		capa.MemoryBytes = m
	}
	if capa.DiskBytes == 0 {
		free, err := hostfs.FreeBytes(b.cfg.Root)
		if err != nil {
			return warden.Capacity{}, fmt.Errorf("process: capacity: %w", err)
		}
		capa.DiskBytes = free
	}
	return capa, nil
}

// watchMemory enforces memory limits until Close.
func (b *Backend) watchMemory() {
	t := time.NewTicker(b.cfg.MemoryPollInterval)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		b.checkMemory()
	}
}

// checkMemory scans /proc once for every container with a memory limit
// and kills those over it.
func (b *Backend) checkMemory() {
	b.mu.Lock()
	var limited []*container
	for _, c := range b.containers {
		if len(c.limitedSessions()) > 0 {
			limited = append(limited, c)
		}
	}
	b.mu.Unlock()
	if len(limited) == 0 {
		return
	}
	found, err := b.procs.fresh()
	if err != nil {
		b.log.Warn("memory-scan-failed", "error", err)
		return
	}
	for _, c := range limited {
		c.enforceMemory(found)
	}
}
