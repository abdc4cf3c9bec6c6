// Package accesslog writes the router's access log: one line per proxied
// request, in the field order of the original routers, to any io.Writer.
//
// The request path only formats the line into a pooled buffer and hands it
// to a channel; Run writes lines out in batches. When the writer cannot keep
// up and the channel is full, lines are dropped and counted rather than
// slowing requests down: the log is a record, not a gate.
package accesslog

import (
	"bufio"
	"context"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Record is one request. Its strings are only read during Log, so callers
// may pass strings that alias buffers they reuse afterwards.
type Record struct {
	Host          string
	Start         time.Time
	Method        string
	URI           string
	Proto         string
	Status        int
	BytesSent     int64
	Referer       string
	UserAgent     string
	RemoteAddr    string
	BackendAddr   string
	XForwardedFor string
	RequestID     string
	Duration      time.Duration
	AppID         string
}

// DefaultQueue is the number of lines that may wait for the writer: about
// a second of traffic at a busy router's rate, a few megabytes at most.
const DefaultQueue = 16384

// Logger formats records and writes them from Run. Its methods are safe for
// concurrent use.
type Logger struct {
	w       io.Writer
	lines   chan *[]byte
	pool    sync.Pool
	dropped atomic.Uint64
	written atomic.Uint64
}

// New returns a logger writing to w with room for queue waiting lines
// (DefaultQueue when queue <= 0).
func New(w io.Writer, queue int) *Logger {
	if queue <= 0 {
		queue = DefaultQueue
	}
	l := &Logger{w: w, lines: make(chan *[]byte, queue)}
	l.pool.New = func() any { b := make([]byte, 0, 512); return &b }
	return l
}

// Dropped returns how many lines were lost because the queue was full.
func (l *Logger) Dropped() uint64 { return l.dropped.Load() }

// Written returns how many lines were handed to the writer.
func (l *Logger) Written() uint64 { return l.written.Load() }

// Log formats r and queues the line; it never blocks.
func (l *Logger) Log(r *Record) {
	bp := l.pool.Get().(*[]byte)
	*bp = Append((*bp)[:0], r)
	select {
	case l.lines <- bp:
	default:
		l.dropped.Add(1)
		l.pool.Put(bp)
	}
}

// Run writes queued lines until ctx ends, then writes what is still queued
// and returns the first write error, if any (later lines are then dropped
// and counted).
func (l *Logger) Run(ctx context.Context) error {
	bw := bufio.NewWriterSize(l.w, 64<<10)
	var werr error
	write := func(bp *[]byte) {
		if werr == nil {
			_, werr = bw.Write(*bp)
			l.written.Add(1)
		} else {
			l.dropped.Add(1)
		}
		l.pool.Put(bp)
	}
	for {
		select {
		case bp := <-l.lines:
			write(bp)
			// Batch whatever else is waiting, then flush once.
			for more := true; more; {
				select {
				case bp := <-l.lines:
					write(bp)
				default:
					more = false
				}
			}
			if werr == nil {
				werr = bw.Flush()
			}
		case <-ctx.Done():
			for {
				select {
				case bp := <-l.lines:
					write(bp)
				default:
					if werr == nil {
						werr = bw.Flush()
					}
					return werr
				}
			}
		}
	}
}

// Append appends r's line, newline included, to dst:
//
//	host - [02/01/2006:15:04:05 -0700] "GET /path HTTP/1.1" 200 1234 "referer" "agent" "10.0.0.9:51234" "10.0.1.2:61001" x_forwarded_for:"10.0.0.9" vcap_request_id:"uuid" response_time:0.001234567 app_id:"app"
func Append(dst []byte, r *Record) []byte {
	dst = appendField(dst, r.Host)
	dst = append(dst, " - ["...)
	dst = r.Start.AppendFormat(dst, "02/01/2006:15:04:05 -0700")
	dst = append(dst, "] \""...)
	dst = appendEscaped(dst, r.Method)
	dst = append(dst, ' ')
	dst = appendEscaped(dst, r.URI)
	dst = append(dst, ' ')
	dst = appendEscaped(dst, r.Proto)
	dst = append(dst, "\" "...)
	dst = strconv.AppendInt(dst, int64(r.Status), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, r.BytesSent, 10)
	dst = appendQuoted(dst, " ", r.Referer)
	dst = appendQuoted(dst, " ", r.UserAgent)
	dst = appendQuoted(dst, " ", r.RemoteAddr)
	dst = appendQuoted(dst, " ", r.BackendAddr)
	dst = appendQuoted(dst, " x_forwarded_for:", r.XForwardedFor)
	dst = appendQuoted(dst, " vcap_request_id:", r.RequestID)
	dst = append(dst, " response_time:"...)
	dst = strconv.AppendFloat(dst, r.Duration.Seconds(), 'f', 9, 64)
	dst = appendQuoted(dst, " app_id:", r.AppID)
	return append(dst, '\n')
}

func appendField(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, '-')
	}
	return appendEscaped(dst, s)
}

func appendQuoted(dst []byte, prefix, s string) []byte {
	dst = append(dst, prefix...)
	if s == "" {
		return append(dst, '-')
	}
	dst = append(dst, '"')
	dst = appendEscaped(dst, s)
	return append(dst, '"')
}

// appendEscaped writes s with quotes, backslashes and control bytes escaped,
// so a client cannot forge log lines or fields.
func appendEscaped(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20 || c == 0x7f:
			dst = append(dst, '\\', 'x', hex[c>>4], hex[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
