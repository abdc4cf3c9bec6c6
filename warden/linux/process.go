package linux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kiln-paas/kiln/warden"
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

	stdout, stderr         *fanout // pipe-fed streams, nil when none
	stdoutPath, stderrPath string  // container paths, "" when none
	oomBefore              uint64  // the cgroup's OOM kills when started

	exited chan struct{} // closed once the process has exited
	done   chan struct{} // closed once exit and output are recorded
	once   sync.Once
	status int
	reason string
}

var (
	_ warden.Process = (*process)(nil)
	_ ExitReasoner   = (*process)(nil)
)

func newProcess(c *container, id string, pid int) *process {
	return &process{id: id, c: c, pid: pid, exited: make(chan struct{}), done: make(chan struct{})}
}

// ID implements warden.Process.
func (p *process) ID() string { return p.id }

// ExitReason implements ExitReasoner.
func (p *process) ExitReason() string {
	select {
	case <-p.done:
		return p.reason
	default:
		return ""
	}
}

// finish records status and releases waiters; later calls are ignored.
func (p *process) finish(status int) {
	p.once.Do(func() {
		p.status = status
		select {
		case <-p.exited:
		default:
			close(p.exited)
		}
		close(p.done)
	})
}

func (p *process) exitedYet() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Wait implements warden.Process.
func (p *process) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
		return p.status, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("linux: wait %s/%s: %w", p.c.handle, p.id, ctx.Err())
	}
}

// Signal implements warden.Process.
func (p *process) Signal(ctx context.Context, sig warden.Signal) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := fmt.Errorf("linux: signal %s/%s: %w", p.c.handle, p.id, warden.ErrProcessDone)
	if p.exitedYet() || !p.c.initAlive() {
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
	p.finish(status)
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
	p.stdoutPath, p.stderrPath = spec.StdoutPath, spec.StderrPath
	if c.cg != nil {
		p.oomBefore, _ = c.cg.oomKills()
	}
	r, err := os.OpenRoot(c.rootfs)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	sio := &stdio{owner: c.owner()}
	defer sio.closeChildEnds()
	files, err := sio.setup(r, es, pio, p)
	if err != nil {
		sio.abort()
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
		sio.abort()
		return nil, err
	}
	sio.closeChildEnds() // the process holds them now
	p.pid = rep.PID
	c.procs[id] = p
	c.st.Processes = append(c.st.Processes, processState{ID: id, PID: p.pid, StdoutPath: spec.StdoutPath, StderrPath: spec.StderrPath})
	c.pruneLocked()
	c.persistLocked()
	c.b.metrics.started.Inc()
	c.b.log.Info("process-started", "handle", c.handle, "process", id, "pid", p.pid, "path", spec.Path)
	sio.start(p)
	go func() {
		// Ends when the init reports the exit, dies, or the backend closes.
		status, ok := p.awaitExit(conn)
		if !ok && c.b.ctx.Err() != nil {
			return // closed: the next Backend reattaches
		}
		if !ok {
			status = warden.ExitStatusUnknown
		}
		close(p.exited)
		sio.drain(c.b.cfg.OutputDrainTimeout, c.appEmpty)
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
	if p.exitedYet() {
		return p, nil
	}
	c.attachStream(p, p.stdout, p.stdoutPath, pio.Stdout)
	c.attachStream(p, p.stderr, p.stderrPath, pio.Stderr)
	return p, nil
}

// attachStream connects w to one output stream of p: the pipe's fan-out,
// or a follower of the output file from its current end.
func (c *container) attachStream(p *process, f *fanout, file string, w io.Writer) {
	switch {
	case w == nil:
	case f != nil:
		f.add(w)
	case file != "":
		r, err := os.OpenRoot(c.rootfs)
		if err != nil {
			return
		}
		defer r.Close()
		rp, err := resolve(r, file, true)
		if err != nil {
			return
		}
		in, err := r.Open(rp)
		if err != nil {
			return
		}
		if _, err := in.Seek(0, io.SeekEnd); err != nil {
			in.Close()
			return
		}
		go follow(in, w, p.exited) // ends after the process exits
	}
}

// fanout copies a stream to writers added over time.
type fanout struct {
	mu sync.Mutex
	ws []io.Writer
}

func (f *fanout) add(w io.Writer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ws = append(f.ws, w)
}

// Write never fails: a caller's broken writer must not stop the process's
// output reaching the others.
func (f *fanout) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.ws {
		_, _ = w.Write(b)
	}
	return len(b), nil
}

// stdio wires a process's standard streams. Output files are opened here
// and travel to the init as descriptors; pipes are made by the init, which
// returns our ends (see execSpec.Stdio).
type stdio struct {
	owner     owner
	childEnds []*os.File // files sent to the init, closed here after
	ours      []*os.File // our ends, closed on abort
	stdin     io.Reader
	stdinW    *os.File
	outs      []*fanout // fan-outs waiting for a pipe, in stream order
	pipes     []pipeCopy
	follows   []fileFollow
	drained   []chan struct{}
}

type pipeCopy struct {
	r *os.File
	w *fanout
}

type fileFollow struct {
	f *os.File
	w io.Writer
}

