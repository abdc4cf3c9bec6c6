package linux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"time"

	"github.com/google/uuid"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/internal/exitstatus"
	"github.com/kiln-paas/kiln/warden/internal/stdio"
)

// ExitReasoner is implemented by the processes this backend returns: it
// tells why a process exited when the status alone does not.
type ExitReasoner interface {
	// ExitReason returns ReasonOutOfMemory when the kernel's OOM killer
	// killed the process for exceeding the container's memory limit, and
	// "" otherwise (including while it runs).
	ExitReason() string
}

// ReasonOutOfMemory is the exit reason of a process killed for exceeding
// Limits.MemoryBytes.
const ReasonOutOfMemory = "out of memory"

// process is one process of a container, started by the container's init.
type process struct {
	id  string
	c   *container
	pid int // inside the container's pid namespace

	stdout, stderr stdio.Output
	oomBefore      uint64 // the cgroup's OOM kills when started

	exit   *exitstatus.Exit // Done once exit and output are recorded
	reason string
}

var (
	_ warden.Process = (*process)(nil)
	_ ExitReasoner   = (*process)(nil)
)

func newProcess(c *container, id string, pid int) *process {
	return &process{id: id, c: c, pid: pid, exit: exitstatus.New()}
}

// ID implements warden.Process.
func (p *process) ID() string { return p.id }

// ExitReason implements ExitReasoner.
func (p *process) ExitReason() string {
	select {
	case <-p.exit.Done():
		return p.reason
	default:
		return ""
	}
}

// Wait implements warden.Process.
func (p *process) Wait(ctx context.Context) (int, error) {
	status, err := p.exit.Wait(ctx)
	if err != nil {
		return 0, fmt.Errorf("linux: wait %s/%s: %w", p.c.handle, p.id, err)
	}
	return status, nil
}

// Signal implements warden.Process.
func (p *process) Signal(ctx context.Context, sig warden.Signal) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := fmt.Errorf("linux: signal %s/%s: %w", p.c.handle, p.id, warden.ErrProcessDone)
	if p.exit.HasExited() || !p.c.initAlive() {
		return done
	}
	r, conn, err := p.c.call(ctx, request{Op: opSignal, ID: p.id, Signal: int(sig)})
	if err != nil {
		return fmt.Errorf("linux: signal %s/%s: %w", p.c.handle, p.id, err)
	}
	conn.Close()
	if err := r.err(); err != nil {
		if errors.Is(err, warden.ErrProcessDone) || errors.Is(err, warden.ErrNotFound) {
			return done
		}
		return fmt.Errorf("linux: signal %s/%s: %w", p.c.handle, p.id, err)
	}
	return nil
}

