package linux

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/internal/hostfs"
)

// container is a linux-backend warden.Container.
type container struct {
	b      *Backend
	handle string
	dir    string // Root/<handle>
	rootfs string // dir/rootfs
	uid    int
	cg     cgroups // nil when its cgroups were lost

	mu        sync.Mutex
	st        *containerState
	destroyed bool
	procs     map[string]*process
	initDone  chan struct{} // closed when the init exits; nil: not our child
	fwd       *forwarder    // with Config.PrivateNetwork while the init runs
}

// closeForwarder stops port forwarding.
func (c *container) closeForwarder() {
	c.mu.Lock()
	f := c.fwd
	c.fwd = nil
	c.mu.Unlock()
	if f != nil {
		f.close()
	}
}

// openForwarder starts forwarding the recorded ports; c.mu is held.
func (c *container) openForwarderLocked() error {
	f, err := newForwarder(c.st.InitPID)
	if err != nil {
		return err
	}
	for _, m := range c.st.Ports {
		if _, err := f.listen(c.b.cfg.HostIP, m.HostPort, m.ContainerPort); err != nil {
			c.b.log.Warn("port-not-forwarded", "handle", c.handle, "host_port", m.HostPort, "error", err)
		}
	}
	c.fwd = f
	return nil
}

var _ warden.Container = (*container)(nil)

func (b *Backend) newContainer(dir string, st *containerState) *container {
	return &container{
		b:      b,
		handle: st.Handle,
		dir:    dir,
		rootfs: filepath.Join(dir, rootDir),
		uid:    int(b.cfg.UIDBase) + st.Slot,
		st:     st,
		procs:  map[string]*process{},
	}
}

// Handle implements warden.Container.
func (c *container) Handle() string { return c.handle }

func (c *container) errorf(op string, err error) error {
	return fmt.Errorf("linux: %s %s: %w", c.handle, op, err)
}

func (c *container) matches(match warden.Properties) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Matches(match)
}

// checkLocked reports a destroyed container; c.mu is held.
func (c *container) checkLocked() error {
	if c.destroyed {
		return fmt.Errorf("linux: container %q: %w", c.handle, warden.ErrNotFound)
	}
	return nil
}

func (c *container) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checkLocked()
}

// persistLocked writes the state file; c.mu is held. A backend that has
// been closed no longer owns Root and writes nothing.
func (c *container) persistLocked() {
	if c.destroyed || c.b.ctx.Err() != nil {
		return
	}
	if err := writeState(c.dir, c.st); err != nil {
		c.b.log.Error("state-write-failed", "handle", c.handle, "error", err)
	}
}

// owner is the container user, who gets the files made for the container.
func (c *container) owner() *hostfs.Owner { return &hostfs.Owner{UID: c.uid, GID: c.uid} }

