package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

// logHub keeps the recent log lines of every app in a ring buffer and lets
// readers follow new ones.
type logHub struct {
	size int

	mu   sync.Mutex
	apps map[string]*appLogs
}

type appLogs struct {
	lines   []protocol.LogLine // ring
	next    int
	full    bool
	seq     uint64 // lines ever added
	changed chan struct{}
}

func newLogHub(size int) *logHub { return &logHub{size: size, apps: map[string]*appLogs{}} }

func (h *logHub) add(l protocol.LogLine) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.apps[string(l.App)]
	if a == nil {
		a = &appLogs{lines: make([]protocol.LogLine, h.size), changed: make(chan struct{})}
		h.apps[string(l.App)] = a
	}
	a.lines[a.next] = l
	a.next = (a.next + 1) % h.size
	a.full = a.full || a.next == 0
	a.seq++
	close(a.changed)
	a.changed = make(chan struct{})
}

// since returns the lines added after sequence number from (at most the
// ring's content), the current sequence number and a change channel.
func (h *logHub) since(app string, from uint64) ([]protocol.LogLine, uint64, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.apps[app]
	if a == nil {
		a = &appLogs{lines: make([]protocol.LogLine, h.size), changed: make(chan struct{})}
		h.apps[app] = a
	}
	n := a.next
	if a.full {
		n = h.size
	}
	want := a.seq - from
	if from > a.seq {
		want = 0
	}
	if want > uint64(n) {
		want = uint64(n)
	}
	out := make([]protocol.LogLine, 0, want)
	for i := int(want); i > 0; i-- {
		out = append(out, a.lines[(a.next-i+h.size)%h.size])
	}
	return out, a.seq, a.changed
}

func (h *logHub) forget(app string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.apps, app)
}

func (c *Controller) onLogLine(m *bus.Msg) {
	l, err := protocol.Decode[protocol.LogLine](m.Data)
	if err != nil || protocol.LogSubject(l.App) != m.Subject {
		return
	}
	c.logs.add(l)
}

// appLogs is GET /apps/:name/logs (kiln extension): the recent lines as a
// JSON array, or with ?follow=true a server-sent event stream of them and
// every new line.
func (c *Controller) appLogs(k *call) error {
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	lines, seq, changed := c.logs.since(a.ID, 0)
	if n, err := strconv.Atoi(k.r.URL.Query().Get("lines")); err == nil && n >= 0 && n < len(lines) {
		lines = lines[len(lines)-n:]
	}
	if k.r.URL.Query().Get("follow") != "true" {
		writeJSON(k.w, http.StatusOK, lines)
		return nil
	}
	fl, ok := k.w.(http.Flusher)
	if !ok {
		return ErrBadRequest.with("streaming unsupported")
	}
	h := k.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	k.w.WriteHeader(http.StatusOK)
	ctx := k.r.Context()
	for {
		for _, l := range lines {
			b, _ := json.Marshal(l)
			if _, err := fmt.Fprintf(k.w, "data: %s\n\n", b); err != nil {
				return nil
			}
		}
		fl.Flush()
		if !c.awaitChange(ctx, changed) {
			return nil
		}
		lines, seq, changed = c.logs.since(a.ID, seq)
	}
}

// stagingLog is GET /apps/:name/staging_log (kiln extension): the last
// staging log as text; with ?follow=true it streams until staging ends.
func (c *Controller) stagingLog(k *call) error {
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	tl := c.stager.log(a.ID)
	if tl == nil {
		return ErrFileNotFound.with("staging log")
	}
	k.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	follow := k.r.URL.Query().Get("follow") == "true"
	fl, _ := k.w.(http.Flusher)
	k.w.WriteHeader(http.StatusOK)
	var off int64
	ctx := k.r.Context()
	for {
		text, next, closed, changed := tl.read(off)
		off = next
		if _, err := k.w.Write([]byte(text)); err != nil {
			return nil
		}
		if !follow || closed {
			return nil
		}
		if fl != nil {
			fl.Flush()
		}
		if !c.awaitChange(ctx, changed) {
			return nil
		}
	}
}

// awaitChange waits until changed is closed and reports true, or false
// when the request (ctx) or the controller ends first.
func (c *Controller) awaitChange(ctx context.Context, changed <-chan struct{}) bool {
	select {
	case <-ctx.Done():
		return false
	case <-c.bgCtx.Done():
		return false
	case <-changed:
		return true
	}
}
