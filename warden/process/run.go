package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/internal/exitstatus"
	"github.com/kiln-paas/kiln/warden/internal/hostfs"
	"github.com/kiln-paas/kiln/warden/internal/statefile"
	"github.com/kiln-paas/kiln/warden/internal/stdio"
)

// quietDrainTimeout bounds the wait for output after the process exited
// when no descendant is left in its group.
const quietDrainTimeout = 5 * time.Second

// followPoll is how often output files are checked for new data when
// following them into a writer.
const followPoll = 20 * time.Millisecond

// process is a process-backend warden.Process. Its pid is also its session
// and process group id.
type process struct {
	id         string
	c          *container
	pid        int
	startTicks uint64
	child      bool // started by this Backend, so its exit status is known

	stdout, stderr stdio.Output

	exit *exitstatus.Exit // Done once exit and output are recorded
}

var _ warden.Process = (*process)(nil)

func newProcess(c *container, id string, pid int, startTicks uint64, child bool) *process {
	return &process{
		id: id, c: c, pid: pid, startTicks: startTicks, child: child,
		exit: exitstatus.New(),
	}
}

// ID implements warden.Process.
func (p *process) ID() string { return p.id }

// Wait implements warden.Process.
func (p *process) Wait(ctx context.Context) (int, error) {
	status, err := p.exit.Wait(ctx)
	if err != nil {
		return 0, fmt.Errorf("process: wait %s/%s: %w", p.c.handle, p.id, err)
	}
	return status, nil
}

// Signal implements warden.Process.
func (p *process) Signal(ctx context.Context, sig warden.Signal) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := fmt.Errorf("process: signal %s/%s: %w", p.c.handle, p.id, warden.ErrProcessDone)
	if p.exit.HasExited() {
		return done
	}
	// A child's pid cannot be reused before its waiter reaps it; a
	// reattached process's can, so check it is still the same process.
	if !p.child && !p.c.b.sameProcess(p.pid, p.startTicks) {
		return done
	}
	defer p.c.b.procs.invalidate()
	if err := unix.Kill(-p.pid, unix.Signal(sig)); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return done
		}
		return fmt.Errorf("process: signal %s/%s: %w", p.c.handle, p.id, err)
	}
	return nil
}

// pollExit waits for a reattached process to go, until the backend closes.
func (p *process) pollExit() {
	t := time.NewTicker(p.c.b.cfg.ExitPollInterval)
	defer t.Stop()
	for {
		select {
		case <-p.c.b.ctx.Done():
			return
		case <-p.exit.Done():
			return
		case <-t.C:
		}
		if !p.c.b.sameProcess(p.pid, p.startTicks) {
			p.c.processExited(p, warden.ExitStatusUnknown)
			return
		}
	}
}

// processExited records p's exit in the container's state and finishes p.
func (c *container) processExited(p *process, status int) {
	c.b.procs.invalidate()
	c.mu.Lock()
	for i := range c.st.Processes {
		if ps := &c.st.Processes[i]; ps.ID == p.id && !ps.Exited {
			ps.Exited, ps.ExitStatus = true, status
			c.persistLocked()
		}
	}
	c.mu.Unlock()
	p.exit.Finish(status)
	c.b.log.Info("process-exited", "handle", c.handle, "process", p.id, "pid", p.pid, "status", status)
}

// Run implements warden.Container.
func (c *container) Run(ctx context.Context, spec warden.ProcessSpec, pio warden.ProcessIO) (warden.Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if spec.Path == "" {
		return nil, c.errorf("run", fmt.Errorf("empty Path: %w", warden.ErrInvalidSpec))
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
	p, err := c.startLocked(id, spec, pio)
	if err != nil {
		return nil, c.errorf("run", err)
	}
	return p, nil
}

// startLocked does Run's work; c.mu is held.
func (c *container) startLocked(id string, spec warden.ProcessSpec, pio warden.ProcessIO) (*process, error) {
	r, err := os.OpenRoot(c.rootfs)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	dir, err := hostfs.Resolve(r, spec.Dir, true)
	if err != nil {
		return nil, err
	}
	if fi, err := r.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("working directory %q: %w", spec.Dir, warden.ErrNotFound)
	}
	hostDir := filepath.Join(c.rootfs, dir)
	env := warden.MergeEnv([]string{"PATH=" + c.b.cfg.DefaultPath, "HOME=" + c.rootfs}, warden.MergeEnv(c.st.Env, spec.Env))
	prog, err := c.lookPath(r, spec.Path, env, hostDir)
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:        prog,
		Args:        append([]string{spec.Path}, spec.Args...),
		Env:         env,
		Dir:         hostDir,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if cred, err := credential(spec.User); err != nil {
		return nil, err
	} else if cred != nil {
		cmd.SysProcAttr.Credential = cred
	}
	if n := c.st.Limits.FileDescriptors; n > 0 {
		if err := c.b.checkFDLimit(n); err != nil {
			return nil, err
		}
		// The shell sets the limit, then becomes the program: no window in
		// which the program runs without it.
		cmd.Path = c.b.cfg.Shell
		cmd.Args = append([]string{c.b.cfg.Shell, "-c", `ulimit -n ` + strconv.FormatUint(n, 10) + ` && exec "$0" "$@"`, prog}, spec.Args...)
	}

	p := newProcess(c, id, 0, 0, true)
	p.stdout.Path, p.stderr.Path = spec.StdoutPath, spec.StderrPath
	sio := &stdio.Streams{FollowPoll: followPoll}
	defer sio.CloseChildEnds()
	if err := setupStdio(sio, r, cmd, pio, p); err != nil {
		sio.Abort()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		sio.Abort()
		return nil, fmt.Errorf("start %s: %w", spec.Path, err)
	}
	p.pid = cmd.Process.Pid
	c.b.procs.invalidate()
	if st, err := readStat(c.b.cfg.ProcRoot, p.pid); err == nil {
		p.startTicks = st.StartTicks
	}
	c.procs[id] = p
	c.st.Processes = append(c.st.Processes, processState{
		Process:    statefile.Process{ID: id, PID: p.pid, StdoutPath: spec.StdoutPath, StderrPath: spec.StderrPath},
		StartTicks: p.startTicks,
	})
	c.persistLocked()
	c.b.metrics.Started.Inc()
	c.b.log.Info("process-started", "handle", c.handle, "process", id, "pid", p.pid, "path", spec.Path)
	sio.Start(p.exit.Exited())

	go func() {
		// Ends when the process exits; nothing else can end it.
		state, err := cmd.Process.Wait()
		status := exitStatus(state, err)
		p.exit.MarkExited()
		drain := c.b.cfg.OutputDrainTimeout
		if errors.Is(unix.Kill(-p.pid, 0), unix.ESRCH) {
			// Nobody left in the group to hold the pipes: EOF is coming,
			// however busy the machine; wait for it, within reason (a
			// descendant in a session of its own could still hold them).
			drain = max(drain, quietDrainTimeout)
		}
		sio.Drain(drain, nil)
		c.processExited(p, status)
	}()
	return p, nil
}