// startInit starts the container's init and waits until it has built the
// root file system.
func (c *container) startInit(ctx context.Context, binds []bindMount) error {
	cfg := c.b.cfg
	procsFiles, err := c.cg.joinFiles()
	if err != nil {
		return err
	}
	defer closeAll(procsFiles)
	sock := filepath.Join(c.dir, socketFile)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: sock, Net: "unixpacket"})
	if err != nil {
		return fmt.Errorf("init socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	lnFile, err := ln.File()
	ln.Close()
	if err != nil {
		return fmt.Errorf("init socket: %w", err)
	}
	defer lnFile.Close()
	logf, err := os.OpenFile(filepath.Join(c.dir, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer cfgW.Close()
	resR, resW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return err
	}
	defer resR.Close()
	cmd := &exec.Cmd{
		Path:       cfg.InitPath,
		Args:       []string{"kiln-warden-init", c.handle},
		Env:        []string{initEnv + "=init"},
		Stdout:     logf,
		Stderr:     logf,
		ExtraFiles: append([]*os.File{cfgR, resW, lnFile}, procsFiles...),
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC,
			Setsid:     true,
		},
	}
	if cfg.PrivateNetwork {
		cmd.SysProcAttr.Cloneflags |= unix.CLONE_NEWNET
	}
	placed, release, err := c.cg.placeInit(cmd)
	if err != nil {
		cfgR.Close()
		resW.Close()
		return err
	}
	err = cmd.Start()
	release()
	cfgR.Close()
	resW.Close()
	if err != nil {
		return fmt.Errorf("start init: %w", err)
	}
	fail := func(err error) error {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return err
	}
	if err := placed(cmd.Process.Pid); err != nil {
		return fail(fmt.Errorf("place init: %w", err))
	}
	icfg := initConfig{
		Root:        c.rootfs,
		Binds:       binds,
		Devices:     cfg.Devices,
		TmpBytes:    cfg.TmpBytes,
		Hostname:    c.handle[:min(len(c.handle), 64)],
		Loopback:    cfg.PrivateNetwork,
		CgroupFiles: len(procsFiles),
		CgroupV2:    c.b.cgroups.version() == 2,
	}
	if err := json.NewEncoder(cfgW).Encode(icfg); err != nil {
		return fail(fmt.Errorf("configure init: %w", err))
	}
	cfgW.Close()
	deadline := time.Now().Add(cfg.StartTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = resR.SetReadDeadline(deadline)
	msg, err := io.ReadAll(resR)
	if err != nil || string(msg) != "ok" {
		return fail(fmt.Errorf("init setup failed: %s%w", msg, errors.Join(err, errInitSetup)))
	}
	done := make(chan struct{})
	go func() {
		// Ends when the init exits: Stop and Destroy kill it; after Close
		// it keeps running and so does this goroutine, reaping it if it
		// ever exits.
		_ = cmd.Wait()
		close(done)
	}()
	c.initDone = done
	c.cg.ignore(cmd.Process.Pid)
	c.st.InitPID = cmd.Process.Pid
	c.st.InitStart, _ = startTicks(cmd.Process.Pid)
	if cfg.PrivateNetwork {
		return c.openForwarderLocked()
	}
	return nil
}

// errInitSetup marks a failure of the init to build the container.
var errInitSetup = errors.New("see init.log in the container's directory")

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// startTicks reads a process's start time (clock ticks after boot) from
// /proc/<pid>/stat; with the pid it identifies the process across pid
// reuse.
func startTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStartTicks(b)
}

// parseStartTicks extracts field 22 (starttime) of a /proc/<pid>/stat
// line. The command name (field 2) may hold spaces and parentheses, so
// fields are counted from the last ')'.
func parseStartTicks(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	fields := splitFields(b[i+1:])
	// fields[0] is field 3 (state); starttime is field 22; a zombie or
	// dead process is reported as gone.
	if len(fields) < 20 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 20", len(fields))
	}
	if s := fields[0]; s == "Z" || s == "X" {
		return 0, fs.ErrNotExist
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

func splitFields(b []byte) []string {
	var out []string
	start := -1
	for i, ch := range b {
		space := ch == ' ' || ch == '\n' || ch == '\t'
		switch {
		case !space && start < 0:
			start = i
		case space && start >= 0:
			out = append(out, string(b[start:i]))
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, string(b[start:]))
	}
	return out
}

// appEmpty reports whether the container has no process left.
func (c *container) appEmpty() bool {
	if c.cg == nil {
		return false
	}
	pids, err := c.cg.procs()
	return err == nil && len(pids) == 0
}

// initAlive reports whether the container's init still runs.
func (c *container) initAlive() bool {
	c.mu.Lock()
	pid, start := c.st.InitPID, c.st.InitStart
	c.mu.Unlock()
	if pid <= 0 {
		return false
	}
	got, err := startTicks(pid)
	return err == nil && (start == 0 || got == start)
}

// call sends one request to the init and returns its first reply and the
// connection, which the caller closes.
func (c *container) call(ctx context.Context, req request, files ...*os.File) (reply, *net.UnixConn, error) {
	r, conn, got, err := c.callFiles(ctx, req, files...)
	closeAll(got)
	return r, conn, err
}

// callFiles is call also returning the descriptors the reply carried.
func (c *container) callFiles(ctx context.Context, req request, files ...*os.File) (reply, *net.UnixConn, []*os.File, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unixpacket", filepath.Join(c.dir, socketFile))
	if err != nil {
		return reply{}, nil, nil, fmt.Errorf("init of %s unreachable: %w", c.handle, err)
	}
	conn := nc.(*net.UnixConn)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := send(conn, req, files...); err != nil {
		conn.Close()
		return reply{}, nil, nil, fmt.Errorf("request to init: %w", err)
	}
	b, got, err := recv(conn, replyBuf)
	if err == nil {
		var r reply
		if r, err = decodeReply(b); err == nil {
			return r, conn, got, nil
		}
	}
	closeAll(got)
	conn.Close()
	if ctx.Err() != nil {
		return reply{}, nil, nil, ctx.Err()
	}
	return reply{}, nil, nil, fmt.Errorf("reply from init: %w", err)
}

// reattach rebuilds the processes of a container found on disk.
func (c *container) reattach() {
	c.mu.Lock()
	defer c.mu.Unlock()
	alive := c.st.State == warden.StateActive && c.initAliveLocked()
	var known map[string]procEntry
	if alive {
		ctx, cancel := context.WithTimeout(c.b.ctx, 5*time.Second)
		r, conn, err := c.call(ctx, request{Op: opList})
		cancel()
		if err == nil {
			conn.Close()
			known = map[string]procEntry{}
			for _, e := range r.Procs {
				known[e.ID] = e
			}
		} else {
			c.b.log.Warn("init-unreachable", "handle", c.handle, "error", err)
			alive = false
		}
	}
	if alive && c.b.cfg.PrivateNetwork {
		if err := c.openForwarderLocked(); err != nil {
			c.b.log.Warn("ports-not-forwarded", "handle", c.handle, "error", err)
		}
	}
	if !alive && c.st.State == warden.StateActive {
		// The init is gone (the host rebooted, or it was killed): so is
		// the container. Kill what may be left of it.
		c.st.State = warden.StateStopped
		if c.cg != nil {
			_ = c.cg.kill()
		}
	}
	for i := range c.st.Processes {
		ps := &c.st.Processes[i]
		p := newProcess(c, ps.ID, ps.PID)
		p.stdout.Path, p.stderr.Path = ps.StdoutPath, ps.StderrPath
		c.procs[ps.ID] = p
		e, ok := known[ps.ID]
		switch {
		case ps.Exited:
			p.exit.Finish(ps.ExitStatus)
		case !ok:
			ps.Exited, ps.ExitStatus = true, warden.ExitStatusUnknown
			p.exit.Finish(warden.ExitStatusUnknown)
		case e.Exited:
			ps.Exited, ps.ExitStatus = true, e.Status
			p.exit.Finish(e.Status)
		default:
			c.b.wg.Add(1)
			go func() {
				defer c.b.wg.Done()
				p.awaitReattached()
			}()
		}
	}
	c.persistLocked()
}

func (c *container) initAliveLocked() bool {
	if c.st.InitPID <= 0 {
		return false
	}
	got, err := startTicks(c.st.InitPID)
	return err == nil && (c.st.InitStart == 0 || got == c.st.InitStart)
}

// killAll terminates every app process: SIGTERM, up to grace, then
// SIGKILL until the group is empty; then it waits for the exits to be
// recorded.
func (c *container) killAll(ctx context.Context, grace time.Duration) error {
	if c.cg == nil {
		return c.awaitExits(ctx)
	}
	if grace > 0 {
		if err := c.cg.signal(unix.SIGTERM); err != nil {
			return err
		}
		if _, err := c.waitEmpty(ctx, time.Now().Add(grace)); err != nil {
			return err
		}
	}
	// Not bounded by ctx: what is killed goes at once.
	for {
		left, err := c.waitEmpty(context.WithoutCancel(ctx), time.Now())
		if err != nil {
			return err
		}
		if left == 0 {
			break
		}
		if err := c.cg.kill(); err != nil {
			return err
		}
		if _, err := c.waitEmpty(context.WithoutCancel(ctx), time.Now().Add(100*time.Millisecond)); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err // killed, but some process lingers (uninterruptible sleep)
		}
	}
	return c.awaitExits(ctx)
}

// waitEmpty polls the app cgroup until it is empty, the deadline passes
// or ctx ends, and returns how many processes are left.
func (c *container) waitEmpty(ctx context.Context, deadline time.Time) (int, error) {
	every := 500 * time.Microsecond
	for {
		pids, err := c.cg.procs()
		if err != nil {
			return 0, err
		}
		if len(pids) == 0 || !time.Now().Before(deadline) || ctx.Err() != nil {
			return len(pids), nil
		}
		t := time.NewTimer(min(every, time.Until(deadline)))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		every = min(2*every, 10*time.Millisecond)
	}
}

// awaitExits waits until the exits of all processes are recorded.
func (c *container) awaitExits(ctx context.Context) error {
	c.mu.Lock()
	procs := slices.Collect(maps.Values(c.procs))
	c.mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.exit.Done():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// stopInit kills the init (its namespaces and mounts go with it) and
// waits for it to go.
func (c *container) stopInit(ctx context.Context) error {
	if !c.initAlive() {
		return nil
	}
	c.mu.Lock()
	pid, done := c.st.InitPID, c.initDone
	c.mu.Unlock()
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	if done != nil {
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for c.initAlive() { // not our child: its parent reaps it
		select {
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Stop implements warden.Container.
func (c *container) Stop(ctx context.Context, grace time.Duration) error {
	c.mu.Lock()
	if err := c.checkLocked(); err != nil {
		c.mu.Unlock()
		return err
	}
	if c.st.State != warden.StateStopped {
		c.st.State = warden.StateStopped
		c.persistLocked()
	}
	c.mu.Unlock()
	c.closeForwarder()
	if err := c.killAll(ctx, grace); err != nil {
		return c.errorf("stop", err)
	}
	if err := c.stopInit(ctx); err != nil {
		return c.errorf("stop", err)
	}
	c.b.log.Info("container-stopped", "handle", c.handle)
	return nil
}

// destroy kills everything and removes the container's cgroups and
// directory.
func (c *container) destroy(ctx context.Context) error {
	c.mu.Lock()
	c.st.State = warden.StateStopped
	c.destroyed = true
	c.mu.Unlock()
	c.closeForwarder()
	if err := c.killAll(ctx, 0); err != nil {
		return c.errorf("destroy", err)
	}
	if err := c.stopInit(ctx); err != nil {
		return c.errorf("destroy", err)
	}
	if c.cg != nil {
		if err := c.cg.destroy(); err != nil {
			return c.errorf("destroy", err)
		}
	}
	if err := hostfs.RemoveAll(c.dir); err != nil {
		return c.errorf("destroy", err)
	}
	return nil
}

// NetIn implements warden.Container.
func (c *container) NetIn(ctx context.Context, hostPort, containerPort uint32) (warden.PortMapping, error) {
	if err := c.check(ctx); err != nil {
		return warden.PortMapping{}, err
	}
	c.mu.Lock()
	stopped, fwd := c.st.State == warden.StateStopped, c.fwd
	c.mu.Unlock()
	if stopped {
		return warden.PortMapping{}, c.errorf("net in", warden.ErrStopped)
	}
	var m warden.PortMapping
	if fwd != nil {
		var err error
		if m, err = fwd.listen(c.b.cfg.HostIP, hostPort, containerPort); err != nil {
			return warden.PortMapping{}, c.errorf("net in", err)
		}
		if err := c.b.ports.Claim(c.handle, m.HostPort); err != nil {
			return warden.PortMapping{}, c.errorf("net in", err)
		}
	} else {
		if hostPort != 0 && containerPort != 0 && hostPort != containerPort {
			return warden.PortMapping{}, c.errorf("net in", fmt.Errorf("host port %d != container port %d in the host's network namespace: %w", hostPort, containerPort, errors.ErrUnsupported))
		}
		port, err := c.b.ports.Reserve(c.b.cfg.HostIP, c.handle, max(hostPort, containerPort))
		if err != nil {
			return warden.PortMapping{}, c.errorf("net in", err)
		}
		m = warden.PortMapping{HostPort: port, ContainerPort: port}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.Ports = append(c.st.Ports, m)
	c.persistLocked()
	return m, nil
}

// SetLimits implements warden.Container.
func (c *container) SetLimits(ctx context.Context, limits warden.Limits) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	c.st.Limits = limits
	c.persistLocked()
	c.mu.Unlock()
	if c.cg == nil {
		return nil
	}
	if err := c.cg.setLimits(limits, c.b.res); err != nil {
		// v1 refuses a memory limit below current use (EBUSY).
		return c.errorf("set limits", fmt.Errorf("%w: %w", warden.ErrLimitExceeded, err))
	}
	return nil
}

// checkOOM turns new OOM kills counted by the cgroup into events.
func (c *container) checkOOM() {
	if c.cg == nil {
		return
	}
	n, err := c.cg.oomKills()
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if n <= c.st.OOMKills || c.destroyed {
		return
	}
	c.st.OOMKills = n
	c.st.Events = append(c.st.Events, warden.EventOutOfMemory)
	c.persistLocked()
	c.b.metrics.OOMKills.Inc()
	c.b.log.Warn("oom-kill", "handle", c.handle, "oom_kills", n, "limit", c.st.Limits.MemoryBytes)
}

// enforceDisk kills the container's processes when its files exceed the
// disk limit.
func (c *container) enforceDisk() {
	c.mu.Lock()
	limit, active := c.st.Limits.DiskBytes, c.st.State == warden.StateActive && !c.destroyed
	c.mu.Unlock()
	if limit == 0 || !active || c.cg == nil {
		return
	}
	used, err := hostfs.DiskUsage(c.rootfs)
	if err != nil || used <= limit {
		return
	}
	if pids, err := c.cg.procs(); err != nil || len(pids) == 0 {
		return
	}
	c.mu.Lock()
	c.st.Events = append(c.st.Events, EventOutOfDisk)
	c.persistLocked()
	c.mu.Unlock()
	c.b.metrics.diskKills.Inc()
	c.b.log.Warn("disk-kill", "handle", c.handle, "used", used, "limit", limit)
	ctx, cancel := context.WithTimeout(c.b.ctx, 10*time.Second)
	defer cancel()
	if err := c.killAll(ctx, 0); err != nil {
		c.b.log.Error("disk-kill-failed", "handle", c.handle, "error", err)
	}
}

// Info implements warden.Container.
func (c *container) Info(ctx context.Context) (warden.ContainerInfo, error) {
	if err := c.check(ctx); err != nil {
		return warden.ContainerInfo{}, err
	}
	var pids []int
	var usage warden.Usage
	if c.cg != nil {
		var err error
		if pids, err = c.cg.procs(); err != nil {
			return warden.ContainerInfo{}, c.errorf("info", err)
		}
		if usage.MemoryBytes, usage.CPU, err = c.cg.usage(); err != nil {
			return warden.ContainerInfo{}, c.errorf("info", err)
		}
		c.checkOOM()
	}
	disk, err := hostfs.DiskUsage(c.rootfs)
	if err != nil {
		return warden.ContainerInfo{}, c.errorf("info", err)
	}
	usage.DiskBytes = disk
	c.mu.Lock()
	defer c.mu.Unlock()
	var live []string
	for id, p := range c.procs {
		if !p.exit.HasExited() {
			live = append(live, id)
		}
	}
	return c.st.Info(c.b.cfg.HostIP, c.rootfs, pids, usage, live), nil
}

// StreamIn implements warden.Container.
func (c *container) StreamIn(ctx context.Context, dst string, r io.Reader) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	limit := c.st.Limits.DiskBytes
	c.mu.Unlock()
	if err := hostfs.Extract(ctx, c.rootfs, dst, r, limit, c.owner()); err != nil {
		return c.errorf("stream in "+dst, err)
	}
	return nil
}

// StreamOut implements warden.Container.
func (c *container) StreamOut(ctx context.Context, src string) (io.ReadCloser, error) {
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	rc, err := hostfs.Archive(ctx, c.rootfs, src)
	if err != nil {
		return nil, c.errorf("stream out "+src, err)
	}
	return rc, nil
}
