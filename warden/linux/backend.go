// Package linux is the warden.Backend that isolates containers with Linux
// namespaces and cgroups: the DEA's production backend on hosts where it
// runs as root (see Check), with warden/process as the fallback.
//
// # Processes
//
// Create starts a container init: this program re-executed (Config.InitPath,
// /proc/self/exe by default) in new PID, mount, UTS and IPC namespaces. The
// program must call Init first thing in main (and in TestMain), which turns
// the re-executed copy into the init instead of running main. The init
// builds the root file system, sets no_new_privs, then serves requests on
// a unix socket in the container's directory. It is the parent of every
// process of the container, so it reaps orphans and knows every exit
// status, even of processes that exited while no backend ran. Run asks the
// init to start a process; standard streams travel as file descriptors
// over the socket, so output goes straight from the process to the
// caller's pipes or files. The init forks the program directly into the
// app cgroup: on v2 with clone3's CLONE_INTO_CGROUP; on v1, where only
// threads can be moved, from a dedicated thread that joins the app cgroups
// for the fork and leaves again (the OOM killer only picks thread group
// leaders, so the init itself is never its victim), with the container's
// user and group, its own session, and the working directory. A file
// descriptor limit is set by "/bin/sh -c 'ulimit -n N && exec ...'" in the
// container, so the program never runs without it.
//
// # File system
//
// Each container is a directory Config.Root/<handle> holding state.json,
// init.sock, init.log and rootfs/, the container's "/". rootfs is the
// writable layer: it belongs to the container's user and is what StreamIn
// and StreamOut see (through os.Root and warden's path checks, files
// created for the container user). Inside the container, Config.BaseDirs of
// Config.BaseRoot (the host's /usr, /lib, /lib64, /bin, /sbin and /etc by
// default; symbolic links such as /bin -> usr/bin are recreated as links)
// are bind-mounted read-only, nosuid and nodev; /proc is the container's
// own; /dev is a small tmpfs with null, zero, full, random, urandom and tty
// bound from the host plus a /dev/shm tmpfs; /tmp is a tmpfs of
// Config.TmpBytes. The init then pivots into rootfs and detaches the host's
// root, so no host path is reachable, and none is writable. The empty
// mount-point directories (usr, etc, proc, dev, tmp, ...) show in rootfs on
// the host and in StreamOut of "/".
//
// # Users
//
// Each live container gets a slot n (0 <= n < MaxContainers) and runs its
// processes as uid and gid Config.UIDBase+n, which owns rootfs. Only that
// user is supported: ProcessSpec.User must be empty or Config.UserName
// (errors.ErrUnsupported otherwise).
//
// # Limits
//
// Every process runs in the cgroup <Config.CgroupParent>/<handle>/app, on
// the v2 hierarchy or the v1 memory, cpu, cpuacct, pids and freezer ones
// (Config.CgroupVersion, detected by default), managed with containerd's
// cgroups library; the init sits in a sibling "init" leaf, outside the
// limits. On v1, containers also leave the creating program's group of
// systemd's named hierarchy, so restarting that program's service does not
// kill them (on v2 the kiln cgroups sit outside the service's own; a
// service manager may still want Delegate= or KillMode=process). Memory: a hard limit (v1 memory.limit_in_bytes, v2 memory.max
// with swap off); the kernel's OOM killer kills inside the container,
// and the kill count (memory.oom_control or memory.events) becomes
// warden.EventOutOfMemory and the exit reason of the killed process (see
// ExitReasoner). CPU: Config.CPUShares (v1 shares, v2 weight) and
// Config.CPUQuota. Processes: Config.PidsLimit, which stops fork bombs.
// File descriptors: RLIMIT_NOFILE set before the program runs. Disk: the
// size of the regular files of rootfs bounds StreamIn, and every
// Config.DiskPollInterval containers over their limit have their processes
// killed and EventOutOfDisk recorded (the layer is a plain directory, so
// processes can overshoot until the next poll; a quota-capable file
// system would be needed to refuse the writes themselves).
//
// # Network
//
// By default containers share the host's network namespace: the cheapest
// choice, with no per-connection forwarding cost and no veth or NAT setup,
// at the cost of isolation (processes see the host's interfaces and can
// bind any free port; they still cannot reach other containers' files or
// processes). NetIn reserves a free TCP port on Config.HostIP and returns
// the same number as host and container port: the process must bind it
// (the caller passes it as PORT). With Config.PrivateNetwork each
// container gets a network namespace with only loopback, and NetIn
// forwards Config.HostIP:hostPort to 127.0.0.1:containerPort inside it in
// user space (two goroutines and a copy per connection); the container
// then has no other network at all. Forwarding stops with the Backend
// (Close) and resumes when the next one reattaches.
//
// # Stopping, destroying, restarting
//
// Stop sends SIGTERM to every process of the app cgroup, waits for the
// group to empty up to the grace period, then kills it at once (v2
// cgroup.kill; v1 freeze, SIGKILL every member, thaw) until it is empty,
// waits for the init to report the exits, and kills the init, which tears
// down the namespaces and mounts. Destroy does the same without grace,
// removes the cgroups and the container's directory. Nothing is mounted in
// the host's mount namespace, so there is nothing to unmount.
//
// Containers outlive the Backend. New reads every state.json under Root: a
// container whose init still runs is reattached (the init reports the
// processes and their exit statuses, also of those that exited meanwhile;
// pipes to ProcessIO writers do not survive, use ProcessSpec.StdoutPath);
// one whose init is gone is marked stopped and its leftover processes
// killed. Only one Backend may use a Root at a time (New takes a lock).
package linux

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	cgroupsmode "github.com/containerd/cgroups/v3"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/internal/hostfs"
	"github.com/kiln-paas/kiln/warden/internal/portmap"
	"github.com/kiln-paas/kiln/warden/internal/registry"
	"github.com/kiln-paas/kiln/warden/internal/statefile"
)

