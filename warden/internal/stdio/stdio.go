// Package stdio wires the standard streams of processes run by warden's
// host backends (warden/process and warden/linux) to the callers'
// warden.ProcessIO: output pipes copied into a Fanout that writers can join
// later (Attach), output files in the container followed into writers
// (Follow), a caller's reader copied into the standard input, and Drain,
// which lets Wait return once the output written before the process
// exited is delivered.
//
// The backends differ in who makes the pipes (the process backend itself,
// the linux backend's container init) and hand their ends to Streams,
// which owns them from then on.
package stdio

import (
	"errors"
	"io"
	"os"
	"path"
	"sync"
	"time"

	"github.com/kiln-paas/kiln/warden/internal/hostfs"
)

// Fanout copies a stream to writers added over time. It is safe for
// concurrent use.
type Fanout struct {
	mu sync.Mutex
	ws []io.Writer
}

// NewFanout returns a Fanout writing to ws.
func NewFanout(ws ...io.Writer) *Fanout { return &Fanout{ws: ws} }

// Add makes f also write to w from now on.
func (f *Fanout) Add(w io.Writer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ws = append(f.ws, w)
}

// Write writes b to every writer. It never fails: a caller's broken writer
// must not stop the process's output reaching the others.
func (f *Fanout) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.ws {
		_, _ = w.Write(b)
	}
	return len(b), nil
}

// Follow copies what is appended to f into w, checking for more every
// poll, until exited is closed; then it copies the rest, closes f and
// returns. It stops early, closing f, on a read error other than io.EOF.
func Follow(f *os.File, w io.Writer, exited <-chan struct{}, poll time.Duration) {
	defer f.Close()
	t := time.NewTicker(poll)
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

// Output is one output stream of a process as a later caller can join it:
// the fan-out of a pipe, or a file in the container, or neither.
type Output struct {
	// Fanout is fed by the process's pipe; nil when there is none.
	Fanout *Fanout
	// Path is the container path the process writes to; "" when none.
	Path string
}

// Attach connects w to the stream: it joins the fan-out, or follows the
// file at Path of the tree at rootfs from its current end until exited is
// closed (checking every poll). It does nothing when w is nil, when the
// stream is neither, or when the file cannot be opened (the process may
// have removed it): a caller attaching gets what can still be had.
func (o Output) Attach(rootfs string, w io.Writer, exited <-chan struct{}, poll time.Duration) {
	switch {
	case w == nil:
	case o.Fanout != nil:
		o.Fanout.Add(w)
	case o.Path != "":
		r, err := os.OpenRoot(rootfs)
		if err != nil {
			return
		}
		defer r.Close()
		rp, err := hostfs.Resolve(r, o.Path, true)
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
		go Follow(in, w, exited, poll) // ends after the process exits
	}
}

// Streams wires one process's standard streams. Fill it before the
// process starts (OpenFile, Stdin, Pipe, ChildEnd), close the child's ends
// once the process holds them (CloseChildEnds), then Start the copying
// and, after the process exited, Drain. Abort releases everything of a
// process that did not start. A Streams is used by one goroutine.
type Streams struct {
	// Owner, when set, is given the output files OpenFile creates, and
	// their missing parent directories.
	Owner *hostfs.Owner
	// FollowPoll is how often output files are checked for new data.
	FollowPoll time.Duration

	childEnds []*os.File // given to the child, closed here after start
	ours      []*os.File // our ends, closed on abort
	stdin     io.Reader
	stdinW    *os.File
	pipes     []pipeCopy
	follows   []fileFollow
	drained   []chan struct{}
}

type pipeCopy struct {
	r *os.File
	w *Fanout
}

type fileFollow struct {
	f *os.File
	w io.Writer
}

// OpenFile opens container path file of r for the process to append its
// output to, creating it and its directories when missing, and returns it
// (a child's end). With w non-nil, what the process appends is followed
// into w from Start until the process exits.
func (s *Streams) OpenFile(r *os.Root, file string, w io.Writer) (*os.File, error) {
	p, err := hostfs.Resolve(r, file, true)
	if err != nil {
		return nil, err
	}
	if err := hostfs.MkdirAll(r, path.Dir(p), 0o755, s.Owner); err != nil {
		return nil, err
	}
	f, err := r.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, hostfs.FSError(err)
	}
	s.childEnds = append(s.childEnds, f)
	if s.Owner != nil {
		if err := f.Chown(s.Owner.UID, s.Owner.GID); err != nil {
			return nil, err
		}
	}
	if w != nil {
		in, err := r.Open(p)
		if err == nil {
			_, err = in.Seek(0, io.SeekEnd)
		}
		if err != nil {
			return nil, hostfs.FSError(err)
		}
		s.ours = append(s.ours, in)
		s.follows = append(s.follows, fileFollow{f: in, w: w})
	}
	return f, nil
}

// ChildEnd records f as given to the process: CloseChildEnds closes it.
func (s *Streams) ChildEnd(f *os.File) { s.childEnds = append(s.childEnds, f) }

// Stdin makes Start copy src into w, the write end of the process's
// standard input, closing w at the end of src.
func (s *Streams) Stdin(w *os.File, src io.Reader) {
	s.ours = append(s.ours, w)
	s.stdin, s.stdinW = src, w
}

// Pipe makes Start copy r, the read end of one of the process's output
// pipes, into fo until EOF.
func (s *Streams) Pipe(r *os.File, fo *Fanout) {
	s.ours = append(s.ours, r)
	s.pipes = append(s.pipes, pipeCopy{r: r, w: fo})
}

// CloseChildEnds closes our copies of the child's ends: once the process
// holds them, readers see EOF when it (and its descendants) exit.
// Idempotent.
func (s *Streams) CloseChildEnds() {
	closeAll(s.childEnds)
	s.childEnds = nil
}

// Abort closes our ends, for a process that did not start.
func (s *Streams) Abort() { closeAll(s.ours) }

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// Start launches the copying goroutines. The output ones end at EOF of
// their pipes, or for followed files after exited is closed; the input
// one at the end of the caller's reader or when writing fails.
func (s *Streams) Start(exited <-chan struct{}) {
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
		// Ends at EOF: when the process and every descendant holding the
		// pipe have exited (Stop and Destroy ensure that).
		s.deliver(func() {
			_, _ = io.Copy(pc.w, pc.r)
			pc.r.Close()
		})
	}
	for _, ff := range s.follows {
		s.deliver(func() { Follow(ff.f, ff.w, exited, s.FollowPoll) })
	}
}

// deliver runs fn, which delivers output, in a goroutine Drain waits
// for.
func (s *Streams) deliver(fn func()) {
	ch := make(chan struct{})
	s.drained = append(s.drained, ch)
	go func() {
		defer close(ch)
		fn()
	}()
}

// Drain waits for the output started by Start to be delivered, up to
// timeout: orphaned descendants may hold a pipe's write end for long.
// When timeout passes, more (if not nil) may grant extra time (0: none),
// for example once nothing is left that could hold the pipes, when the
// end of output is sure to come and only a loaded host delays it.
func (s *Streams) Drain(timeout time.Duration, more func() time.Duration) {
	if len(s.drained) == 0 {
		return
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	var extra <-chan time.Time
	for _, ch := range s.drained {
		for waiting := true; waiting; {
			select {
			case <-ch:
				waiting = false
			case <-t.C:
				d := time.Duration(0)
				if more != nil {
					d = more()
				}
				if d <= 0 {
					return
				}
				e := time.NewTimer(d)
				defer e.Stop()
				extra = e.C
			case <-extra:
				return
			}
		}
	}
}
