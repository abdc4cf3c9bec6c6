package fake

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/kiln-paas/kiln/warden"
)

// task is one fake host process: a process's main program or one of its
// background jobs. Signals are queued and acted on at the task's next
// blocking point (sleep, wait, reading input, or a server's run loop).
type task struct {
	pid  int
	c    *container
	mem  uint64
	done chan struct{}
	wake chan struct{} // capacity 1: something was queued

	// Guarded by c.sig, shared by all tasks of the container, so that a
	// signal sent to several tasks reaches them all before any can react,
	// as kill(2) on a process group does.
	ignored map[warden.Signal]bool
	pending []warden.Signal
	forced  *int // exit status requested by Backend.Exit
	status  int
	ended   bool
}

// deliverAll queues sig on every task that does not ignore it (SIGKILL
// cannot be ignored), atomically with respect to the tasks' reactions.
func deliverAll(c *container, tasks []*task, sig warden.Signal) {
	c.sig.Lock()
	for _, t := range tasks {
		if !t.ended && (!t.ignored[sig] || sig == warden.SignalKill) {
			t.pending = append(t.pending, sig)
		}
	}
	c.sig.Unlock()
	for _, t := range tasks {
		t.poke()
	}
}

// forceExit asks the task to exit with status; false if it already ended.
func (t *task) forceExit(status int) bool {
	t.c.sig.Lock()
	if t.ended {
		t.c.sig.Unlock()
		return false
	}
	t.forced = &status
	t.c.sig.Unlock()
	t.poke()
	return true
}

func (t *task) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *task) ignore(sig warden.Signal, on bool) {
	t.c.sig.Lock()
	defer t.c.sig.Unlock()
	t.ignored[sig] = on
}

func (t *task) ignoredSet() map[warden.Signal]bool {
	t.c.sig.Lock()
	defer t.c.sig.Unlock()
	out := make(map[warden.Signal]bool, len(t.ignored))
	for s, on := range t.ignored {
		if on {
			out[s] = true
		}
	}
	return out
}

// fatal reports whether a queued event ends the task, and its status. A
// SIGKILL wins over anything queued before it.
func (t *task) fatal() (int, bool) {
	t.c.sig.Lock()
	defer t.c.sig.Unlock()
	for _, s := range t.pending {
		if s == warden.SignalKill {
			return s.ExitStatus(), true
		}
	}
	if t.forced != nil {
		return *t.forced, true
	}
	for _, s := range t.pending {
		// Every signal of warden's set terminates by default.
		if !t.ignored[s] {
			return s.ExitStatus(), true
		}
	}
	t.pending = t.pending[:0]
	return 0, false
}

// block waits for d (negative: forever) or until closes, and reports a
// fatal event that cut it short.
func (t *task) block(d time.Duration, until <-chan struct{}) (int, bool) {
	var timeout <-chan time.Time
	if d >= 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		timeout = timer.C
	}
	for {
		if st, ok := t.fatal(); ok {
			return st, true
		}
		select {
		case <-t.wake:
		case <-timeout:
			return t.fatal()
		case <-until:
			return t.fatal()
		}
	}
}

// finish ends the task with status (a pending fatal event overrides it, as
// a signal arriving before exit would) and removes it from its container.
func (t *task) finish(status int) {
	if st, ok := t.fatal(); ok {
		status = st
	}
	t.c.sig.Lock()
	t.status = status
	t.ended = true
	t.c.sig.Unlock()
	t.c.mu.Lock()
	delete(t.c.tasks, t.pid)
	t.c.mu.Unlock()
	close(t.done)
}

func (t *task) exited() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// process is a fake warden.Process: a main task plus the background jobs
// it started, which form its process group.
type process struct {
	id    string
	c     *container
	env   []string
	dir   string // container path of the working directory, "/..."
	stdin io.Reader
	out   *output
	errw  *output
	main  *task

	mu    sync.Mutex
	group []*task // background jobs
}

var _ warden.Process = (*process)(nil)

// ID implements warden.Process.
func (p *process) ID() string { return p.id }

// Wait implements warden.Process.
func (p *process) Wait(ctx context.Context) (int, error) {
	select {
	case <-p.main.done:
		p.c.sig.Lock()
		defer p.c.sig.Unlock()
		return p.main.status, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("fake: wait %s/%s: %w", p.c.handle, p.id, ctx.Err())
	}
}

