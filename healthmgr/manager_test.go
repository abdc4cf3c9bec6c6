package healthmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

// acting starts a manager on w, waits until it has the desired state and
// the instance counts given, and moves the clock past the startup wait.
func (w *world) acting(cfg Config, counts map[string]int) *hm {
	w.t.Helper()
	h := w.start(cfg)
	w.ready(h, counts)
	w.clk.Advance(cfg.StartupWait)
	return h
}

func TestCrashRequestsStart(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	app := w.app("blog", 3)
	w.src.Put(app)
	cfg := testConfig()
	h := w.start(cfg)
	w.heartbeat("dea-1", w.inst("blog", 0, "i0", "RUNNING"), w.inst("blog", 1, "i1", "RUNNING"), w.inst("blog", 2, "i2", "RUNNING"))
	w.ready(h, map[string]int{"blog": 3})
	w.clk.Advance(testConfig().StartupWait)
	if got := w.quiet(h); len(got) != 0 {
		t.Fatalf("healthy app: requests %+v", got)
	}

	w.crash("blog", 1, "i1")
	got := w.next()
	want := protocol.HMRequest{
		Droplet: "blog", Op: protocol.OpStart, LastUpdated: app.UpdatedAt, Version: "v1",
		Indices: []int{1}, Reason: "crashed",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("request (-want +got):\n%s", diff)
	}
	if rest := w.quiet(h); len(rest) != 0 {
		t.Fatalf("more requests: %+v", rest)
	}
	if n := h.metric("kiln_healthmgr_requests_total", map[string]string{"op": "START", "reason": "crashed"}); n != 1 {
		t.Errorf("requests_total{START,crashed} = %v, want 1", n)
	}
	// No replacement shows up: the START is not repeated while the
	// controller may still be acting on it, then it is.
	w.live(h, cfg.Policy.RetryAfter-time.Second, "dea-1", w.inst("blog", 0, "i0", "RUNNING"), w.inst("blog", 2, "i2", "RUNNING"))
	if rest := w.quiet(h); len(rest) != 0 {
		t.Fatalf("repeated within RetryAfter: %+v", rest)
	}
	w.live(h, time.Second, "dea-1", w.inst("blog", 0, "i0", "RUNNING"), w.inst("blog", 2, "i2", "RUNNING"))
	if again := w.quiet(h); len(again) != 1 || !slices.Equal(again[0].Indices, []int{1}) {
		t.Fatalf("after RetryAfter: %+v, want the START of index 1 again", again)
	}
	if n := h.metric("kiln_healthmgr_crashes_total", nil); n != 1 {
		t.Errorf("crashes_total = %v, want 1", n)
	}
}

