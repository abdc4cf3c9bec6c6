package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/internal/hostfs"
)

// killPoll is how often Stop checks whether processes have gone: short,
// because Stop's latency is the DEA's stop latency.
const killPoll = time.Millisecond

// container is a process-backend warden.Container.
type container struct {
	b      *Backend
	handle string
	dir    string // Root/<handle>
	rootfs string // dir/rootfs

	mu        sync.Mutex
	st        *containerState
	destroyed bool
	procs     map[string]*process
}

var _ warden.Container = (*container)(nil)

func (b *Backend) newContainer(dir string, st *containerState) *container {
	return &container{
		b:      b,
		handle: st.Handle,
		dir:    dir,
		rootfs: filepath.Join(dir, rootDir),
		st:     st,
		procs:  map[string]*process{},
	}
}

// Handle implements warden.Container.
func (c *container) Handle() string { return c.handle }

func (c *container) errorf(op string, err error) error {
	return fmt.Errorf("process: %s %s: %w", c.handle, op, err)
}

func (c *container) matches(match warden.Properties) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Matches(match)
}

// checkLocked reports a destroyed container; c.mu is held.
func (c *container) checkLocked() error {
	if c.destroyed {
		return fmt.Errorf("process: container %q: %w", c.handle, warden.ErrNotFound)
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

// reattach rebuilds the processes of a container found on disk.
func (c *container) reattach() {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	for i := range c.st.Processes {
		ps := &c.st.Processes[i]
		p := newProcess(c, ps.ID, ps.PID, ps.StartTicks, false)
		p.stdout.Path, p.stderr.Path = ps.StdoutPath, ps.StderrPath
		c.procs[ps.ID] = p
		if ps.Exited {
			p.exit.Finish(ps.ExitStatus)
			continue
		}
		if !c.b.sameProcess(ps.PID, ps.StartTicks) {
			ps.Exited, ps.ExitStatus = true, warden.ExitStatusUnknown
			p.exit.Finish(warden.ExitStatusUnknown)
			changed = true
			continue
		}
		c.b.wg.Add(1)
		go func() {
			defer c.b.wg.Done()
			p.pollExit()
		}()
	}
	if changed {
		c.persistLocked()
	}
}

// sameProcess reports whether pid is alive and is the process that
// started at startTicks (0: unknown, not compared).
func (b *Backend) sameProcess(pid int, startTicks uint64) bool {
	st, err := readStat(b.cfg.ProcRoot, pid)
	if err != nil || !st.alive() {
		return false
	}
	return startTicks == 0 || st.StartTicks == startTicks
}

// sessionsLocked returns the session ids that may still hold processes.
func (c *container) sessionsLocked() []int {
	var ids []int
	for _, ps := range c.st.Processes {
		if !ps.SessionGone {
			ids = append(ids, ps.PID)
		}
	}
	return ids
}

// scan lists the live processes of the container's sessions and groups
// from a fresh reading of /proc, and marks sessions found empty as gone.
func (c *container) scan() ([]procStat, error) {
	x, err := c.b.procs.fresh()
	if err != nil {
		return nil, err
	}
	return c.members(x), nil
}

// members picks the container's processes out of a reading of /proc.
func (c *container) members(x *procIndex) []procStat {
	c.mu.Lock()
	ids := c.sessionsLocked()
	c.mu.Unlock()
	var out, found []procStat
	var gone []int
	for _, id := range ids {
		found = x.members(id)
		out = append(out, found...)
		// kill(-pgid, 0) is the kernel's own answer to "is anyone left in
		// this group", closing the gap of a child forked while /proc was
		// being read. A zombie leader still counts until it is reaped.
		if len(found) == 0 && errors.Is(unix.Kill(-id, 0), unix.ESRCH) {
			gone = append(gone, id)
		}
	}
	if len(gone) > 0 {
		c.markGone(gone)
	}
	return out
}

func (c *container) markGone(ids []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := false
	for i := range c.st.Processes {
		ps := &c.st.Processes[i]
		// Only once the leader has exited: a live leader is always found,
		// so an empty group with a live leader means a racing read.
		if ps.Exited && !ps.SessionGone && slices.Contains(ids, ps.PID) {
			ps.SessionGone = true
			changed = true
		}
	}
	if changed {
		c.pruneLocked()
		c.persistLocked()
	}
}

// maxExitedKept bounds how many finished processes the state file keeps
// (for Attach and Wait after a restart); older ones are dropped.
const maxExitedKept = 32

func (c *container) pruneLocked() {
	n := 0
	for _, ps := range c.st.Processes {
		if ps.Exited && ps.SessionGone {
			n++
		}
	}
	for i := 0; n > maxExitedKept && i < len(c.st.Processes); {
		if ps := c.st.Processes[i]; ps.Exited && ps.SessionGone {
			c.st.Processes = slices.Delete(c.st.Processes, i, i+1)
			n--
			continue
		}
		i++
	}
}

// signalAll sends sig to every group of the container and to each listed
// process (which may have left its group).
func (c *container) signalAll(sig unix.Signal, live []procStat) {
	c.mu.Lock()
	ids := c.sessionsLocked()
	c.mu.Unlock()
	for _, id := range ids {
		_ = unix.Kill(-id, sig) // ESRCH: group already empty
	}
	for _, p := range live {
		_ = unix.Kill(p.PID, sig)
	}
	c.b.procs.invalidate()
}

// killAll terminates every process: SIGTERM, up to grace, then SIGKILL,
// and waits until none is left and exits are recorded.
func (c *container) killAll(ctx context.Context, grace time.Duration) error {
	live, err := c.scan()
	if err != nil {
		return err
	}
	if grace > 0 && len(live) > 0 {
		c.signalAll(unix.SIGTERM, live)
		if live, err = c.waitGone(ctx, time.Now().Add(grace)); err != nil {
			return err
		}
	}
	// Kill until nothing is left: a process may fork between scans. Not
	// bounded by ctx: what is killed goes at once.
	for len(live) > 0 {
		c.signalAll(unix.SIGKILL, live)
		if live, err = c.waitGone(context.WithoutCancel(ctx), time.Now().Add(killScanEvery)); err != nil {
			return err
		}
	}
	return c.awaitExits(ctx)
}

// killScanEvery bounds how often waitGone re-reads all of /proc while
// process groups still report members: reading /proc costs milliseconds,
// the kill(-pgid, 0) check in between microseconds. Scans start 1ms apart
// and back off to this: a group often holds zombies whose parent died and
// which init reaps on its own time, which only a scan tells apart.
const killScanEvery = 25 * time.Millisecond

// waitGone waits until the container has no live process (returning
// none), or until deadline or ctx's end (returning those left).
func (c *container) waitGone(ctx context.Context, deadline time.Time) ([]procStat, error) {
	t := time.NewTicker(killPoll)
	defer t.Stop()
	every := killPoll
	nextScan := time.Now().Add(every)
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return c.scan()
		}
		now := time.Now()
		if c.groupsEmpty() || !now.Before(nextScan) || !now.Before(deadline) {
			// Confirm with a scan: members that left their group but not
			// their session, and unreaped zombies, are only told apart there.
			live, err := c.scan()
			if err != nil || len(live) == 0 || !now.Before(deadline) {
				return live, err
			}
			every = min(2*every, killScanEvery)
			nextScan = now.Add(every)
		}
	}
}

