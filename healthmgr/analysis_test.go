package healthmgr

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

// TestCrashNotHeldUpByFullPass checks that a crash is analysed and its
// START sent while a full pass is under way (holding fullMu, as one does
// from its snapshot to its sending).
func TestCrashNotHeldUpByFullPass(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.src.Put(w.app("blog", 2))
	h := w.start(testConfig())
	w.heartbeat("dea-1", w.inst("blog", 0, "i0", "RUNNING"), w.inst("blog", 1, "i1", "RUNNING"))
	w.ready(h, map[string]int{"blog": 2})
	w.clk.Advance(testConfig().StartupWait)
	if got := w.quiet(h); len(got) != 0 {
		t.Fatalf("healthy app: requests %+v", got)
	}

	h.fullMu.Lock()
	w.crash("blog", 1, "i1")
	got := w.next()
	h.fullMu.Unlock()
	if got.Op != protocol.OpStart || got.Droplet != "blog" || !cmp.Equal(got.Indices, []int{1}) {
		t.Fatalf("request %+v, want START of blog index 1", got)
	}
}

// passManager is a manager that is not running, with the desired state
// loaded, for driving analysis passes step by step. Its requests go to w.
func passManager(t *testing.T, w *world) *Manager {
	t.Helper()
	cfg := testConfig()
	cfg.LeaderElection = false
	cfg.StartupWait = 0
	conn := w.srv.Connect()
	t.Cleanup(func() { _ = conn.Close() })
	m, err := New(cfg, Deps{Bus: conn, Desired: w.src, Clock: w.clk, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.leading = true
	m.mu.Unlock()
	if !m.loadAll(context.Background()) {
		t.Fatal("desired state not loaded")
	}
	return m
}

func (w *world) feed(m *Manager, dea string, insts ...protocol.InstanceHeartbeat) {
	w.t.Helper()
	data, err := json.Marshal(protocol.Heartbeat{DEA: dea, Droplets: insts})
	if err != nil {
		w.t.Fatal(err)
	}
	m.onHeartbeat(&bus.Msg{Subject: protocol.DEAHeartbeat, Data: data})
}

// TestOverlappingPassesSendOnce runs a full pass and a pass over changes
// that both find the same missing index, committing in either order, the
// pass over changes analysed under the lock (small) or on a clone of the
// history (large): the START leaves once.
func TestOverlappingPassesSendOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ fullFirst, cloned bool }{{true, false}, {false, false}, {true, true}, {false, true}} {
		fullFirst := tc.fullFirst
		w := newWorld(t)
		w.src.Put(w.app("blog", 2))
		m := passManager(t, w)
		w.feed(m, "dea-1", w.inst("blog", 0, "i0", "RUNNING")) // index 1 is missing

		m.mu.Lock()
		full := m.snapshot(true)
		m.dirty["blog"] = struct{}{}
		changes := m.snapshot(false)
		if tc.cloned && changes != nil {
			changes.hist = m.hist.Clone() // as for a pass over more than inlinePass instances
		}
		m.mu.Unlock()
		if full == nil || changes == nil {
			t.Fatal("no pass to run")
		}
		first, second := changes, full
		if fullFirst {
			first, second = full, changes
		}
		m.finish(first)
		m.finish(second)
		got := w.quiet()
		if len(got) != 1 || got[0].Op != protocol.OpStart || !cmp.Equal(got[0].Indices, []int{1}) {
			t.Errorf("%+v: requests %+v, want one START of index 1", tc, got)
		}
	}
}

// TestExpireSparesInstancesHeardDuringPass checks that a full pass expires
// the instances stale in its snapshot only if they were not heard of
// again while it analysed.
func TestExpireSparesInstancesHeardDuringPass(t *testing.T) {
	t.Parallel()
	for _, heard := range []bool{true, false} {
		w := newWorld(t)
		w.src.Put(w.app("blog", 1))
		m := passManager(t, w)
		in := w.inst("blog", 0, "i0", "RUNNING")
		w.feed(m, "dea-1", in)
		w.clk.Advance(m.cfg.Policy.HeartbeatTTL + time.Second)

		m.mu.Lock()
		p := m.snapshot(true)
		m.mu.Unlock()
		if heard {
			w.feed(m, "dea-1", in)
		}
		m.finish(p)
		m.mu.Lock()
		n := m.apps["blog"].instances.len()
		m.mu.Unlock()
		if want := map[bool]int{true: 1, false: 0}[heard]; n != want {
			t.Errorf("heard during the pass=%v: %d instances left, want %d", heard, n, want)
		}
	}
}