func TestLostDEAInstancesRequestedElsewhere(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.src.Put(w.app("blog", 3))
	cfg := testConfig()
	h := w.start(cfg)
	w.heartbeat("dea-1", w.inst("blog", 0, "i0", "RUNNING"), w.inst("blog", 1, "i1", "RUNNING"))
	w.heartbeat("dea-2", w.inst("blog", 2, "i2", "RUNNING"))
	w.ready(h, map[string]int{"blog": 3})
	w.clk.Advance(cfg.StartupWait)
	if got := w.quiet(h); len(got) != 0 {
		t.Fatalf("healthy app: requests %+v", got)
	}
	// dea-1 goes silent; dea-2 keeps heartbeating every 10 s.
	var got []protocol.HMRequest
	for step := 0; step < 6 && len(got) == 0; step++ {
		w.live(h, 10*time.Second, "dea-2", w.inst("blog", 2, "i2", "RUNNING"))
		got = w.quiet(h)
	}
	want := []protocol.HMRequest{{
		Droplet: "blog", Op: protocol.OpStart, LastUpdated: w.app("blog", 3).UpdatedAt, Version: "v1",
		Indices: []int{0, 1}, Reason: "missing",
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("requests (-want +got):\n%s", diff)
	}
	if n := h.metric("kiln_healthmgr_deas_lost_total", nil); n != 1 {
		t.Errorf("deas_lost_total = %v, want 1", n)
	}
	if n := h.instances("blog"); n != 1 {
		t.Errorf("tracked instances = %d, want 1 (dea-2's)", n)
	}
}

func TestStops(t *testing.T) {
	t.Parallel()
	stopped := func(w *world) protocol.BulkApp { a := w.app("blog", 2); a.State = "STOPPED"; return a }
	tests := []struct {
		name    string
		desired func(w *world) []protocol.BulkApp
		running func(w *world) []protocol.InstanceHeartbeat
		want    func(w *world) []protocol.HMRequest
	}{{
		name:    "extra and duplicate",
		desired: func(w *world) []protocol.BulkApp { return []protocol.BulkApp{w.app("blog", 2)} },
		running: func(w *world) []protocol.InstanceHeartbeat {
			dup := w.inst("blog", 0, "i0-dup", "RUNNING")
			dup.StateTimestamp += 60 // younger than i0, so i0 is kept
			return []protocol.InstanceHeartbeat{
				w.inst("blog", 0, "i0", "RUNNING"), dup,
				w.inst("blog", 1, "i1", "RUNNING"), w.inst("blog", 2, "i2", "RUNNING"),
			}
		},
		want: func(w *world) []protocol.HMRequest {
			at := w.app("blog", 2).UpdatedAt
			return []protocol.HMRequest{
				{Droplet: "blog", Op: "STOP", LastUpdated: at, Instances: []string{"i2"}, Reason: "extra"},
				{Droplet: "blog", Op: "STOP", LastUpdated: at, Instances: []string{"i0-dup"}, Reason: "duplicate"},
			}
		},
	}, {
		name:    "stopped app",
		desired: func(w *world) []protocol.BulkApp { return []protocol.BulkApp{stopped(w)} },
		running: func(w *world) []protocol.InstanceHeartbeat {
			return []protocol.InstanceHeartbeat{w.inst("blog", 0, "i0", "RUNNING"), w.inst("blog", 1, "i1", "STARTING")}
		},
		want: func(w *world) []protocol.HMRequest {
			return []protocol.HMRequest{{Droplet: "blog", Op: "STOP", LastUpdated: stopped(w).UpdatedAt, Instances: []string{"i0", "i1"}, Reason: "app-stopped"}}
		},
	}, {
		name:    "deleted app",
		desired: func(w *world) []protocol.BulkApp { return []protocol.BulkApp{w.app("other", 1)} },
		running: func(w *world) []protocol.InstanceHeartbeat {
			return []protocol.InstanceHeartbeat{w.inst("other", 0, "o0", "RUNNING"), w.inst("gone", 0, "g0", "RUNNING")}
		},
		want: func(w *world) []protocol.HMRequest {
			return []protocol.HMRequest{{Droplet: "gone", Op: "STOP", Instances: []string{"g0"}, Reason: "app-deleted"}}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			w.src.Put(tt.desired(w)...)
			h := w.start(testConfig())
			running := tt.running(w)
			w.heartbeat("dea-1", running...)
			counts := map[string]int{}
			for _, r := range running {
				counts[string(r.Droplet)]++
			}
			w.ready(h, counts)
			w.clk.Advance(testConfig().StartupWait)
			got := w.quiet(h)
			if diff := cmp.Diff(tt.want(w), got); diff != "" {
				t.Fatalf("requests (-want +got):\n%s", diff)
			}
			// Sent once: the same STOPs are not repeated within RetryAfter.
			if again := w.quiet(h); len(again) != 0 {
				t.Fatalf("repeated: %+v", again)
			}
		})
	}
}

func TestFlappingBacksOff(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.src.Put(w.app("blog", 1))
	cfg := testConfig()
	h := w.start(cfg)
	w.heartbeat("dea-1", w.inst("blog", 0, "i1", "RUNNING"))
	w.ready(h, map[string]int{"blog": 1})
	w.clk.Advance(cfg.StartupWait)

	// The first ImmediateRestarts crashes restart at once.
	for k := 1; k <= cfg.Policy.ImmediateRestarts; k++ {
		id := "i" + string(rune('0'+k))
		w.crash("blog", 0, id)
		if r := w.next(); r.Op != "START" || r.Reason != "crashed" || r.Flapping {
			t.Fatalf("crash %d: got %+v, want an immediate non-flapping START", k, r)
		}
		// The replacement runs; the next crash comes after RetryAfter.
		next := "i" + string(rune('0'+k+1))
		w.live(h, cfg.Policy.RetryAfter+time.Second, "dea-1", w.inst("blog", 0, next, "RUNNING"))
	}
	// The next crash makes the index flapping: no START until the backoff.
	last := "i" + string(rune('0'+cfg.Policy.ImmediateRestarts+1))
	w.crash("blog", 0, last)
	eventually(t, "crash seen", func() bool { return !h.running("blog", last) })
	if got := w.quiet(h); len(got) != 0 {
		t.Fatalf("flapping index restarted before its backoff: %+v", got)
	}
	status := w.status(t, protocol.HMStatusRequest{Droplet: "blog", State: protocol.StateFlapping})
	if len(status.Indices) != 1 || status.Indices[0].Index != 0 {
		t.Fatalf("status FLAPPING = %+v, want index 0", status)
	}
	w.clk.Advance(cfg.Policy.Backoff(cfg.Policy.ImmediateRestarts + 1))
	got := w.quiet(h)
	want := []protocol.HMRequest{{
		Droplet: "blog", Op: "START", LastUpdated: w.app("blog", 1).UpdatedAt, Version: "v1",
		Indices: []int{0}, Flapping: true, Reason: "crashed",
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("after backoff (-want +got):\n%s", diff)
	}
}

// heardAll reports whether the manager has heard every peer at or after t.
func (h *hm) heardAll(t time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.peers {
		if p.heard.Before(t) {
			return false
		}
	}
	return len(h.peers) > 0
}

func (h *hm) up() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.busUp
}

// running reports whether the manager sees instance id of app live.
func (h *hm) running(app, id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.apps[app]
	return a != nil && a.instances.get(id) != nil && a.instances.get(id).State.String() == "RUNNING"
}

func (w *world) status(t *testing.T, req protocol.HMStatusRequest) protocol.HMStatusReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var reply protocol.HMStatusReply
	if err := bus.RequestJSON(ctx, w.conn, protocol.HealthManagerStatus, req, &reply); err != nil {
		t.Fatalf("status %+v: %v", req, err)
	}
	return reply
}

