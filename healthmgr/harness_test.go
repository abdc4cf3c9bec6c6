package healthmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

// waitLimit bounds every wait in these tests (real time).
const waitLimit = 5 * time.Second

// world is a bus with simulated DEAs and controller: test code publishes
// heartbeats and exits and reads the requests health managers send.
type world struct {
	t    *testing.T
	srv  *membus.Server
	conn *membus.Conn // the simulated DEAs' and controller's connection
	clk  *fakeClock
	src  *MemSource

	reqs   chan protocol.HMRequest
	starts chan struct{} // one per healthmanager.start
	marks  int
	t0     time.Time // the fake clock's start
}

func newWorld(t *testing.T) *world {
	t.Helper()
	srv := membus.NewServer(membus.DefaultConfig())
	t.Cleanup(srv.Close)
	w := &world{
		t: t, srv: srv, conn: srv.Connect(), clk: newFakeClock(), src: NewMemSource(),
		reqs: make(chan protocol.HMRequest, 1024), starts: make(chan struct{}, 16),
	}
	w.sub(protocol.HMRequests, func(m *bus.Msg) {
		var r protocol.HMRequest
		if json.Unmarshal(m.Data, &r) == nil && r.Droplet != "" {
			w.reqs <- r // junk comes from TestBadInputCountedAndDropped
		}
	})
	w.sub(protocol.HealthManagerStart, func(*bus.Msg) { w.starts <- struct{}{} })
	w.t0 = w.clk.Now()
	return w
}

func (w *world) sub(subject string, h bus.Handler) {
	w.t.Helper()
	s, err := w.conn.Subscribe(subject, h)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { _ = s.Unsubscribe() })
}

// testConfig is DefaultConfig without debouncing, so changes are analysed
// without moving the fake clock.
func testConfig() Config {
	c := DefaultConfig()
	c.AnalysisDebounce = 0
	c.ReloadDebounce = 0
	return c
}

// hm is a running manager with its registry.
type hm struct {
	*Manager
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // what Run returned
}

// start runs a manager on its own connection and waits for its
// healthmanager.start, by which time it listens to everything.
func (w *world) start(cfg Config) *hm {
	w.t.Helper()
	return newHM(w.t, w, cfg, w.src)
}

// newHM runs a manager on w with its own desired source.
func newHM(t *testing.T, w *world, cfg Config, src DesiredSource) *hm {
	t.Helper()
	reg := prometheus.NewRegistry()
	conn := w.srv.Connect()
	w.t.Cleanup(func() { _ = conn.Close() })
	m, err := New(cfg, Deps{Bus: conn, Desired: src, Registerer: reg, Clock: w.clk, Logger: testLogger()})
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &hm{Manager: m, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		h.err = m.Run(ctx)
		close(h.done)
	}()
	w.t.Cleanup(func() {
		h.stop()
		if h.err != nil {
			w.t.Errorf("Run: %v", h.err)
		}
	})
	select {
	case <-w.starts:
	case <-h.done:
		w.t.Fatalf("Run returned early: %v", h.err)
	case <-time.After(waitLimit):
		w.t.Fatal("no healthmanager.start")
	}
	return h
}

func (h *hm) stop() {
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(waitLimit):
		panic("manager did not stop")
	}
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// app is a started, staged app updated an hour before the test began, so
// no grace period applies.
func (w *world) app(id string, instances int) protocol.BulkApp {
	return protocol.BulkApp{
		ID: protocol.AppID(id), Version: "v1", Instances: instances, State: "STARTED",
		PackageState: "STAGED", UpdatedAt: w.t0.Add(-time.Hour).Unix(),
	}
}

// inst is a heartbeat entry of version v1 in its state for an hour.
func (w *world) inst(app string, index int, id, state string) protocol.InstanceHeartbeat {
	return protocol.InstanceHeartbeat{
		Droplet: protocol.AppID(app), Version: "v1", Instance: id, Index: index, State: state,
		StateTimestamp: float64(w.clk.Now().Add(-time.Hour).Unix()),
	}
}