// EventOutOfDisk is recorded when a container's files exceeded
// Limits.DiskBytes and its processes were killed.
const EventOutOfDisk warden.Event = "out of disk"

// Config configures a Backend.
type Config struct {
	// Root is the directory holding one directory per container. Required;
	// created if missing. It must be on a file system that allows the
	// containers' users to execute files (not noexec).
	Root string
	// HostIP is the address mapped ports are on. Default "127.0.0.1".
	HostIP string
	// MaxContainers bounds the containers Create accepts, and so the user
	// ids used. Default 1024.
	MaxContainers int
	// MemoryBytes and DiskBytes are reported by Capacity; 0 means measure
	// (MemTotal of /proc/meminfo; free space under Root).
	MemoryBytes uint64
	DiskBytes   uint64
	// UIDBase is the user and group id of the container in slot 0; slot n
	// uses UIDBase+n. Default 10000, above the ids distributions give to
	// people, so container users own nothing on the host.
	UIDBase uint32
	// UserName is the name ProcessSpec.User may give for the container
	// user, and $USER. Default "vcap", as in the original warden.
	UserName string
	// BaseRoot is the directory the read-only base comes from: "/" (the
	// host) by default, or a root file system unpacked on the host.
	BaseRoot string
	// BaseDirs are the top-level entries of BaseRoot shared read-only with
	// every container; missing ones are skipped, symbolic links copied.
	// Default usr, lib, lib64, bin, sbin, etc.
	BaseDirs []string
	// Devices are the host device files bound into /dev. Default
	// /dev/null, zero, full, random, urandom and tty.
	Devices []string
	// TmpBytes sizes each container's /tmp and /dev/shm tmpfs (memory
	// used there is charged to the container). Default 64 MiB.
	TmpBytes uint64
	// PrivateNetwork gives each container its own network namespace with
	// only a loopback interface; NetIn then forwards host ports to it in
	// user space (see network.go's comment for the costs). Default false:
	// containers share the host's network namespace.
	PrivateNetwork bool
	// CgroupVersion selects the hierarchy: 1, 2, or 0 to detect (v2 when
	// /sys/fs/cgroup is the unified hierarchy, else v1).
	CgroupVersion int
	// CgroupMount is the v2 hierarchy's mount point. Default
	// "/sys/fs/cgroup".
	CgroupMount string
	// CgroupParent is the cgroup (relative to each hierarchy's root)
	// containers are created under. Default "kiln-warden".
	CgroupParent string
	// CPUShares is each container's relative CPU weight (v1 cpu.shares
	// scale; converted to cpu.weight on v2). Default 1024; 0 leaves the
	// kernel's default.
	CPUShares uint64
	// CPUQuota is the CPU time each container may use per 100ms; 0 means
	// unlimited. 200ms is two CPUs.
	CPUQuota time.Duration
	// PidsLimit bounds the processes and threads of each container.
	// Default 1024; 0 means unlimited.
	PidsLimit int64
	// DefaultPath is the PATH of processes whose environment sets none.
	// Default "/usr/local/bin:/usr/bin:/bin".
	DefaultPath string
	// InitPath is the program re-executed as each container's init; it
	// must call Init at the start of main. Default "/proc/self/exe".
	InitPath string
	// StartTimeout bounds how long a new init may take to set up the
	// container. Default 10s.
	StartTimeout time.Duration
	// DiskPollInterval is how often disk limits are checked. Default 10s.
	DiskPollInterval time.Duration
	// OutputDrainTimeout bounds how long Wait waits, after the process
	// exited, for descendants still holding its output pipes. Default
	// 250ms.
	OutputDrainTimeout time.Duration
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
		UIDBase:            10000,
		UserName:           "vcap",
		BaseRoot:           "/",
		BaseDirs:           []string{"usr", "lib", "lib64", "bin", "sbin", "etc"},
		Devices:            []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"},
		TmpBytes:           64 << 20,
		CgroupMount:        "/sys/fs/cgroup",
		CgroupParent:       "kiln-warden",
		CPUShares:          1024,
		PidsLimit:          1024,
		DefaultPath:        "/usr/local/bin:/usr/bin:/bin",
		InitPath:           "/proc/self/exe",
		StartTimeout:       10 * time.Second,
		DiskPollInterval:   10 * time.Second,
		OutputDrainTimeout: 250 * time.Millisecond,
	}
}

