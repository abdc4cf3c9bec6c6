package fake

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-paas/kiln/warden"
)

// container is a fake warden.Container.
type container struct {
	b      *Backend
	handle string
	props  warden.Properties
	env    []string

	sig sync.Mutex // guards the signal state of all tasks

	mu        sync.Mutex
	destroyed bool
	state     warden.State
	fs        *memFS
	limits    warden.Limits
	ports     []warden.PortMapping
	procs     map[string]*process
	tasks     map[int]*task // live tasks by pid
	events    []warden.Event
	usage     warden.Usage // overrides from SetUsage
}

var _ warden.Container = (*container)(nil)

func newContainer(b *Backend, handle string, spec warden.ContainerSpec) *container {
	return &container{
		b:      b,
		handle: handle,
		props:  maps.Clone(spec.Properties),
		env:    slices.Clone(spec.Env),
		state:  warden.StateActive,
		fs:     newMemFS(),
		limits: spec.Limits,
		procs:  map[string]*process{},
		tasks:  map[int]*task{},
	}
}

// Handle implements warden.Container.
func (c *container) Handle() string { return c.handle }

// enter checks for an injected failure and a destroyed container.
func (c *container) enter(ctx context.Context, op Op) error {
	if err := c.b.injected(op, c.handle); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.destroyed {
		return fmt.Errorf("fake: container %q: %w", c.handle, warden.ErrNotFound)
	}
	return nil
}

func (c *container) errorf(op string, err error) error {
	return fmt.Errorf("fake: %s %s: %w", c.handle, op, err)
}

