package healthmgr

import (
	"context"
	"slices"
	"testing"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

// FuzzHandlers feeds arbitrary payloads to every bus handler, then runs a
// full analysis: nothing may panic, and the state must stay consistent.
func FuzzHandlers(f *testing.F) {
	seeds := []struct {
		subject string
		data    string
	}{
		{protocol.DEAHeartbeat, `{"dea":"d1","droplets":[{"droplet":"a","version":"v1","instance":"i0","index":0,"state":"RUNNING","state_timestamp":1700000000.5}]}`},
		{protocol.DEAHeartbeat, `{"dea":"d1","droplets":[{"droplet":7,"version":"v1","instance":"i1","index":99999999999,"state":"CRASHED","state_timestamp":1e300}]}`},
		{protocol.DropletExited, `{"droplet":"a","version":"v1","instance":"i0","index":0,"reason":"CRASHED"}`},
		{protocol.DropletExited, `{"droplet":"a","version":"v1","instance":"i0","index":0,"reason":"DEA_EVACUATION"}`},
		{protocol.DEAAdvertise, `{"id":"d1","available_memory":1024}`},
		{protocol.DropletUpdated, `{"droplet":"a"}`},
		{protocol.HMRequests, `{"droplet":"a","op":"START","indices":[0,1],"version":"v1"}`},
		{protocol.HealthManagerStatus, `{"droplet":"a","state":"FLAPPING"}`},
		{protocol.HealthManagerHealth, `{"droplets":[{"droplet":"a","version":"v1"}]}`},
		{LeaseSubject, `{"id":"peer","since":-1}`},
	}
	subjects := []string{
		protocol.DEAHeartbeat, protocol.DropletExited, protocol.DEAAdvertise, protocol.DropletUpdated,
		protocol.HMRequests, protocol.HealthManagerStatus, protocol.HealthManagerHealth, LeaseSubject,
	}
	for _, s := range seeds {
		f.Add(uint8(slices.Index(subjects, s.subject)), []byte(s.data))
	}
	srv := membus.NewServer(membus.DefaultConfig())
	f.Cleanup(srv.Close)
	clk := newFakeClock()
	cfg := DefaultConfig()
	cfg.StartupWait = 0
	src := NewMemSource(protocol.BulkApp{ID: "a", Version: "v1", Instances: 2, State: "STARTED", UpdatedAt: clk.Now().Unix() - 3600})
	m, err := New(cfg, Deps{Bus: srv.Connect(), Desired: src, Clock: clk})
	if err != nil {
		f.Fatal(err)
	}
	if !m.loadAll(context.Background()) {
		f.Fatal("load failed")
	}
	handlers := map[string]bus.Handler{
		protocol.DEAHeartbeat: m.onHeartbeat, protocol.DropletExited: m.onExited,
		protocol.DEAAdvertise: m.onAdvertise, protocol.DropletUpdated: m.onUpdated,
		protocol.HMRequests: m.onPeerRequest, protocol.HealthManagerStatus: m.onStatus,
		protocol.HealthManagerHealth: m.onHealth, LeaseSubject: m.onLease,
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		subject := subjects[int(which)%len(subjects)]
		handlers[subject](&bus.Msg{Subject: subject, Reply: "_INBOX.fuzz", Data: data})
		clk.Advance(1e9)
		m.analyze(true)
		drainSignals(m)

		m.mu.Lock()
		defer m.mu.Unlock()
		for id, a := range m.apps {
			for i, in := range a.instances.list {
				if in.App != id || a.instances.pos[in.ID] != i {
					t.Fatalf("instance %q of %q filed under %q at %d", in.ID, in.App, id, i)
				}
			}
			if len(a.instances.pos) != len(a.instances.list) {
				t.Fatalf("app %q: %d indexed, %d listed", id, len(a.instances.pos), len(a.instances.list))
			}
			if a.known && a.desired.ID != id {
				t.Fatalf("desired %q filed under %q", a.desired.ID, id)
			}
		}
	})
}

// drainSignals empties the loop signals a manager that is not running
// accumulates.
func drainSignals(m *Manager) {
	for _, c := range []chan struct{}{m.kickSoon, m.kickFull, m.reloadAll} {
		select {
		case <-c:
		default:
		}
	}
	for len(m.reloadApp) > 0 {
		<-m.reloadApp
	}
}