// Validate reports a configuration New would reject.
func (c Config) Validate() error {
	var errs []error
	if c.Root == "" || !filepath.IsAbs(c.Root) {
		errs = append(errs, fmt.Errorf("root %q is not an absolute path", c.Root))
	}
	if net.ParseIP(c.HostIP) == nil {
		errs = append(errs, fmt.Errorf("host IP %q is not an IP address", c.HostIP))
	}
	if c.MaxContainers <= 0 {
		errs = append(errs, errors.New("MaxContainers must be positive"))
	}
	if c.UIDBase == 0 || uint64(c.UIDBase)+uint64(c.MaxContainers) > 1<<31 {
		errs = append(errs, fmt.Errorf("user ids %d+%d: must be above 0 (root) and fit", c.UIDBase, c.MaxContainers))
	}
	if c.UserName == "" {
		errs = append(errs, errors.New("missing UserName"))
	}
	if !filepath.IsAbs(c.BaseRoot) {
		errs = append(errs, fmt.Errorf("base root %q is not absolute", c.BaseRoot))
	}
	for _, d := range c.BaseDirs {
		if d == "" || strings.ContainsAny(d, "/\x00") || d == "." || d == ".." || reservedDir(d) {
			errs = append(errs, fmt.Errorf("base dir %q must be one path element other than proc, dev and tmp", d))
		}
	}
	for _, d := range c.Devices {
		if !strings.HasPrefix(d, "/dev/") {
			errs = append(errs, fmt.Errorf("device %q is not under /dev", d))
		}
	}
	if c.TmpBytes == 0 {
		errs = append(errs, errors.New("TmpBytes must be positive"))
	}
	if c.CgroupVersion < 0 || c.CgroupVersion > 2 {
		errs = append(errs, fmt.Errorf("cgroup version %d", c.CgroupVersion))
	}
	if !filepath.IsAbs(c.CgroupMount) {
		errs = append(errs, fmt.Errorf("cgroup mount %q is not absolute", c.CgroupMount))
	}
	if c.CgroupParent == "" || strings.HasPrefix(c.CgroupParent, "/") || strings.Contains(c.CgroupParent, "..") {
		errs = append(errs, fmt.Errorf("cgroup parent %q must be a relative path", c.CgroupParent))
	}
	if c.CPUQuota < 0 || c.PidsLimit < 0 {
		errs = append(errs, errors.New("negative CPUQuota or PidsLimit"))
	}
	if c.CPUQuota > 0 && c.CPUQuota < time.Millisecond {
		errs = append(errs, errors.New("CPUQuota below the kernel's 1ms minimum"))
	}
	if c.InitPath == "" {
		errs = append(errs, errors.New("missing InitPath"))
	}
	if c.StartTimeout <= 0 || c.DiskPollInterval <= 0 || c.OutputDrainTimeout < 0 {
		errs = append(errs, errors.New("StartTimeout and DiskPollInterval must be positive, OutputDrainTimeout not negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("linux: config: %w: %w", warden.ErrInvalidSpec, err)
	}
	return nil
}

// reservedDir reports the root entries the backend mounts itself.
func reservedDir(d string) bool { return d == "proc" || d == "dev" || d == "tmp" }

// Backend runs containers in namespaces and cgroups. Create it with New
// and Close it when done; Close leaves containers and their processes in
// place for the next Backend on the same Root. It is safe for concurrent
// use.
type Backend struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	cgroups cgroupDriver
	res     resources
	lock    *os.File // flock on Root/.lock

	ctx    context.Context // ends at Close; bounds watchers and waiters
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	containers map[string]*container
	slots      map[int]string // slot -> handle
	ports      portmap.Map    // host port -> handle, its own lock
}

var _ warden.Backend = (*Backend)(nil)

// New checks the host (see Check), opens (creating if needed) cfg.Root,
// takes its lock and reattaches to the containers found there. It returns
// an error matching ErrUnavailable when the host cannot run containers,
// and one matching warden.ErrExists when another Backend holds the Root.
func New(cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkHost(cfg); err != nil {
		return nil, err
	}
	return open(cfg)
}

// open is New after the checks.
func open(cfg Config) (*Backend, error) {
	driver, err := pickDriver(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Root, 0o711); err != nil {
		return nil, fmt.Errorf("linux: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(cfg.Root, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("linux: %w", err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("linux: root %s is in use by another backend: %w", cfg.Root, warden.ErrExists)
		}
		return nil, fmt.Errorf("linux: lock %s: %w", cfg.Root, err)
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
		cgroups:    driver,
		res:        resources{cpuShares: cfg.CPUShares, cpuQuota: cfg.CPUQuota, pids: cfg.PidsLimit},
		lock:       lock,
		ctx:        ctx,
		cancel:     cancel,
		containers: map[string]*container{},
		slots:      map[int]string{},
	}
	if err := b.load(); err != nil {
		b.Close()
		return nil, err
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.watch()
	}()
	return b, nil
}

// cgroupVersion returns the cgroup hierarchy cfg selects (1 or 2),
// detecting it when cfg leaves it 0; 0 means none is mounted.
func cgroupVersion(cfg Config) int {
	if cfg.CgroupVersion != 0 {
		return cfg.CgroupVersion
	}
	switch cgroupsmode.Mode() {
	case cgroupsmode.Unified:
		return 2
	case cgroupsmode.Legacy, cgroupsmode.Hybrid:
		return 1
	}
	return 0
}

// pickDriver chooses the cgroup hierarchy.
func pickDriver(cfg Config) (cgroupDriver, error) {
	v := cgroupVersion(cfg)
	if v == 0 {
		return nil, fmt.Errorf("linux: no cgroup hierarchy mounted: %w", ErrUnavailable)
	}
	if v == 2 {
		return cgroupV2Driver{mount: cfg.CgroupMount, parent: cfg.CgroupParent}, nil
	}
	return cgroupV1Driver{parent: cfg.CgroupParent}, nil
}

// Close stops the backend's watchers and releases Root. Containers and
// their processes keep running for the next Backend; Wait on processes
// of this one then blocks until its ctx ends. Closing twice is harmless.
func (b *Backend) Close() error {
	b.cancel()
	b.wg.Wait()
	b.mu.Lock()
	cs := slices.Collect(maps.Values(b.containers))
	b.mu.Unlock()
	for _, c := range cs {
		if c != nil {
			c.closeForwarder()
		}
	}
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
		if err == nil && (st.Slot >= b.cfg.MaxContainers || b.slots[st.Slot] != "") {
			err = fmt.Errorf("slot %d taken or out of range", st.Slot)
		}
		if err != nil {
			return err
		}
		c := b.newContainer(dir, st)
		if c.cg, err = b.cgroups.load(st.Handle); err != nil {
			b.log.Warn("container-cgroups-missing", "handle", st.Handle, "error", err)
		} else {
			c.cg.ignore(st.InitPID)
		}
		c.reattach()
		b.containers[st.Handle] = c
		b.slots[st.Slot] = st.Handle
		b.ports.Restore(st.Handle, st.Ports)
		b.log.Info("container-reattached", "handle", st.Handle, "state", st.State, "processes", len(c.procs))
		return nil
	})
	if err != nil {
		return fmt.Errorf("linux: %w", err)
	}
	b.metrics.Containers.Set(float64(len(b.containers)))
	return nil
}