// exitStatus turns a wait result into a shell-style status.
func exitStatus(state *os.ProcessState, err error) int {
	if err != nil || state == nil {
		return warden.ExitStatusUnknown
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return state.ExitCode()
}

// checkFDLimit rejects a file descriptor limit above what this program may
// grant (its own hard limit, unless it is root).
func (b *Backend) checkFDLimit(n uint64) error {
	if n == 0 || os.Geteuid() == 0 {
		return nil
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if n > rl.Max {
		return fmt.Errorf("file descriptor limit %d above the host's hard limit %d: %w", n, rl.Max, warden.ErrInvalidSpec)
	}
	return nil
}

// credential returns the credential to run as user, nil for the current
// user. Switching users needs root.
func credential(name string) (*syscall.Credential, error) {
	if name == "" {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, warden.ErrNotFound)
	}
	if u.Uid == strconv.Itoa(os.Geteuid()) {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("running as user %q needs root: %w", name, errors.ErrUnsupported)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// lookPath finds the program to run; see the package documentation.
func (c *container) lookPath(r *os.Root, prog string, env []string, dir string) (string, error) {
	if strings.Contains(prog, "/") {
		if !path.IsAbs(prog) {
			return executable(filepath.Join(dir, prog))
		}
		if p, err := hostfs.Resolve(r, prog, true); err == nil {
			if found, err := executable(filepath.Join(c.rootfs, p)); err == nil {
				return found, nil
			}
		}
		return executable(prog)
	}
	search, _ := warden.LookupEnv(env, "PATH")
	for _, d := range filepath.SplitList(search) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		if found, err := executable(filepath.Join(d, prog)); err == nil {
			return found, nil
		}
	}
	return "", fmt.Errorf("program %q not in PATH %q: %w", prog, search, warden.ErrNotFound)
}

func executable(p string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("program %q: %w", p, warden.ErrNotFound)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("program %q is not an executable file: %w", p, warden.ErrNotFound)
	}
	return p, nil
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

// setupStdio prepares p's standard streams for cmd: pipes for a stdin
// reader and for writers of output not going to a file, output files
// (followed into their writers).
func setupStdio(s *stdio.Streams, r *os.Root, cmd *exec.Cmd, pio warden.ProcessIO, p *process) error {
	if pio.Stdin != nil {
		pr, pw, err := os.Pipe()
		if err != nil {
			return err
		}
		s.ChildEnd(pr)
		s.Stdin(pw, pio.Stdin)
		cmd.Stdin = pr
	}
	out, err := output(s, r, &p.stdout, pio.Stdout)
	if err != nil {
		return err
	}
	if out != nil { // a nil *os.File in the interface would not mean /dev/null
		cmd.Stdout = out
	}
	errf, err := output(s, r, &p.stderr, pio.Stderr)
	if err != nil {
		return err
	}
	if errf != nil {
		cmd.Stderr = errf
	}
	return nil
}

// output prepares one output stream: a file (followed into w if any), a
// pipe into w (recorded in o for later writers), or nothing.
func output(s *stdio.Streams, r *os.Root, o *stdio.Output, w io.Writer) (*os.File, error) {
	if o.Path != "" {
		return s.OpenFile(r, o.Path, w)
	}
	if w == nil {
		return nil, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	s.ChildEnd(pw)
	o.Fanout = stdio.NewFanout(w)
	s.Pipe(pr, o.Fanout)
	return pw, nil
}