func (w *world) publish(subject string, v any) {
	w.t.Helper()
	if err := bus.PublishJSON(w.conn, subject, v); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) heartbeat(dea string, insts ...protocol.InstanceHeartbeat) {
	w.publish(protocol.DEAHeartbeat, protocol.Heartbeat{DEA: dea, Droplets: insts})
}

func (w *world) crash(app string, index int, id string) {
	w.publish(protocol.DropletExited, protocol.Exited{
		Droplet: protocol.AppID(app), Version: "v1", Instance: id, Index: index, Reason: protocol.ReasonCrashed,
	})
}

// next returns the next request, failing the test if none comes.
func (w *world) next() protocol.HMRequest {
	w.t.Helper()
	select {
	case r := <-w.reqs:
		return r
	case <-time.After(waitLimit):
		w.t.Fatal("no request")
		return protocol.HMRequest{}
	}
}

// quiet runs a full pass on every manager given and returns the requests
// sent until then (and not read yet). It publishes a marker request after
// the passes; requests published before it arrive before it.
func (w *world) quiet(hms ...*hm) []protocol.HMRequest {
	w.t.Helper()
	for _, h := range hms {
		h.pass(w.t)
	}
	w.marks++
	mark := protocol.HMRequest{Droplet: "zz-marker", Op: protocol.OpStop, Instances: []string{fmt.Sprint("mark-", w.marks)}}
	w.publish(protocol.HMRequests, mark)
	var got []protocol.HMRequest
	for {
		r := w.next()
		if r.Droplet == mark.Droplet && r.Instances[0] == mark.Instances[0] {
			return got
		}
		got = append(got, r)
	}
}

// pass forces a full analysis pass and waits until it is over.
func (h *hm) pass(t *testing.T) {
	t.Helper()
	full := map[string]string{"pass": "full"}
	before := h.metric("kiln_healthmgr_analysis_seconds", full)
	kick(h.kickFull)
	eventually(t, "analysis pass", func() bool { return h.metric("kiln_healthmgr_analysis_seconds", full) > before })
}

// metric sums the samples of a family whose labels include want: values
// of counters and gauges, counts of histograms.
func (h *hm) metric(name string, want map[string]string) float64 {
	fams, err := h.reg.Gather()
	if err != nil {
		panic(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasLabels(m, want) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			n++
		}
	}
	return n == len(want)
}

// instances returns how many instances of app the manager tracks.
func (h *hm) instances(app string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a := h.apps[app]; a != nil {
		return a.instances.len()
	}
	return 0
}

func (h *hm) loaded() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.desiredLoaded
}

// ready waits until the manager has loaded the desired state and sees
// the given instance counts per app.
func (w *world) ready(h *hm, counts map[string]int) {
	w.t.Helper()
	eventually(w.t, "desired state and heartbeats", func() bool {
		if !h.loaded() {
			return false
		}
		for app, n := range counts {
			if h.instances(app) != n {
				return false
			}
		}
		return true
	})
}

// live moves the clock on by total in heartbeat periods while dea keeps
// heartbeating insts, waiting each time until the manager has the
// heartbeat, as a DEA's instances stay fresh while time passes.
func (w *world) live(h *hm, total time.Duration, dea string, insts ...protocol.InstanceHeartbeat) {
	w.t.Helper()
	const period = 10 * time.Second
	for total > 0 {
		now := w.clk.Now()
		w.heartbeat(dea, insts...)
		eventually(w.t, "heartbeat", func() bool { return h.seenSince(insts, now) })
		step := min(period, total)
		w.clk.Advance(step)
		total -= step
	}
}

// seenSince reports whether every instance was heard of at or after t.
func (h *hm) seenSince(insts []protocol.InstanceHeartbeat, t time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, in := range insts {
		a := h.apps[string(in.Droplet)]
		if a == nil || a.instances.get(in.Instance) == nil || a.instances.get(in.Instance).LastSeen.Before(t) {
			return false
		}
	}
	return true
}

// eventually polls cond until it holds or waitLimit passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

var errDown = errors.New("controller unreachable")