// Create implements warden.Backend.
func (b *Backend) Create(ctx context.Context, spec warden.ContainerSpec) (warden.Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := time.Now()
	handle := spec.Handle
	if handle == "" {
		handle = uuid.NewString()
	}
	if err := warden.ValidateHandle(handle); err != nil {
		return nil, fmt.Errorf("linux: create: %w", err)
	}
	if err := warden.ValidateEnv(spec.Env); err != nil {
		return nil, fmt.Errorf("linux: create %s: %w", handle, err)
	}
	slot, err := b.reserve(handle)
	if err != nil {
		return nil, err
	}
	c, err := b.build(ctx, handle, slot, spec)
	if err != nil {
		b.mu.Lock()
		delete(b.slots, slot)
		delete(b.containers, handle)
		b.mu.Unlock()
		return nil, fmt.Errorf("linux: create %s: %w", handle, err)
	}
	b.mu.Lock()
	b.containers[handle] = c
	b.metrics.Containers.Set(float64(len(b.containers)))
	b.mu.Unlock()
	b.metrics.createSeconds.Observe(time.Since(start).Seconds())
	b.log.Info("container-created", "handle", handle, "uid", c.uid, "init_pid", c.st.InitPID)
	return c, nil
}

// reserve claims handle (with a placeholder) and a slot.
func (b *Backend) reserve(handle string) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.lock == nil {
		return 0, fmt.Errorf("linux: create %s: backend closed: %w", handle, warden.ErrStopped)
	}
	if _, ok := b.containers[handle]; ok {
		return 0, fmt.Errorf("linux: create %s: %w", handle, warden.ErrExists)
	}
	for slot := range b.cfg.MaxContainers {
		if _, used := b.slots[slot]; !used {
			b.slots[slot] = handle
			b.containers[handle] = nil // placeholder: the handle is taken
			return slot, nil
		}
	}
	return 0, fmt.Errorf("linux: create %s: %d containers: %w", handle, b.cfg.MaxContainers, warden.ErrLimitExceeded)
}

