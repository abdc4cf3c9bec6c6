package staging

import (
	"bytes"
	"io"
	"sync"
)

// maxLineBytes bounds one log line; longer output is cut into pieces so a
// tool printing without newlines cannot grow the buffer without limit.
const maxLineBytes = 16 << 10

// logWriter splits what is written to it into lines, writes each complete
// line (with its newline) to out in one Write call, and keeps the last few
// lines for error reports. It is safe for concurrent use: processes'
// stdout and stderr are written from backend goroutines.
type logWriter struct {
	mu      sync.Mutex
	out     io.Writer // may be nil
	partial []byte
	tail    []string
	keep    int
	failed  bool // out failed once; stop writing to it
}

func newLogWriter(out io.Writer, keep int) *logWriter {
	return &logWriter{out: out, keep: keep}
}

// Write implements io.Writer. It never fails: a broken client connection
// must not fail the staging.
func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = append(l.partial, p...)
			for len(l.partial) >= maxLineBytes {
				l.emit(l.partial[:maxLineBytes])
				l.partial = append(l.partial[:0], l.partial[maxLineBytes:]...)
			}
			break
		}
		if len(l.partial) > 0 {
			l.partial = append(l.partial, p[:i]...)
			l.emit(l.partial)
			l.partial = l.partial[:0]
		} else {
			l.emit(p[:i])
		}
		p = p[i+1:]
	}
	return n, nil
}

// Flush emits a trailing partial line.
func (l *logWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.emit(l.partial)
		l.partial = l.partial[:0]
	}
}

// emit writes one line (without its newline); l.mu is held.
func (l *logWriter) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if l.keep > 0 {
		if len(l.tail) == l.keep {
			copy(l.tail, l.tail[1:])
			l.tail = l.tail[:l.keep-1]
		}
		l.tail = append(l.tail, string(line))
	}
	if l.out == nil || l.failed {
		return
	}
	buf := make([]byte, 0, len(line)+1)
	buf = append(append(buf, line...), '\n')
	if _, err := l.out.Write(buf); err != nil {
		l.failed = true
	}
}

// Tail returns the last lines written, oldest first.
func (l *logWriter) Tail() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.tail...)
}