func TestStartupWait(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.src.Put(w.app("blog", 2))
	cfg := testConfig()
	h := w.start(cfg)
	w.heartbeat("dea-1", w.inst("blog", 0, "i0", "RUNNING"))
	w.ready(h, map[string]int{"blog": 1})
	if got := w.quiet(h); len(got) != 0 {
		t.Fatalf("requests during the startup wait: %+v", got)
	}
	if n := h.metric("kiln_healthmgr_requests_suppressed_total", map[string]string{"why": "startup"}); n == 0 {
		t.Fatal("missing index not found during the startup wait")
	}
	w.clk.Advance(cfg.StartupWait)
	got := w.next()
	if got.Op != "START" || !slices.Equal(got.Indices, []int{1}) || got.Reason != "missing" {
		t.Fatalf("after the wait: %+v, want START of index 1", got)
	}
}

func TestDesiredSourceDownNoStops(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.src.Put(w.app("blog", 1))
	cfg := testConfig()
	h := w.start(cfg)
	w.heartbeat("dea-1", w.inst("blog", 0, "i0", "RUNNING"), w.inst("blog", 1, "i1", "RUNNING"))
	w.ready(h, map[string]int{"blog": 2})

	w.src.SetErr(errDown)
	w.publish(protocol.DropletUpdated, protocol.Updated{Droplet: "blog"})
	eventually(t, "failed reload", func() bool { return h.metric("kiln_healthmgr_desired_up", nil) == 0 })
	w.clk.Advance(cfg.StartupWait)
	if got := w.quiet(h); len(got) != 0 {
		t.Fatalf("requests while the desired state is unavailable: %+v", got)
	}
	if n := h.metric("kiln_healthmgr_requests_suppressed_total", map[string]string{"why": "desired-unavailable"}); n == 0 {
		t.Fatal("extra instance not found while the source was down")
	}
	// The last known desired state still restarts crashes.
	w.crash("blog", 0, "i0")
	if r := w.next(); r.Op != "START" || !slices.Equal(r.Indices, []int{0}) {
		t.Fatalf("crash while source down: %+v, want START of index 0", r)
	}

	w.src.SetErr(nil)
	w.publish(protocol.DropletUpdated, protocol.Updated{Droplet: "blog"})
	r := w.next()
	want := protocol.HMRequest{Droplet: "blog", Op: "STOP", LastUpdated: w.app("blog", 1).UpdatedAt, Instances: []string{"i1"}, Reason: "extra"}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Fatalf("after recovery (-want +got):\n%s", diff)
	}
}