// groupsEmpty reports whether every process group of the container is
// empty, according to the kernel.
func (c *container) groupsEmpty() bool {
	c.mu.Lock()
	ids := c.sessionsLocked()
	c.mu.Unlock()
	for _, id := range ids {
		if !errors.Is(unix.Kill(-id, 0), unix.ESRCH) {
			return false
		}
	}
	return true
}

// awaitExits waits for the waiters of this container's children to
// record their exits, and records reattached ones as gone.
func (c *container) awaitExits(ctx context.Context) error {
	c.mu.Lock()
	procs := slices.Collect(maps.Values(c.procs))
	c.mu.Unlock()
	for _, p := range procs {
		if !p.child {
			if !p.exit.HasExited() && !c.b.sameProcess(p.pid, p.startTicks) {
				c.processExited(p, warden.ExitStatusUnknown)
			}
			continue
		}
		select {
		case <-p.exit.Done():
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
	if err := c.killAll(ctx, grace); err != nil {
		return c.errorf("stop", err)
	}
	c.b.log.Info("container-stopped", "handle", c.handle)
	return nil
}

// destroy kills everything and removes the container's directory.
func (c *container) destroy(ctx context.Context) error {
	c.mu.Lock()
	c.st.State = warden.StateStopped
	c.destroyed = true
	c.mu.Unlock()
	if err := c.killAll(ctx, 0); err != nil {
		return c.errorf("destroy", err)
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
	if hostPort != 0 && containerPort != 0 && hostPort != containerPort {
		return warden.PortMapping{}, c.errorf("net in", fmt.Errorf("host port %d != container port %d without network isolation: %w", hostPort, containerPort, errors.ErrUnsupported))
	}
	c.mu.Lock()
	stopped := c.st.State == warden.StateStopped
	c.mu.Unlock()
	if stopped {
		return warden.PortMapping{}, c.errorf("net in", warden.ErrStopped)
	}
	port, err := c.b.ports.Reserve(c.b.cfg.HostIP, c.handle, max(hostPort, containerPort))
	if err != nil {
		return warden.PortMapping{}, c.errorf("net in", err)
	}
	m := warden.PortMapping{HostPort: port, ContainerPort: port}
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
	if err := c.b.checkFDLimit(limits.FileDescriptors); err != nil {
		return c.errorf("set limits", err)
	}
	c.mu.Lock()
	c.st.Limits = limits
	c.persistLocked()
	c.mu.Unlock()
	if limits.FileDescriptors == 0 {
		return nil
	}
	live, err := c.scan()
	if err != nil {
		return c.errorf("set limits", err)
	}
	rl := unix.Rlimit{Cur: limits.FileDescriptors, Max: limits.FileDescriptors}
	for _, p := range live {
		// Best effort: the process may have exited since the scan.
		_ = unix.Prlimit(p.PID, unix.RLIMIT_NOFILE, &rl, nil)
	}
	return nil
}

// limitedSessions returns the sessions to check when a memory limit is
// set, else nil.
func (c *container) limitedSessions() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.destroyed || c.st.Limits.MemoryBytes == 0 {
		return nil
	}
	return c.sessionsLocked()
}

// enforceMemory kills the container's processes if their resident memory
// in x exceeds the limit.
func (c *container) enforceMemory(x *procIndex) {
	var rss uint64
	for _, p := range c.members(x) {
		rss += p.RSSPages * uint64(os.Getpagesize())
	}
	c.mu.Lock()
	limit := c.st.Limits.MemoryBytes
	over := limit > 0 && rss > limit && !c.destroyed
	if over {
		c.st.Events = append(c.st.Events, warden.EventOutOfMemory)
		c.persistLocked()
	}
	c.mu.Unlock()
	if !over {
		return
	}
	c.b.metrics.OOMKills.Inc()
	c.b.log.Warn("oom-kill", "handle", c.handle, "rss", rss, "limit", limit)
	ctx, cancel := context.WithTimeout(c.b.ctx, 10*time.Second)
	defer cancel()
	if err := c.killAll(ctx, 0); err != nil {
		c.b.log.Error("oom-kill-failed", "handle", c.handle, "error", err)
	}
}

// Info implements warden.Container.
func (c *container) Info(ctx context.Context) (warden.ContainerInfo, error) {
	if err := c.check(ctx); err != nil {
		return warden.ContainerInfo{}, err
	}
	x, err := c.b.procs.recent(c.b.cfg.UsageMaxAge)
	if err != nil {
		return warden.ContainerInfo{}, c.errorf("info", err)
	}
	live := c.members(x)
	disk, err := hostfs.DiskUsage(c.rootfs)
	if err != nil {
		return warden.ContainerInfo{}, c.errorf("info", err)
	}
	var pids []int
	usage := warden.Usage{DiskBytes: disk}
	var ticks uint64
	for _, p := range live {
		pids = append(pids, p.PID)
		usage.MemoryBytes += p.RSSPages * uint64(os.Getpagesize())
		ticks += p.CPUTicks
	}
	usage.CPU = ticksToDuration(ticks)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.Info(c.b.cfg.HostIP, c.rootfs, pids, usage, c.liveIDsLocked()), nil
}

// liveIDsLocked lists the ids of the processes that have not exited;
// c.mu is held.
func (c *container) liveIDsLocked() []string {
	var ids []string
	for id, p := range c.procs {
		if !p.exit.HasExited() {
			ids = append(ids, id)
		}
	}
	return ids
}

// StreamIn implements warden.Container.
func (c *container) StreamIn(ctx context.Context, dst string, r io.Reader) error {
	if err := c.check(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	limit := c.st.Limits.DiskBytes
	c.mu.Unlock()
	if err := hostfs.Extract(ctx, c.rootfs, dst, r, limit, nil); err != nil {
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