// Signal implements warden.Process.
func (p *process) Signal(ctx context.Context, sig warden.Signal) error {
	if err := p.c.b.injected(OpSignal, p.c.handle); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.main.exited() {
		return fmt.Errorf("fake: signal %s/%s: %w", p.c.handle, p.id, warden.ErrProcessDone)
	}
	p.mu.Lock()
	group := append([]*task{p.main}, p.group...)
	p.mu.Unlock()
	deliverAll(p.c, group, sig)
	return nil
}

// spawn starts fn as a background job of p; it fails when the container
// is stopping.
func (p *process) spawn(parent *task, fn func(t *task) int) (*task, error) {
	c := p.c
	c.mu.Lock()
	if c.state == warden.StateStopped {
		c.mu.Unlock()
		return nil, warden.ErrStopped
	}
	t := c.newTaskLocked(c.b.cfg.TaskMemoryBytes, parent.ignoredSet())
	c.mu.Unlock()
	p.mu.Lock()
	p.group = append(p.group, t)
	p.mu.Unlock()
	go func() { t.finish(fn(t)) }()
	c.checkMemory()
	return t, nil
}

// runBehavior plays b on the main task and returns its exit status.
func (p *process) runBehavior(b Behavior, ports []warden.PortMapping) int {
	t := p.main
	if b.IgnoreTerm {
		t.ignore(warden.SignalTerminate, true)
		t.ignore(warden.SignalInterrupt, true)
	}
	p.out.Write([]byte(b.Stdout))
	p.errw.Write([]byte(b.Stderr))
	var deadline time.Time
	if b.Exit {
		deadline = time.Now().Add(b.ExitAfter)
	}
	remaining := func() time.Duration {
		if deadline.IsZero() {
			return -1
		}
		return max(time.Until(deadline), 0)
	}
	if !b.NoBind && len(ports) > 0 {
		if b.BindAfter > 0 {
			d := b.BindAfter
			if r := remaining(); r >= 0 && r < d {
				d = r
			}
			if st, killed := t.block(d, nil); killed {
				return st
			}
		}
		if !b.Exit || time.Now().Before(deadline) {
			stop := p.serve(b.Handler, ports)
			defer stop()
		}
	}
	if st, killed := t.block(remaining(), nil); killed {
		return st
	}
	return b.ExitStatus
}

// serve binds the mapped host ports and answers HTTP on them until the
// returned function is called.
func (p *process) serve(h http.Handler, ports []warden.PortMapping) func() {
	if h == nil {
		h = appHandler(p.c.handle, p.env)
	}
	var servers []*http.Server
	for _, m := range ports {
		addr := net.JoinHostPort(p.c.b.cfg.HostIP, strconv.Itoa(int(m.HostPort)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			p.errw.Write([]byte("fake: bind " + addr + ": " + err.Error() + "\n"))
			continue
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		go func() { _ = srv.Serve(ln) }() // returns when Close is called
	}
	return func() {
		for _, srv := range servers {
			_ = srv.Close()
		}
	}
}

// appReply is the default fake app's response body.
type appReply struct {
	Handle        string `json:"handle"`
	InstanceIndex string `json:"instance_index,omitempty"`
	Path          string `json:"path"`
}

func appHandler(handle string, env []string) http.Handler {
	index, _ := warden.LookupEnv(env, "INSTANCE_INDEX")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := json.Marshal(appReply{Handle: handle, InstanceIndex: index, Path: r.URL.Path})
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Kiln-Handle", handle)
		if index != "" {
			w.Header().Set("X-Kiln-Instance-Index", index)
		}
		_, _ = w.Write(append(body, '\n'))
	})
}

// output is one of a process's output streams: the caller's writers plus,
// optionally, a container file it is appended to.
type output struct {
	c    *container
	path string

	mu sync.Mutex
	w  io.Writer
	ws []io.Writer // from Attach
}

func (o *output) attach(w io.Writer) {
	if w == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ws = append(o.ws, w)
}

// Write delivers b everywhere; errors of callers' writers are ignored, as a
// process whose reader went away would carry on.
func (o *output) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.w != nil {
		_, _ = o.w.Write(b)
	}
	for _, w := range o.ws {
		_, _ = w.Write(b)
	}
	if o.path != "" {
		o.c.mu.Lock()
		err := o.c.fs.appendFile(o.path, b, o.c.limits.DiskBytes)
		o.c.mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
	return len(b), nil
}
