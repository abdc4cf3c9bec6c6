package controllertest

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

func TestDEAConfigValidate(t *testing.T) {
	tests := []struct {
		id   string
		want error
	}{
		{"dea-1", nil},
		{"", ErrInvalidConfig},
		{"a.b", ErrInvalidConfig},
		{"a b", ErrInvalidConfig},
		{"*", ErrInvalidConfig},
	}
	for _, tt := range tests {
		cfg := DefaultDEAConfig()
		cfg.ID = tt.id
		if err := cfg.Validate(); !errors.Is(err, tt.want) {
			t.Errorf("Validate(%q) = %v, want %v", tt.id, err, tt.want)
		}
	}
}

// rig is a DEA on a membus with a droplet server and a watcher of what the
// DEA publishes.
type rig struct {
	b        bus.Bus
	dea      *DEA
	droplet  string // URI
	sum      string // SHA1 of the droplet
	exits    chan protocol.Exited
	beats    chan protocol.Heartbeat
	logLines chan protocol.LogLine
}

func newRig(t *testing.T, cfg DEAConfig) *rig {
	t.Helper()
	mb := membus.NewServer(membus.DefaultConfig())
	t.Cleanup(mb.Close)
	body := []byte("droplet bytes")
	sum := sha1.Sum(body)
	ds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	t.Cleanup(ds.Close)
	r := &rig{b: mb.Connect(), droplet: ds.URL + "/droplet", sum: hex.EncodeToString(sum[:]),
		exits: make(chan protocol.Exited, 16), beats: make(chan protocol.Heartbeat, 16), logLines: make(chan protocol.LogLine, 16)}
	watch := func(subj string, f func([]byte)) {
		sub, err := r.b.Subscribe(subj, func(m *bus.Msg) { f(m.Data) })
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	watch(protocol.DropletExited, func(b []byte) {
		if e, err := protocol.Decode[protocol.Exited](b); err == nil {
			r.exits <- e
		}
	})
	watch(protocol.DEAHeartbeat, func(b []byte) {
		if h, err := protocol.Decode[protocol.Heartbeat](b); err == nil {
			r.beats <- h
		}
	})
	watch(protocol.LogSubject("app-1"), func(b []byte) {
		if l, err := protocol.Decode[protocol.LogLine](b); err == nil {
			r.logLines <- l
		}
	})
	r.dea = StartDEA(t, mb.Connect(), cfg)
	return r
}

func (r *rig) start(t *testing.T, index int, env ...string) {
	t.Helper()
	s := protocol.Start{Droplet: "app-1", Index: index, Name: "web", SHA1: r.sum, ExecutableURI: r.droplet, Version: "v1", Env: env,
		Limits: protocol.Limits{Mem: 64, Disk: 128, FDs: 64}}
	if err := bus.PublishJSON(r.b, protocol.DEAStartSubject(r.dea.ID()), s); err != nil {
		t.Fatal(err)
	}
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		var zero T
		t.Fatalf("nothing received on %T channel", zero)
		return zero
	}
}