// StreamIn implements warden.Container.
func (c *container) StreamIn(ctx context.Context, dst string, r io.Reader) error {
	if err := c.enter(ctx, OpStreamIn); err != nil {
		return err
	}
	// Read the archive before locking so a slow reader does not hold up
	// the container; the fake keeps everything in memory anyway.
	data, err := io.ReadAll(r)
	if err != nil {
		return c.errorf("stream in", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.fs.extract(ctx, dst, bytes.NewReader(data), c.limits.DiskBytes); err != nil {
		return c.errorf("stream in "+dst, err)
	}
	return nil
}

// StreamOut implements warden.Container.
func (c *container) StreamOut(ctx context.Context, src string) (io.ReadCloser, error) {
	if err := c.enter(ctx, OpStreamOut); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	data, err := c.fs.archive(src)
	if err != nil {
		return nil, c.errorf("stream out "+src, err)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// Run implements warden.Container.
func (c *container) Run(ctx context.Context, spec warden.ProcessSpec, pio warden.ProcessIO) (warden.Process, error) {
	if err := c.enter(ctx, OpRun); err != nil {
		return nil, err
	}
	if spec.Path == "" {
		return nil, c.errorf("run", fmt.Errorf("empty Path: %w", warden.ErrInvalidSpec))
	}
	env := warden.MergeEnv(c.env, spec.Env)
	prog, interpreted := parseProgram(spec, env)
	var beh Behavior
	if !interpreted {
		beh, _ = c.b.behavior(c.handle, spec)
	}
	id := spec.ID
	if id == "" {
		id = "p" + strconv.Itoa(c.b.nextSeq())
	}

	c.mu.Lock()
	if c.state == warden.StateStopped {
		c.mu.Unlock()
		return nil, c.errorf("run", warden.ErrStopped)
	}
	if _, ok := c.procs[id]; ok {
		c.mu.Unlock()
		return nil, c.errorf("run", fmt.Errorf("process %q: %w", id, warden.ErrExists))
	}
	dir, err := c.fs.resolve(spec.Dir, true)
	if err == nil {
		if n := c.fs.nodes[dir]; n == nil || n.kind != kindDir {
			err = fmt.Errorf("working directory %q: %w", spec.Dir, warden.ErrNotFound)
		}
	}
	if err != nil {
		c.mu.Unlock()
		return nil, c.errorf("run", err)
	}
	p := &process{
		id:    id,
		c:     c,
		env:   env,
		dir:   "/" + strings.TrimPrefix(dir, "."),
		stdin: pio.Stdin,
		out:   &output{c: c, w: pio.Stdout, path: spec.StdoutPath},
		errw:  &output{c: c, w: pio.Stderr, path: spec.StderrPath},
	}
	mem := beh.MemoryBytes
	if mem == 0 {
		mem = c.b.cfg.TaskMemoryBytes
	}
	p.main = c.newTaskLocked(mem, nil)
	c.procs[id] = p
	ports := slices.Clone(c.ports)
	c.mu.Unlock()

	c.b.mu.Lock()
	c.b.runs = append(c.b.runs, RunRecord{
		Handle: c.handle, ID: id, Spec: spec, Env: env,
		Interpreted: interpreted, Started: time.Now(),
	})
	c.b.mu.Unlock()
	c.b.log.Debug("process-started", "handle", c.handle, "process", id, "interpreted", interpreted)

	go func() {
		var status int
		if interpreted {
			status = p.runShell(prog)
		} else {
			status = p.runBehavior(beh, ports)
		}
		p.main.finish(status)
	}()
	c.checkMemory()
	return p, nil
}

// newTaskLocked registers a live task; c.mu is held. ignored, when not
// nil, is the parent's set of ignored signals to inherit.
func (c *container) newTaskLocked(mem uint64, ignored map[warden.Signal]bool) *task {
	t := &task{
		pid:     c.b.nextPID(),
		c:       c,
		mem:     mem,
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
		ignored: maps.Clone(ignored),
	}
	if t.ignored == nil {
		t.ignored = map[warden.Signal]bool{}
	}
	c.tasks[t.pid] = t
	return t
}

func (c *container) process(id string) (*process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.destroyed {
		return nil, fmt.Errorf("fake: container %q: %w", c.handle, warden.ErrNotFound)
	}
	p := c.procs[id]
	if p == nil {
		return nil, fmt.Errorf("fake: %s: process %q: %w", c.handle, id, warden.ErrNotFound)
	}
	return p, nil
}

// Attach implements warden.Container. The fake reconnects output: pio's
// writers receive what the process writes from now on, in addition to the
// writers given to Run.
func (c *container) Attach(ctx context.Context, id string, pio warden.ProcessIO) (warden.Process, error) {
	if err := c.enter(ctx, OpAttach); err != nil {
		return nil, err
	}
	p, err := c.process(id)
	if err != nil {
		return nil, err
	}
	p.out.attach(pio.Stdout)
	p.errw.attach(pio.Stderr)
	return p, nil
}

// NetIn implements warden.Container.
func (c *container) NetIn(ctx context.Context, hostPort, containerPort uint32) (warden.PortMapping, error) {
	if err := c.enter(ctx, OpNetIn); err != nil {
		return warden.PortMapping{}, err
	}
	c.mu.Lock()
	stopped := c.state == warden.StateStopped
	c.mu.Unlock()
	if stopped {
		return warden.PortMapping{}, c.errorf("net in", warden.ErrStopped)
	}
	hp, err := c.b.reservePort(c.handle, hostPort)
	if err != nil {
		return warden.PortMapping{}, c.errorf("net in", err)
	}
	if containerPort == 0 {
		containerPort = hp
	}
	m := warden.PortMapping{HostPort: hp, ContainerPort: containerPort}
	c.mu.Lock()
	c.ports = append(c.ports, m)
	c.mu.Unlock()
	return m, nil
}

// SetLimits implements warden.Container.
func (c *container) SetLimits(ctx context.Context, limits warden.Limits) error {
	if err := c.enter(ctx, OpSetLimits); err != nil {
		return err
	}
	c.mu.Lock()
	c.limits = limits
	c.mu.Unlock()
	c.checkMemory()
	return nil
}

// memoryLocked sums the live tasks' memory; c.mu is held.
func (c *container) memoryLocked() uint64 {
	if c.usage.MemoryBytes != 0 {
		return c.usage.MemoryBytes
	}
	var sum uint64
	for _, t := range c.tasks {
		sum += t.mem
	}
	return sum
}

// checkMemory OOM-kills the container when its tasks exceed the limit.
func (c *container) checkMemory() {
	c.mu.Lock()
	over := c.limits.MemoryBytes > 0 && c.memoryLocked() > c.limits.MemoryBytes
	c.mu.Unlock()
	if over {
		c.oomKill()
	}
}

func (c *container) oomKill() {
	c.mu.Lock()
	c.events = append(c.events, warden.EventOutOfMemory)
	tasks := c.liveTasksLocked()
	c.mu.Unlock()
	c.b.log.Debug("oom-kill", "handle", c.handle)
	deliverAll(c, tasks, warden.SignalKill)
}

func (c *container) liveTasksLocked() []*task {
	out := make([]*task, 0, len(c.tasks))
	for _, t := range c.tasks {
		out = append(out, t)
	}
	return out
}

// Info implements warden.Container.
func (c *container) Info(ctx context.Context) (warden.ContainerInfo, error) {
	if err := c.enter(ctx, OpInfo); err != nil {
		return warden.ContainerInfo{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	info := warden.ContainerInfo{
		Handle:     c.handle,
		State:      c.state,
		Properties: maps.Clone(c.props),
		HostIP:     c.b.cfg.HostIP,
		Ports:      slices.Clone(c.ports),
		Limits:     c.limits,
		Events:     slices.Clone(c.events),
		Usage: warden.Usage{
			MemoryBytes: c.memoryLocked(),
			CPU:         c.usage.CPU,
			DiskBytes:   c.fs.size,
		},
	}
	for id, p := range c.procs {
		if !p.main.exited() {
			info.ProcessIDs = append(info.ProcessIDs, id)
		}
	}
	for pid := range c.tasks {
		info.PIDs = append(info.PIDs, pid)
	}
	slices.Sort(info.ProcessIDs)
	slices.Sort(info.PIDs)
	return info, nil
}

// Stop implements warden.Container.
func (c *container) Stop(ctx context.Context, grace time.Duration) error {
	if err := c.enter(ctx, OpStop); err != nil {
		return err
	}
	c.mu.Lock()
	c.state = warden.StateStopped
	tasks := c.liveTasksLocked()
	c.mu.Unlock()
	return c.errorIf("stop", terminate(ctx, c, tasks, grace))
}

func (c *container) errorIf(op string, err error) error {
	if err != nil {
		return c.errorf(op, err)
	}
	return nil
}

// terminate sends SIGTERM to tasks, waits up to grace, then kills the rest
// and waits for them. If ctx ends first it kills at once and returns ctx's
// error.
func terminate(ctx context.Context, c *container, tasks []*task, grace time.Duration) error {
	if grace > 0 {
		deliverAll(c, tasks, warden.SignalTerminate)
		timer := time.NewTimer(grace)
		defer timer.Stop()
		if allDone(ctx, tasks, timer.C) {
			return nil
		}
	}
	deliverAll(c, tasks, warden.SignalKill)
	if allDone(ctx, tasks, nil) {
		return nil
	}
	return ctx.Err()
}

// allDone waits until every task is done (true), or ctx ends or timeout
// fires (false).
func allDone(ctx context.Context, tasks []*task, timeout <-chan time.Time) bool {
	for _, t := range tasks {
		select {
		case <-t.done:
		case <-ctx.Done():
			return false
		case <-timeout:
			return false
		}
	}
	return true
}

// destroy kills everything at once and marks the container gone.
func (c *container) destroy(ctx context.Context) error {
	c.mu.Lock()
	c.destroyed = true
	c.state = warden.StateStopped
	tasks := c.liveTasksLocked()
	c.mu.Unlock()
	// Killed fake tasks end promptly; bound the wait anyway so a cancelled
	// ctx cannot hang Destroy.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return c.errorIf("destroy", terminate(ctx, c, tasks, 0))
}