// build makes the container's directory, cgroups and init.
func (b *Backend) build(ctx context.Context, handle string, slot int, spec warden.ContainerSpec) (*container, error) {
	dir := filepath.Join(b.cfg.Root, handle)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("directory exists: %w", warden.ErrExists)
		}
		return nil, err
	}
	st := &containerState{Container: statefile.New(stateVersion, handle, spec), Slot: slot}
	c := b.newContainer(dir, st)
	binds, err := b.prepareRoot(c.rootfs, c.uid)
	if err == nil {
		c.cg, err = b.cgroups.create(handle, spec.Limits, b.res)
	}
	if err == nil {
		err = c.startInit(ctx, binds)
	}
	if err == nil {
		err = writeState(dir, st)
	}
	if err != nil {
		if c.cg != nil {
			_ = c.cg.destroy() // kills the init too
		}
		_ = hostfs.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// prepareRoot makes the container's root directory: mount points for the
// base directories (or links where the base has links), proc, dev and
// tmp, all owned by root, in a directory owned by the container's user.
func (b *Backend) prepareRoot(rootfs string, uid int) ([]bindMount, error) {
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return nil, err
	}
	var binds []bindMount
	for _, d := range b.cfg.BaseDirs {
		src := filepath.Join(b.cfg.BaseRoot, d)
		fi, err := os.Lstat(src)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return nil, err
			}
			// "/usr/bin" seen from the root is "usr/bin"; relative links
			// keep StreamIn's checks happy.
			if err := os.Symlink(strings.TrimLeft(target, "/"), filepath.Join(rootfs, d)); err != nil {
				return nil, err
			}
		case fi.IsDir():
			if err := os.Mkdir(filepath.Join(rootfs, d), 0o755); err != nil {
				return nil, err
			}
			binds = append(binds, bindMount{Source: src, Target: d})
		}
	}
	for _, d := range []string{"proc", "dev", "tmp"} {
		if err := os.Mkdir(filepath.Join(rootfs, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chown(rootfs, uid, uid); err != nil {
		return nil, err
	}
	return binds, nil
}

// Lookup implements warden.Backend.
func (b *Backend) Lookup(ctx context.Context, handle string) (warden.Container, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return registry.Lookup(ctx, b.containers, "linux", handle)
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
	if b.slots[c.st.Slot] == handle {
		delete(b.slots, c.st.Slot)
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
		var si unix.Sysinfo_t
		if err := unix.Sysinfo(&si); err != nil {
			return warden.Capacity{}, fmt.Errorf("linux: capacity: %w", err)
		}
		capa.MemoryBytes = uint64(si.Totalram) * uint64(si.Unit)
	}
	if capa.DiskBytes == 0 {
		free, err := hostfs.FreeBytes(b.cfg.Root)
		if err != nil {
			return warden.Capacity{}, fmt.Errorf("linux: capacity: %w", err)
		}
		capa.DiskBytes = free
	}
	return capa, nil
}

// watch enforces disk limits and records OOM kills until Close.
func (b *Backend) watch() {
	t := time.NewTicker(b.cfg.DiskPollInterval)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		b.mu.Lock()
		cs := make([]*container, 0, len(b.containers))
		for _, c := range b.containers {
			if c != nil {
				cs = append(cs, c)
			}
		}
		b.mu.Unlock()
		for _, c := range cs {
			c.checkOOM()
			c.enforceDisk()
		}
	}
}