func TestStartStopFind(t *testing.T) {
	t.Parallel()
	r := newRig(t, DefaultDEAConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var hello protocol.DEAHello
	if err := bus.RequestJSON(ctx, r.b, protocol.DEADiscover, struct{}{}, &hello); err != nil || hello.ID != "dea-1" {
		t.Fatalf("discover = %+v, %v", hello, err)
	}

	r.start(t, 0)
	hb := recv(t, r.beats)
	if len(hb.Droplets) != 1 || hb.Droplets[0].State != protocol.StateRunning || hb.Droplets[0].Index != 0 {
		t.Fatalf("heartbeat = %+v", hb)
	}
	if l := recv(t, r.logLines); l.Line != StartLine || l.Source != protocol.SourceApp {
		t.Errorf("log line = %+v", l)
	}
	snap := r.dea.Snapshot()
	if !snap.Fetched[r.sum] || snap.Running("app-1", "v1") != 1 || len(snap.Starts) != 1 {
		t.Fatalf("snapshot = %+v", snap)
	}

	// Find answers with stats and a file server behind basic auth.
	var reply protocol.FindDropletReply
	q := protocol.FindDroplet{InstanceFilter: protocol.InstanceFilter{Droplet: "app-1"}, IncludeStats: true}
	if err := bus.RequestJSON(ctx, r.b, protocol.DEAFindDroplet, q, &reply); err != nil {
		t.Fatal(err)
	}
	if reply.Stats == nil || reply.State != protocol.StateRunning || reply.Index != 0 {
		t.Fatalf("find reply = %+v", reply)
	}
	get := func(path, user, pass string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, "GET", reply.FileURI+path, nil)
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("logs/stdout.log", reply.Credentials[0], reply.Credentials[1]); code != 200 || body != "file /files/"+reply.Instance+"/logs/stdout.log" {
		t.Errorf("file = %d %q", code, body)
	}
	if code, _ := get("missing", FileUser, FilePassword); code != http.StatusNotFound {
		t.Errorf("missing file = %d, want 404", code)
	}
	if code, _ := get("logs", FileUser, "wrong"); code != http.StatusForbidden {
		t.Errorf("bad credentials = %d, want 403", code)
	}

	// Update is recorded; stop ends the instance with an exit.
	if err := bus.PublishJSON(r.b, protocol.DEAUpdate, protocol.Update{Droplet: "app-1", URIs: []string{"web.kiln.test"}}); err != nil {
		t.Fatal(err)
	}
	if err := bus.PublishJSON(r.b, protocol.DEAStop, protocol.Stop{Droplet: "app-1"}); err != nil {
		t.Fatal(err)
	}
	if e := recv(t, r.exits); e.Reason != protocol.ReasonStopped || e.Instance != reply.Instance {
		t.Errorf("exit = %+v", e)
	}
	snap, ok := r.dea.WaitFor(ctx, func(s Snapshot) bool { return len(s.Instances) == 0 && len(s.Updates) == 1 })
	if !ok {
		t.Fatalf("snapshot = %+v", snap)
	}
	if d := cmp.Diff([]protocol.Stop{{Droplet: "app-1"}}, snap.Stops); d != "" {
		t.Errorf("stops (-want +got):\n%s", d)
	}
}

func TestCrashAndRemove(t *testing.T) {
	t.Parallel()
	r := newRig(t, DefaultDEAConfig())
	r.start(t, 1, "CRASH=1")
	if e := recv(t, r.exits); e.Reason != protocol.ReasonCrashed || e.Index != 1 {
		t.Fatalf("exit = %+v", e)
	}
	var id string
	for k, i := range r.dea.Snapshot().Instances {
		if i.State != protocol.StateCrashed {
			t.Errorf("instance %+v, want CRASHED", i)
		}
		id = k
	}
	if !r.dea.Remove(id) || r.dea.Remove(id) {
		t.Errorf("Remove(%q) twice: want true then false", id)
	}
}

func TestUnfetchableDropletDoesNotRun(t *testing.T) {
	t.Parallel()
	r := newRig(t, DefaultDEAConfig())
	r.sum = "0000000000000000000000000000000000000000"
	r.start(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, ok := r.dea.WaitFor(ctx, func(s Snapshot) bool { return len(s.Starts) == 1 })
	if !ok || snap.Fetched[r.sum] {
		t.Fatalf("snapshot = %+v", snap)
	}
	select {
	case hb := <-r.beats:
		t.Errorf("heartbeat for an unfetched droplet: %+v", hb)
	default:
	}
}

func TestSilentAndCustomFiles(t *testing.T) {
	t.Parallel()
	cfg := DefaultDEAConfig()
	cfg.ID = "dea-quiet"
	cfg.Files = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "custom") })
	r := newRig(t, cfg)
	r.dea.SetSilent(true)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var hello protocol.DEAHello
	if err := bus.RequestJSON(ctx, r.b, protocol.DEADiscover, struct{}{}, &hello); err == nil {
		t.Fatalf("silent DEA answered discover: %+v", hello)
	}
	r.start(t, 0)
	recv(t, r.beats)
	var reply protocol.FindDropletReply
	fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer fcancel()
	if err := bus.RequestJSON(fctx, r.b, protocol.DEAFindDroplet, protocol.FindDroplet{InstanceFilter: protocol.InstanceFilter{Droplet: "app-1"}}, &reply); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(fctx, "GET", reply.FileURI+"anything", nil)
	req.SetBasicAuth(FileUser, FilePassword)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "custom" {
		t.Errorf("file = %q, want custom", b)
	}
}

func TestWaitForEndsWithContext(t *testing.T) {
	t.Parallel()
	r := newRig(t, DefaultDEAConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, ok := r.dea.WaitFor(ctx, func(s Snapshot) bool { return len(s.Starts) > 0 }); ok {
		t.Fatal("WaitFor held without a start")
	}
}

func TestWaitReady(t *testing.T) {
	t.Parallel()
	mb := membus.NewServer(membus.DefaultConfig())
	t.Cleanup(mb.Close)
	b := mb.Connect()
	sub, err := b.Subscribe(protocol.BulkCredentialsSubject, func(m *bus.Msg) {
		_ = bus.RespondJSON(b, m, protocol.BulkCredentials{User: "u", Password: "p"})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	WaitReady(t, mb.Connect(), 5*time.Second)
}

func TestBadStartRecorded(t *testing.T) {
	t.Parallel()
	mb := membus.NewServer(membus.DefaultConfig())
	t.Cleanup(mb.Close)
	d, err := NewDEA(mb.Connect(), DefaultDEAConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := mb.Connect().Publish(protocol.DEAStartSubject(d.ID()), []byte(`{"droplet":"x"}`)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, ok := d.WaitFor(ctx, func(s Snapshot) bool { return len(s.BadStarts) == 1 })
	if !ok || len(snap.Starts) != 0 || !errors.Is(snap.BadStarts[0], protocol.ErrInvalid) {
		t.Fatalf("snapshot = %+v", snap)
	}
	if _, err := NewDEA(mb.Connect(), DEAConfig{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewDEA with no id: %v, want ErrInvalidConfig", err)
	}
}

// runFunc adapts a function to Runner.
type runFunc func(context.Context) error

func (f runFunc) Run(ctx context.Context) error { return f(ctx) }

// recorder is a testing.TB that records errors instead of failing.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) { r.errs = append(r.errs, format) }

func TestRun(t *testing.T) {
	t.Parallel()
	stopped := make(chan struct{})
	t.Run("clean", func(t *testing.T) {
		Run(t, runFunc(func(ctx context.Context) error {
			<-ctx.Done()
			close(stopped)
			return nil
		}))
	})
	select {
	case <-stopped:
	default:
		t.Fatal("Run not cancelled when the test ended")
	}
	// A Run that fails is reported when the test ends.
	rec := &recorder{TB: t}
	var cleanups []func()
	Run(cleanupTB{rec, &cleanups}, runFunc(func(ctx context.Context) error {
		<-ctx.Done()
		return errors.New("boom")
	}))
	for _, f := range cleanups {
		f()
	}
	if len(rec.errs) != 1 {
		t.Errorf("errors reported = %q, want one", rec.errs)
	}
}

// cleanupTB collects cleanups for the test to run when it likes.
type cleanupTB struct {
	*recorder
	cleanups *[]func()
}

func (c cleanupTB) Cleanup(f func()) { *c.cleanups = append(*c.cleanups, f) }
