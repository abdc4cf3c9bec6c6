package dea_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/fake"
)

func TestRouterGreetSetsRegisterInterval(t *testing.T) {
	t.Parallel()
	b := newMemBus().Connect()
	t.Cleanup(func() { _ = b.Close() })
	// A router that asks for registrations every second.
	if _, err := b.Subscribe(protocol.RouterGreet, func(m *bus.Msg) {
		_ = bus.RespondJSON(b, m, protocol.RouterHello{ID: "r", MinimumRegisterIntervalInSeconds: 1})
	}); err != nil {
		t.Fatal(err)
	}
	backend := newFake(t, fake.DefaultConfig())
	fetcher := newMapFetcher()
	dr := packDroplet(t, "./server", map[string]string{"server": "x"})
	fetcher.add("http://cc/d", dr.data)
	regs := record(t, b, protocol.RouterRegister)
	n := runDEA(t, b, testConfig(t), dea.Deps{Backend: backend, Fetcher: fetcher})
	publish(t, b, protocol.DEAStartSubject(n.dea.ID()), startMsg("greet", 0, dr, "http://cc/d", "greet.kiln.test"))
	// The default interval is 20 s: three registrations within a few
	// seconds come from the interval the router asked for.
	waitFor(t, "periodic re-registration", 10*time.Second, func() bool { return len(regs.all()) >= 3 })
}

func TestHealthChecks(t *testing.T) {
	t.Parallel()
	failing := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ready" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	tests := []struct {
		name     string
		behavior fake.Behavior
		kind     string
		endpoint string
		timeout  int
		running  bool
	}{
		{"port, slow starter within its timeout", fake.Behavior{BindAfter: 1500 * time.Millisecond}, "", "", 5, true},
		{"http, healthy", fake.Behavior{}, protocol.HealthCheckHTTP, "/health", 0, true},
		{"http, unhealthy", fake.Behavior{Handler: failing}, protocol.HealthCheckHTTP, "ready", 1, false},
		{"process, never binds", fake.Behavior{NoBind: true}, protocol.HealthCheckProcess, "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, nil)
			w.backend.Script(func(string, warden.ProcessSpec) (fake.Behavior, bool) { return tt.behavior, true })
			s := startMsg("hc", 0, w.dr, w.uri, "hc.kiln.test")
			s.HealthCheckType, s.HealthCheckEndpoint, s.HealthCheckTimeout = tt.kind, tt.endpoint, tt.timeout
			w.start(t, s)
			if tt.running {
				instanceOf(t, w.heartbeats, "hc", 0)
				return
			}
			ex := decodeAs[protocol.Exited](t, w.exits.wait("exit", 10*time.Second, func(*bus.Msg) bool { return true }))
			if ex.Reason != protocol.ReasonCrashed || !strings.Contains(ex.ExitDescription, "503") {
				t.Errorf("exit = %+v", ex)
			}
		})
	}
}

func TestCrashRetentionAndStatus(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(c *dea.Config) { c.CrashRetention = 10 * time.Millisecond })
	w.start(t, startMsg("gone", 0, w.dr, w.uri))
	id := instanceOf(t, w.heartbeats, "gone", 0)
	handle := w.handleOf(t, id)

	// dea.status and vcap.component.discover answer.
	var st protocol.DEAStatusReply
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := bus.RequestJSON(ctx, w.bus, protocol.DEAStatus, struct{}{}, &st); err != nil {
		t.Fatal(err)
	}
	if st.ID != w.node.dea.ID() || st.ReservedMemory != 128 || st.NumClients != 1 || st.Port != 8080 {
		t.Errorf("status = %+v", st)
	}
	var comp protocol.Component
	if err := bus.RequestJSON(ctx, w.bus, protocol.ComponentDiscover, struct{}{}, &comp); err != nil {
		t.Fatal(err)
	}
	if comp.Type != "DEA" || comp.UUID != w.node.dea.ID() || comp.Host != "dea.test:8080" {
		t.Errorf("component = %+v", comp)
	}

	if err := w.backend.Exit(handle, "app", 1); err != nil {
		t.Fatal(err)
	}
	w.exitFor(t, id)
	waitFor(t, "crashed instance reaped", 10*time.Second, func() bool {
		_, err := w.backend.Lookup(context.Background(), handle)
		return err != nil
	})
}