// awaitExit reads the exit status the init sends on conn. The connection
// closes without one when the init dies or the backend closes.
func (p *process) awaitExit(conn *net.UnixConn) (int, bool) {
	stop := context.AfterFunc(p.c.b.ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	b, _, err := recv(conn, replyBuf)
	if err != nil {
		return 0, false
	}
	r, err := decodeReply(b)
	if err != nil || !r.Exited {
		return 0, false
	}
	return r.Status, true
}

// awaitReattached waits for a process found after a restart.
func (p *process) awaitReattached() {
	r, conn, err := p.c.call(p.c.b.ctx, request{Op: opWait, ID: p.id})
	if err != nil {
		if p.c.b.ctx.Err() == nil {
			p.c.processExited(p, warden.ExitStatusUnknown)
		}
		return
	}
	conn.Close()
	status := warden.ExitStatusUnknown
	if r.err() == nil && r.Exited {
		status = r.Status
	}
	p.c.processExited(p, status)
}

// processExited records p's exit in the container's state and finishes p.
func (c *container) processExited(p *process, status int) {
	if status == warden.Signal(9).ExitStatus() && c.cg != nil {
		if n, err := c.cg.oomKills(); err == nil && n > p.oomBefore {
			p.reason = ReasonOutOfMemory
		}
		c.checkOOM()
	}
	c.mu.Lock()
	for i := range c.st.Processes {
		if ps := &c.st.Processes[i]; ps.ID == p.id && !ps.Exited {
			ps.Exited, ps.ExitStatus = true, status
			c.persistLocked()
		}
	}
	c.mu.Unlock()
	p.exit.Finish(status)
	c.b.log.Info("process-exited", "handle", c.handle, "process", p.id, "pid", p.pid, "status", status, "reason", p.reason)
}

// Run implements warden.Container.
func (c *container) Run(ctx context.Context, spec warden.ProcessSpec, pio warden.ProcessIO) (warden.Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if spec.Path == "" {
		return nil, c.errorf("run", fmt.Errorf("empty Path: %w", warden.ErrInvalidSpec))
	}
	if spec.User != "" && spec.User != c.b.cfg.UserName {
		return nil, c.errorf("run", fmt.Errorf("user %q: only %q: %w", spec.User, c.b.cfg.UserName, errors.ErrUnsupported))
	}
	dir, err := warden.CleanPath(spec.Dir)
	if err != nil {
		return nil, c.errorf("run", err)
	}
	id := spec.ID
	if id == "" {
		id = uuid.NewString()
	}
	// Held across the start so Stop cannot miss a process starting
	// concurrently and ids stay unique.
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkLocked(); err != nil {
		return nil, err
	}
	if c.st.State == warden.StateStopped {
		return nil, c.errorf("run", warden.ErrStopped)
	}
	if _, ok := c.procs[id]; ok {
		return nil, c.errorf("run", fmt.Errorf("process %q: %w", id, warden.ErrExists))
	}
	p, err := c.startLocked(ctx, id, path.Join("/", dir), spec, pio)
	if err != nil {
		return nil, c.errorf("run", err)
	}
	return p, nil
}

// startLocked does Run's work; c.mu is held.
func (c *container) startLocked(ctx context.Context, id, dir string, spec warden.ProcessSpec, pio warden.ProcessIO) (*process, error) {
	env := warden.MergeEnv([]string{"PATH=" + c.b.cfg.DefaultPath, "HOME=/", "USER=" + c.b.cfg.UserName}, warden.MergeEnv(c.st.Env, spec.Env))
	es := &execSpec{
		Path: spec.Path, Args: spec.Args, Env: env, Dir: dir,
		UID: uint32(c.uid), GID: uint32(c.uid), NoFile: c.st.Limits.FileDescriptors,
	}
	p := newProcess(c, id, 0)
	p.stdout.Path, p.stderr.Path = spec.StdoutPath, spec.StderrPath
	if c.cg != nil {
		p.oomBefore, _ = c.cg.oomKills()
	}
	r, err := os.OpenRoot(c.rootfs)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	sio := &processIO{Streams: stdio.Streams{Owner: c.owner(), FollowPoll: followPoll}}
	defer sio.CloseChildEnds()
	files, err := sio.setup(r, es, pio, p)
	if err != nil {
		sio.Abort()
		return nil, err
	}
	rep, conn, pipes, err := c.callFiles(ctx, request{Op: opRun, ID: id, Exec: es}, files...)
	if err == nil {
		if err = rep.err(); err == nil {
			err = sio.connect(pipes)
		}
		if err != nil {
			closeAll(pipes)
			conn.Close()
		}
	}
	if err != nil {
		sio.Abort()
		return nil, err
	}
	sio.CloseChildEnds() // the process holds them now
	p.pid = rep.PID
	c.procs[id] = p
	c.st.Processes = append(c.st.Processes, processState{ID: id, PID: p.pid, StdoutPath: spec.StdoutPath, StderrPath: spec.StderrPath})
	c.pruneLocked()
	c.persistLocked()
	c.b.metrics.Started.Inc()
	c.b.log.Info("process-started", "handle", c.handle, "process", id, "pid", p.pid, "path", spec.Path)
	sio.Start(p.exit.Exited())
	go func() {
		// Ends when the init reports the exit, dies, or the backend closes.
		status, ok := p.awaitExit(conn)
		if !ok && c.b.ctx.Err() != nil {
			return // closed: the next Backend reattaches
		}
		if !ok {
			status = warden.ExitStatusUnknown
		}
		p.exit.MarkExited()
		sio.Drain(c.b.cfg.OutputDrainTimeout, c.drainMore)
		c.processExited(p, status)
	}()
	return p, nil
}

// maxExitedKept bounds how many finished processes the state file keeps
// (for Attach and Wait after a restart); older ones are dropped.
const maxExitedKept = 32

func (c *container) pruneLocked() {
	n := 0
	for _, ps := range c.st.Processes {
		if ps.Exited {
			n++
		}
	}
	kept := c.st.Processes[:0]
	for _, ps := range c.st.Processes {
		if ps.Exited && n > maxExitedKept {
			n--
			delete(c.procs, ps.ID)
			continue
		}
		kept = append(kept, ps)
	}
	c.st.Processes = kept
}

// Attach implements warden.Container.
func (c *container) Attach(ctx context.Context, id string, pio warden.ProcessIO) (warden.Process, error) {
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	p := c.procs[id]
	c.mu.Unlock()
	if p == nil {
		return nil, c.errorf("attach", fmt.Errorf("process %q: %w", id, warden.ErrNotFound))
	}
	if p.exit.HasExited() {
		return p, nil
	}
	p.stdout.Attach(c.rootfs, pio.Stdout, p.exit.Exited(), followPoll)
	p.stderr.Attach(c.rootfs, pio.Stderr, p.exit.Exited(), followPoll)
	return p, nil
}

// processIO wires a process's standard streams. Output files are opened here
// and travel to the init as descriptors; pipes are made by the init, which
// returns our ends (see execSpec.Stdio).
type processIO struct {
	stdio.Streams
	stdin io.Reader       // the caller's, for the init's stdin pipe
	outs  []*stdio.Fanout // fan-outs waiting for a pipe, in stream order
}

// setup prepares the streams, marks their kinds in es, and returns the
// descriptors to pass, in order.
func (s *processIO) setup(r *os.Root, es *execSpec, pio warden.ProcessIO, p *process) ([]*os.File, error) {
	var files []*os.File
	if pio.Stdin != nil {
		s.stdin, es.Stdio[0] = pio.Stdin, streamPipe
	}
	for i, o := range []struct {
		out *stdio.Output
		w   io.Writer
	}{{&p.stdout, pio.Stdout}, {&p.stderr, pio.Stderr}} {
		switch {
		case o.out.Path != "":
			f, err := s.OpenFile(r, o.out.Path, o.w)
			if err != nil {
				return nil, err
			}
			files, es.Stdio[i+1] = append(files, f), streamFile
		case o.w != nil:
			o.out.Fanout = stdio.NewFanout(o.w)
			es.Stdio[i+1] = streamPipe
			s.outs = append(s.outs, o.out.Fanout)
		}
	}
	return files, nil
}

// connect takes the ends of the pipes the init made, in stream order.
func (s *processIO) connect(pipes []*os.File) error {
	want := len(s.outs)
	if s.stdin != nil {
		want++
	}
	if len(pipes) != want {
		return fmt.Errorf("init returned %d pipes, want %d", len(pipes), want)
	}
	if s.stdin != nil {
		s.Stdin(pipes[0], s.stdin)
		pipes = pipes[1:]
	}
	for i, fo := range s.outs {
		s.Pipe(pipes[i], fo)
	}
	return nil
}

// drainCap bounds how long Wait waits for the end of output once no
// process of the container is left (see drainMore).
const drainCap = 10 * time.Second

// drainMore is the extra time to wait for the end of a process's output
// after Config.OutputDrainTimeout: the pipes' ends of file come when every
// process holding their write ends has exited. Orphaned descendants may
// hold them for long, so none while the container still has processes.
// Once it has none, nothing can hold them, and the end is sure to come
// (up to drainCap): a loaded host can take longer than the timeout just to
// schedule the copying goroutines.
func (c *container) drainMore() time.Duration {
	if c.appEmpty() {
		return drainCap
	}
	return 0
}

// followPoll is how often an output file is checked for new data.
const followPoll = 10 * time.Millisecond
