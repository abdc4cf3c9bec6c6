package dea

import (
	"bytes"
	"strconv"
	"sync"
	"time"

	"github.com/kiln-paas/kiln/bus/protocol"
)

// Paths of an instance's log files inside its container, served by the
// file server.
const (
	stdoutLog = "logs/stdout.log"
	stderrLog = "logs/stderr.log"
)

// logLimiter is a token bucket shared by an instance's streams; lines over
// the rate are dropped and counted, never queued, so a chatty app never
// waits on the bus.
type logLimiter struct {
	rate  float64
	burst float64

	mu      sync.Mutex
	tokens  float64
	last    time.Time
	dropped int64
}

func newLogLimiter(rate float64, burst int) *logLimiter {
	return &logLimiter{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// allow takes a token; it returns whether the line may go and, when it may,
// how many lines were dropped since the last one that went.
func (l *logLimiter) allow(now time.Time) (ok bool, droppedBefore int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() {
		l.tokens += now.Sub(l.last).Seconds() * l.rate
		if l.tokens > l.burst {
			l.tokens = l.burst
		}
	}
	l.last = now
	if l.tokens < 1 {
		l.dropped++
		return false, 0
	}
	l.tokens--
	d := l.dropped
	l.dropped = 0
	return true, d
}

// logWriter splits one output stream of an instance into lines and
// publishes them on the app's log subject.
type logWriter struct {
	d      *DEA
	inst   *instance
	stream string
	lim    *logLimiter

	mu  sync.Mutex
	buf []byte
}

// Write implements io.Writer. It never fails and never blocks on the bus.
func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	max := w.d.cfg.MaxLogLine
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) >= max {
				w.emit(w.buf[:max])
				w.buf = w.buf[max:]
				continue
			}
			break
		}
		line := w.buf[:i]
		for len(line) > max {
			w.emit(line[:max])
			line = line[max:]
		}
		w.emit(bytes.TrimSuffix(line, []byte("\r")))
		w.buf = w.buf[i+1:]
	}
	// Keep the unfinished line in a buffer of its own.
	w.buf = append([]byte(nil), w.buf...)
	return len(p), nil
}

func (w *logWriter) emit(line []byte) {
	now := w.d.now()
	ok, dropped := w.lim.allow(now)
	if !ok {
		w.d.metrics.logDropped.Inc()
		return
	}
	if dropped > 0 {
		w.d.instanceLog(w.inst, strconv.FormatInt(dropped, 10)+" log lines dropped (rate limit)")
	}
	w.d.metrics.logLines.Inc()
	w.d.publishLog(protocol.LogLine{
		App: w.inst.app, Instance: w.inst.id, Index: w.inst.index,
		Source: protocol.SourceApp, Stream: w.stream, Timestamp: now.UnixNano(), Line: string(line),
	})
}

// instanceLog publishes a line about inst from the DEA itself.
func (d *DEA) instanceLog(inst *instance, line string) {
	d.publishLog(protocol.LogLine{
		App: inst.app, Instance: inst.id, Index: inst.index,
		Source: protocol.SourceDEA, Timestamp: d.now().UnixNano(), Line: line,
	})
}

func (d *DEA) publishLog(l protocol.LogLine) {
	d.publish(protocol.LogSubject(l.App), l)
}