// setup prepares the streams, marks their kinds in es, and returns the
// descriptors to pass, in order.
func (s *stdio) setup(r *os.Root, es *execSpec, pio warden.ProcessIO, p *process) ([]*os.File, error) {
	var files []*os.File
	if pio.Stdin != nil {
		s.stdin, es.Stdio[0] = pio.Stdin, streamPipe
	}
	for i, o := range []struct {
		file string
		w    io.Writer
		fo   **fanout
	}{{p.stdoutPath, pio.Stdout, &p.stdout}, {p.stderrPath, pio.Stderr, &p.stderr}} {
		f, fo, err := s.output(r, o.file, o.w)
		if err != nil {
			return nil, err
		}
		switch {
		case f != nil:
			files, es.Stdio[i+1] = append(files, f), streamFile
		case fo != nil:
			*o.fo, es.Stdio[i+1] = fo, streamPipe
			s.outs = append(s.outs, fo)
		}
	}
	return files, nil
}

// connect takes the ends of the pipes the init made, in stream order.
func (s *stdio) connect(pipes []*os.File) error {
	want := len(s.outs)
	if s.stdin != nil {
		want++
	}
	if len(pipes) != want {
		return fmt.Errorf("init returned %d pipes, want %d", len(pipes), want)
	}
	s.ours = append(s.ours, pipes...)
	if s.stdin != nil {
		s.stdinW, pipes = pipes[0], pipes[1:]
	}
	for i, fo := range s.outs {
		s.pipes = append(s.pipes, pipeCopy{r: pipes[i], w: fo})
	}
	return nil
}

// output prepares one output stream: a file in the container (followed
// into w if any), a fan-out to w fed by a pipe, or nothing.
func (s *stdio) output(r *os.Root, file string, w io.Writer) (*os.File, *fanout, error) {
	if file != "" {
		p, err := resolve(r, file, true)
		if err != nil {
			return nil, nil, err
		}
		if err := mkdirAll(r, path.Dir(p), 0o755, s.owner); err != nil {
			return nil, nil, err
		}
		f, err := r.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, fsError(err)
		}
		s.childEnds = append(s.childEnds, f)
		if err := f.Chown(s.owner.uid, s.owner.gid); err != nil {
			return nil, nil, err
		}
		if w != nil {
			in, err := r.Open(p)
			if err == nil {
				_, err = in.Seek(0, io.SeekEnd)
			}
			if err != nil {
				return nil, nil, fsError(err)
			}
			s.ours = append(s.ours, in)
			s.follows = append(s.follows, fileFollow{f: in, w: w})
		}
		return f, nil, nil
	}
	if w == nil {
		return nil, nil, nil
	}
	return nil, &fanout{ws: []io.Writer{w}}, nil
}

// closeChildEnds closes our copies of the files sent to the init.
// Idempotent.
func (s *stdio) closeChildEnds() {
	closeAll(s.childEnds)
	s.childEnds = nil
}

func (s *stdio) abort() { closeAll(s.ours) }

// start launches the copying goroutines.
func (s *stdio) start(p *process) {
	if s.stdinW != nil {
		go func() {
			// Ends at the end of the caller's reader, or when the process
			// has gone and writing fails; a reader that never returns
			// keeps it (documented on warden.ProcessIO).
			_, _ = io.Copy(s.stdinW, s.stdin)
			s.stdinW.Close()
		}()
	}
	for _, pc := range s.pipes {
		ch := make(chan struct{})
		s.drained = append(s.drained, ch)
		go func() {
			// Ends at EOF: when the process and every descendant holding
			// the pipe have exited (Stop and Destroy ensure that).
			defer close(ch)
			_, _ = io.Copy(pc.w, pc.r)
			pc.r.Close()
		}()
	}
	for _, ff := range s.follows {
		ch := make(chan struct{})
		s.drained = append(s.drained, ch)
		go func() {
			defer close(ch)
			follow(ff.f, ff.w, p.exited)
		}()
	}
}

// drainCap bounds how long drain waits for the end of output once no
// process of the container is left (see drain).
const drainCap = 10 * time.Second

// drain waits for the output to be delivered: the pipes' ends of file
// come when every process holding their write ends has exited. Orphaned
// descendants may hold them for long, so drain waits at most timeout
// while the container still has processes. Once it has none, nothing can
// hold them, and drain waits on (up to drainCap): a loaded host can take
// longer than timeout just to schedule the copying goroutines.
func (s *stdio) drain(timeout time.Duration, empty func() bool) {
	if len(s.drained) == 0 {
		return
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	var capped <-chan time.Time
	for _, ch := range s.drained {
		for waiting := true; waiting; {
			select {
			case <-ch:
				waiting = false
			case <-t.C:
				if !empty() {
					return
				}
				c := time.NewTimer(drainCap)
				defer c.Stop()
				capped = c.C
			case <-capped:
				return
			}
		}
	}
}

// followPoll is how often an output file is checked for new data.
const followPoll = 10 * time.Millisecond

// follow copies what is appended to f into w until exited is closed, then
// copies the rest and closes f.
func follow(f *os.File, w io.Writer, exited <-chan struct{}) {
	defer f.Close()
	t := time.NewTicker(followPoll)
	defer t.Stop()
	buf := make([]byte, 32<<10)
	final := false
	for {
		n, err := f.Read(buf)
		if n > 0 {
			_, _ = w.Write(buf[:n])
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) || final {
			return
		}
		select {
		case <-exited:
			final = true // one more read to the end
		case <-t.C:
		}
	}
}