func TestTwoManagersOneActs(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.src.Put(w.app("blog", 2))
	cfg := testConfig()
	a, b := w.start(cfg), w.start(cfg)
	for _, h := range []*hm{a, b} {
		eventually(t, "peers", func() bool { return h.metric("kiln_healthmgr_peers", nil) == 2 })
	}
	w.heartbeat("dea-1", w.inst("blog", 0, "i0", "RUNNING"), w.inst("blog", 1, "i1", "RUNNING"))
	w.ready(a, map[string]int{"blog": 2})
	w.ready(b, map[string]int{"blog": 2})
	// Time passes as it does, with leases exchanged every LeaseInterval.
	for d := time.Duration(0); d < cfg.StartupWait; d += cfg.LeaseInterval {
		w.clk.Advance(cfg.LeaseInterval)
		now := w.clk.Now()
		for _, h := range []*hm{a, b} {
			eventually(t, "lease exchange", func() bool { return h.heardAll(now) })
		}
	}

	leader, standby := a, b
	if b.ID() < a.ID() {
		leader, standby = b, a
	}
	eventually(t, "one leader", func() bool {
		return leader.metric("kiln_healthmgr_leader", nil) == 1 && standby.metric("kiln_healthmgr_leader", nil) == 0
	})
	w.crash("blog", 1, "i1")
	for _, h := range []*hm{a, b} {
		eventually(t, "crash seen", func() bool { return h.metric("kiln_healthmgr_crashes_total", nil) == 1 })
	}
	got := w.quiet(a, b)
	if len(got) != 1 || got[0].Op != "START" || !slices.Equal(got[0].Indices, []int{1}) {
		t.Fatalf("two managers, one crash: requests %+v, want one START of index 1", got)
	}
	if n := standby.metric("kiln_healthmgr_requests_total", nil); n != 0 {
		t.Errorf("standby sent %v requests", n)
	}

	// The leader dies; once its lease expires the standby takes over and
	// does not repeat the START it saw the leader send.
	leader.stop()
	for i := 0; i < 4 && standby.metric("kiln_healthmgr_leader", nil) == 0; i++ {
		w.clk.Advance(cfg.LeaseInterval)
		w.heartbeat("dea-1", w.inst("blog", 0, "i0", "RUNNING"))
		eventually(t, "lease tick", func() bool { return standby.instances("blog") > 0 })
		standby.pass(t)
	}
	if standby.metric("kiln_healthmgr_leader", nil) != 1 {
		t.Fatal("standby did not take over")
	}
	if got := w.quiet(standby); len(got) != 0 {
		t.Fatalf("new leader repeated requests: %+v", got)
	}
	w.crash("blog", 0, "i0")
	if r := w.next(); r.Op != "START" || !slices.Equal(r.Indices, []int{0}) {
		t.Fatalf("after failover: %+v, want START of index 0", r)
	}
}

func TestHealthAndStatusQueries(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.src.Put(w.app("blog", 3), w.app("shop", 1))
	h := w.start(testConfig())
	w.heartbeat("dea-1",
		w.inst("blog", 0, "b0", "RUNNING"), w.inst("blog", 1, "b1", "STARTING"), w.inst("blog", 2, "b2", "RUNNING"),
		w.inst("shop", 0, "s0", "RUNNING"))
	w.ready(h, map[string]int{"blog": 3, "shop": 1})
	w.crash("blog", 2, "b2")
	eventually(t, "crash recorded", func() bool { return !h.running("blog", "b2") })

	// healthmanager.health: one reply per known droplet, none for unknown.
	inbox := w.conn.NewInbox()
	replies := make(chan protocol.HMHealthReply, 16)
	w.sub(inbox, func(m *bus.Msg) {
		var r protocol.HMHealthReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Errorf("bad health reply %s", m.Data)
		}
		replies <- r
	})
	for _, req := range []protocol.HMHealthRequest{
		{Droplets: []protocol.DropletVersion{{Droplet: "blog", Version: "v1"}, {Droplet: "nope", Version: "v1"}, {Droplet: "shop", Version: "v1"}}},
		{Droplets: []protocol.DropletVersion{{Droplet: "blog", Version: "marker"}}},
	} {
		data, _ := json.Marshal(req)
		if err := w.conn.PublishRequest(protocol.HealthManagerHealth, inbox, data); err != nil {
			t.Fatal(err)
		}
	}
	var got []protocol.HMHealthReply
	for {
		select {
		case r := <-replies:
			got = append(got, r)
		case <-time.After(waitLimit):
			t.Fatal("health replies missing")
		}
		if got[len(got)-1].Version == "marker" {
			break
		}
	}
	want := []protocol.HMHealthReply{
		{Droplet: "blog", Version: "v1", Healthy: 1}, {Droplet: "shop", Version: "v1", Healthy: 1},
		{Droplet: "blog", Version: "marker", Healthy: 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("health replies (-want +got):\n%s", diff)
	}

	crashed := w.status(t, protocol.HMStatusRequest{Droplet: "blog", State: protocol.StateCrashed})
	if len(crashed.Instances) != 1 || crashed.Instances[0].Instance != "b2" || crashed.Instances[0].Since != w.clk.Now().Unix() {
		t.Errorf("status CRASHED = %+v, want b2 since now", crashed)
	}
	if flapping := w.status(t, protocol.HMStatusRequest{Droplet: "shop", State: protocol.StateFlapping}); len(flapping.Indices) != 0 {
		t.Errorf("status FLAPPING of a healthy app = %+v", flapping)
	}
	// Unknown app: no reply at all.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	data, _ := json.Marshal(protocol.HMStatusRequest{Droplet: "nope", State: protocol.StateCrashed})
	if _, err := w.conn.Request(ctx, protocol.HealthManagerStatus, data); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("status of unknown app: err %v, want no reply", err)
	}
}

