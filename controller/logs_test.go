package controller

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/controllertest"
)

func TestLogs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.LogLines = 5 })
	ctx := context.Background()
	cl := e.user("log@x.io")
	pushStaged(t, cl, "logger", map[string]string{"a": "b"})
	rec, _ := e.store.GetAppByName(ctx, "log@x.io", "logger")
	id := protocol.AppID(rec.ID)
	// Staging lines went through the bus into the ring.
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines, err := cl.Logs(ctx, "logger")
		if err != nil {
			t.Fatal(err)
		}
		if len(lines) > 0 && lines[0].Source == protocol.SourceStaging {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no staging lines: %+v", lines)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < 8; i++ {
		_ = bus.PublishJSON(e.bus, protocol.LogSubject(id), protocol.LogLine{App: id, Source: protocol.SourceApp, Line: fmt.Sprintf("line %d", i)})
	}
	for {
		lines, _ := cl.Logs(ctx, "logger")
		if len(lines) == 5 && lines[4].Line == "line 7" {
			if lines[0].Line != "line 3" {
				t.Fatalf("ring = %+v", lines)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lines = %+v", lines)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Follow: the recent lines, then a new one published after.
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	got := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- cl.FollowLogs(fctx, "logger", func(l protocol.LogLine) bool {
			got <- l.Line
			return l.Line != "live"
		})
	}()
	for i := 0; i < 5; i++ {
		<-got
	}
	_ = bus.PublishJSON(e.bus, protocol.LogSubject(id), protocol.LogLine{App: id, Source: protocol.SourceApp, Line: "live"})
	select {
	case l := <-got:
		if l != "live" {
			t.Fatalf("followed %q", l)
		}
	case <-fctx.Done():
		t.Fatal("no live line")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A line published for one app on another's subject is dropped.
	_ = bus.PublishJSON(e.bus, protocol.LogSubject("other"), protocol.LogLine{App: id, Source: protocol.SourceApp, Line: "spoof"})
	lines, _ := cl.Logs(ctx, "logger")
	for _, l := range lines {
		if strings.Contains(l.Line, "spoof") {
			t.Fatal("spoofed line accepted")
		}
	}
}

// TestStagingLogFollow follows a staging log while the staging runs.
func TestStagingLogFollow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	gate := make(chan struct{})
	e.stager.Hold(gate)
	ctx := context.Background()
	cl := e.user("follow@x.io")
	if err := cl.CreateApp(ctx, clientAppRequest("slow")); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Push(ctx, "slow", controllertest.AppDir(t, map[string]string{"a": "b"})); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := cl.StagingLog(ctx, "slow", true, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	br := bufio.NewReader(pr)
	first, err := br.ReadString('\n')
	if err != nil || !strings.Contains(first, "waiting at the gate") {
		t.Fatalf("first line = %q, %v", first, err)
	}
	close(gate)
	rest, _ := io.ReadAll(br)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rest), "test buildpack: 1 files") {
		t.Fatalf("rest of log = %q", rest)
	}
}
