package accesslog

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/internal/syncbuf"
)

func TestAppend(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))
	tests := []struct {
		name string
		rec  Record
		want string
	}{{
		name: "full",
		rec: Record{Host: "app.example.com", Start: start, Method: "GET", URI: "/a?b=1", Proto: "HTTP/1.1", Status: 200,
			BytesSent: 12, Referer: "http://r/", UserAgent: "curl/8", RemoteAddr: "10.0.0.9:5000", BackendAddr: "10.0.1.2:61001",
			XForwardedFor: "1.2.3.4, 10.0.0.9", RequestID: "rid", Duration: 1500 * time.Microsecond, AppID: "app1"},
		want: `app.example.com - [04/03/2026:05:06:07 +0100] "GET /a?b=1 HTTP/1.1" 200 12 "http://r/" "curl/8" "10.0.0.9:5000" "10.0.1.2:61001" x_forwarded_for:"1.2.3.4, 10.0.0.9" vcap_request_id:"rid" response_time:0.001500000 app_id:"app1"` + "\n",
	}, {
		name: "empty and hostile",
		rec:  Record{Start: start, Method: "GET", URI: "/\"x\n", Proto: "HTTP/1.1", Status: 404, UserAgent: `a"b\`},
		want: `- - [04/03/2026:05:06:07 +0100] "GET /\"x\x0a HTTP/1.1" 404 0 - "a\"b\\" - - x_forwarded_for:- vcap_request_id:- response_time:0.000000000 app_id:-` + "\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(Append(nil, &tt.rec)); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestRunWritesAndDrains(t *testing.T) {
	t.Parallel()
	var out syncbuf.Buffer
	l := New(&out, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	for i := range 100 {
		l.Log(&Record{Host: "h", Status: 200 + i%2})
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 100 || l.Written() != 100 {
		t.Errorf("wrote %d lines (counter %d), want 100", n, l.Written())
	}
}

func TestDropsWhenFull(t *testing.T) {
	t.Parallel()
	l := New(&bytes.Buffer{}, 2)
	for range 5 {
		l.Log(&Record{Host: "h"})
	}
	if l.Dropped() != 3 {
		t.Errorf("Dropped() = %d, want 3", l.Dropped())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	t.Parallel()
	l := New(failWriter{}, 4)
	l.Log(&Record{Host: "h"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Run(ctx); err == nil {
		t.Error("Run hid the write error")
	}
}

func BenchmarkLog(b *testing.B) {
	l := New(&bytes.Buffer{}, 1<<20)
	rec := &Record{Host: "app.example.com", Start: time.Now(), Method: "GET", URI: "/", Proto: "HTTP/1.1", Status: 200,
		UserAgent: "wrk", RemoteAddr: "127.0.0.1:5000", BackendAddr: "127.0.0.1:8080", RequestID: "0d6b3a4e-8f5e-4c4b-9a8e-2b7c9a1d0e11"}
	b.ReportAllocs()
	for b.Loop() {
		l.Log(rec)
		select {
		case bp := <-l.lines:
			l.pool.Put(bp)
		default:
		}
	}
}