func TestBadInputCountedAndDropped(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.src.Put(w.app("blog", 1))
	h := w.start(testConfig())
	subjects := []string{
		protocol.DEAHeartbeat, protocol.DropletExited, protocol.DEAAdvertise, protocol.DropletUpdated,
		protocol.HMRequests, protocol.HealthManagerStatus, protocol.HealthManagerHealth, LeaseSubject,
	}
	for _, s := range subjects {
		for _, junk := range []string{"{", `{"droplets":[{"droplet":""}]}`, `[]`} {
			if err := w.conn.Publish(s, []byte(junk)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, s := range subjects {
		eventually(t, "bad "+s+" counted", func() bool {
			return h.metric("kiln_healthmgr_bad_messages_total", map[string]string{"subject": s}) >= 2
		})
	}
	// Still working.
	w.heartbeat("dea-1", w.inst("blog", 0, "i0", "RUNNING"))
	w.ready(h, map[string]int{"blog": 1})
}

func TestUnstagedAppIsNotStarted(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	app := w.app("blog", 1)
	app.PackageState = "PENDING"
	w.src.Put(app)
	cfg := testConfig()
	h := w.acting(cfg, map[string]int{})
	if got := w.quiet(h); len(got) != 0 {
		t.Fatalf("unstaged app: %+v", got)
	}
	app.PackageState = "STAGED"
	w.src.Put(app)
	w.publish(protocol.DropletUpdated, protocol.Updated{Droplet: "blog"})
	if r := w.next(); r.Op != "START" || r.Reason != "missing" {
		t.Fatalf("staged app: %+v, want START missing", r)
	}
}

func TestBusReconnectWaitsAgain(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.src.Put(w.app("blog", 1))
	cfg := testConfig()
	h := w.acting(cfg, map[string]int{})
	if r := w.next(); r.Op != "START" {
		t.Fatalf("got %+v, want START", r)
	}
	w.srv.SetConnected(false)
	eventually(t, "bus down seen", func() bool { return !h.up() })
	// Past RetryAfter while the bus is down: nothing can be sent.
	w.clk.Advance(cfg.Policy.RetryAfter)
	h.pass(t)
	w.srv.SetConnected(true)
	select {
	case <-w.starts: // the manager says hello again
	case <-time.After(waitLimit):
		t.Fatal("no healthmanager.start after reconnect")
	}
	if got := w.quiet(h); len(got) != 0 {
		t.Fatalf("requests right after the bus came back: %+v", got)
	}
	w.clk.Advance(cfg.StartupWait)
	if r := w.next(); r.Op != "START" {
		t.Fatalf("got %+v, want START after the wait", r)
	}
}

func TestEvacuationReplacedNotDuplicated(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.src.Put(w.app("blog", 1))
	cfg := testConfig()
	h := w.start(cfg)
	old := w.inst("blog", 0, "old", "RUNNING")
	w.heartbeat("dea-1", old)
	w.ready(h, map[string]int{"blog": 1})
	w.clk.Advance(cfg.StartupWait)

	w.publish(protocol.DropletExited, protocol.Exited{Droplet: "blog", Version: "v1", Instance: "old", Index: 0, Reason: protocol.ReasonDEAEvacuation})
	if r := w.next(); r.Op != "START" || r.Reason != "missing" || !slices.Equal(r.Indices, []int{0}) {
		t.Fatalf("evacuation: %+v, want START of index 0 at once", r)
	}
	// The evacuating DEA keeps serving (and heartbeating) the old instance
	// a while; the replacement starts elsewhere. Neither is stopped.
	repl := w.inst("blog", 0, "new", "STARTING")
	repl.StateTimestamp = float64(w.clk.Now().Unix())
	for range 2 {
		w.heartbeat("dea-1", old)
		// Heartbeats are handled in order: once dea-2's is in, so is dea-1's.
		w.live(h, 10*time.Second, "dea-2", repl)
	}
	if got := w.quiet(h); len(got) != 0 {
		t.Fatalf("requests while evacuating: %+v", got)
	}
	if h.running("blog", "old") || h.instances("blog") != 1 {
		t.Fatalf("evacuated instance counted as live")
	}
}

func TestDeletedAndUnusableApps(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	weird := w.app("weird", 1)
	weird.State = "SUSPENDED" // neither started nor stopped: left alone
	w.src.Put(w.app("blog", 1), weird)
	cfg := testConfig()
	h := w.start(cfg)
	w.heartbeat("dea-1", w.inst("blog", 0, "b0", "RUNNING"), w.inst("weird", 0, "w0", "RUNNING"), w.inst("weird", 1, "w1", "RUNNING"))
	w.ready(h, map[string]int{"blog": 1, "weird": 2})
	w.clk.Advance(cfg.StartupWait)
	if got := w.quiet(h); len(got) != 0 {
		t.Fatalf("requests: %+v", got)
	}
	// blog is deleted: its instance is an orphan (running for an hour,
	// beyond OrphanGrace) and stopped with last_updated 0.
	w.src.Delete("blog")
	w.publish(protocol.DropletUpdated, protocol.Updated{Droplet: "blog"})
	want := protocol.HMRequest{Droplet: "blog", Op: "STOP", Instances: []string{"b0"}, Reason: "app-deleted"}
	if diff := cmp.Diff(want, w.next()); diff != "" {
		t.Fatalf("deleted app (-want +got):\n%s", diff)
	}
}

func TestChangesAreDebounced(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.src.Put(w.app("blog", 5))
	cfg := testConfig()
	cfg.AnalysisDebounce = 100 * time.Millisecond
	h := w.start(cfg)
	w.ready(h, map[string]int{})
	changes := map[string]string{"pass": "changes"}
	before := h.metric("kiln_healthmgr_analysis_seconds", changes)
	for i := range 5 {
		w.heartbeat("dea-1", w.inst("blog", i, fmt.Sprint("i", i), "RUNNING"))
	}
	w.ready(h, map[string]int{"blog": 5})
	eventually(t, "debounce armed", func() bool { return w.clk.timersDue(cfg.AnalysisDebounce) == 1 })
	if n := h.metric("kiln_healthmgr_analysis_seconds", changes); n != before {
		t.Fatalf("%v passes before the debounce window ended", n-before)
	}
	w.clk.Advance(cfg.AnalysisDebounce)
	eventually(t, "debounced pass", func() bool { return h.metric("kiln_healthmgr_analysis_seconds", changes) == before+1 })
	// A crash is not debounced.
	w.clk.Advance(cfg.StartupWait)
	w.crash("blog", 3, "i3")
	if r := w.next(); r.Op != "START" || !slices.Equal(r.Indices, []int{3}) {
		t.Fatalf("crash: %+v", r)
	}
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	h := w.start(testConfig())
	if err := h.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v, want ErrRunning", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Config)
		ok     bool
	}{
		{"default", func(*Config) {}, true},
		{"no startup wait", func(c *Config) { c.StartupWait = 0 }, true},
		{"zero analysis interval", func(c *Config) { c.AnalysisInterval = 0 }, false},
		{"negative debounce", func(c *Config) { c.AnalysisDebounce = -1 }, false},
		{"lease ttl below interval", func(c *Config) { c.LeaseTTL = c.LeaseInterval }, false},
		{"lease interval beyond startup wait", func(c *Config) { c.LeaseInterval = time.Minute; c.LeaseTTL = 2 * time.Minute }, false},
		{"no election, no lease", func(c *Config) { c.LeaderElection = false; c.LeaseInterval = 0 }, true},
		{"bad policy", func(c *Config) { c.Policy.HeartbeatTTL = 0 }, false},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.modify(&c)
		err := c.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v does not wrap ErrInvalidConfig", tt.name, err)
		}
	}
	if _, err := New(DefaultConfig(), Deps{}); !errors.Is(err, ErrMissingDependency) {
		t.Errorf("New without deps: %v", err)
	}
}
