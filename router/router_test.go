package router

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig invalid: %v", err)
	}
	for name, mod := range map[string]func(*Config){
		"short interval":    func(c *Config) { c.RegisterInterval = 0 },
		"threshold too low": func(c *Config) { c.PruneThreshold = c.RegisterInterval },
		"no attempts":       func(c *Config) { c.MaxAttempts = 0 },
		"too many attempts": func(c *Config) { c.MaxAttempts = 99 },
		"no cookie":         func(c *Config) { c.StickyCookie = "" },
		"bad strategy":      func(c *Config) { c.Strategy = 7 },
		"no dial timeout":   func(c *Config) { c.DialTimeout = 0 },
	} {
		c := DefaultConfig()
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: Validate() = %v, want ErrBadConfig", name, err)
		}
		if _, err := New(c, Deps{Bus: membus.New()}); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%s: New() = %v, want ErrBadConfig", name, err)
		}
	}
	if _, err := New(DefaultConfig(), Deps{}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("New without bus: %v", err)
	}
}

func TestStartGreetDiscover(t *testing.T) {
	t.Parallel()
	srv := membus.NewServer(membus.DefaultConfig())
	t.Cleanup(srv.Close)
	peer := srv.Connect()
	starts := make(chan []byte, 10)
	if _, err := peer.Subscribe(protocol.RouterStart, func(m *bus.Msg) { starts <- append([]byte(nil), m.Data...) }); err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	cfg := DefaultConfig()
	cfg.ID, cfg.Hosts = "r1", []string{"10.0.0.1"}
	r, err := New(cfg, Deps{Bus: srv.Connect(), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	want := protocol.RouterHello{ID: "r1", Version: Version, Hosts: []string{"10.0.0.1"},
		MinimumRegisterIntervalInSeconds: 10, PruneThresholdInSeconds: 30}
	hello := func(data []byte) protocol.RouterHello {
		t.Helper()
		h, err := protocol.Decode[protocol.RouterHello](data)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	select {
	case data := <-starts:
		if diff := cmp.Diff(want, hello(data)); diff != "" {
			t.Errorf("router.start at boot (-want +got):\n%s", diff)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no router.start at boot")
	}
	eventually(t, "tickers", func() bool { return clock.tickerCount() == 2 })
	clock.Advance(cfg.StartInterval)
	select {
	case <-starts:
	case <-time.After(5 * time.Second):
		t.Fatal("no periodic router.start")
	}

	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	m, err := peer.Request(rctx, protocol.RouterGreet, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, hello(m.Data)); diff != "" {
		t.Errorf("greet reply (-want +got):\n%s", diff)
	}
	var comp protocol.Component
	if err := bus.RequestJSON(rctx, peer, protocol.ComponentDiscover, struct{}{}, &comp); err != nil {
		t.Fatal(err)
	}
	if comp.Type != "Router" || comp.UUID != "0-r1" || comp.Host != "10.0.0.1" || comp.Validate() != nil {
		t.Errorf("discover reply %+v", comp)
	}
}

func TestRegistrationsAndBadMessages(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.register("app.example.com", "10.0.0.1:8080", "app1", "inst-1", 0)
	h.register("app.example.com", "10.0.0.2:8080", "app1", "inst-2", 1)
	if got := h.r.Table().Endpoints(); got != 2 {
		t.Fatalf("Endpoints() = %d", got)
	}
	e := h.r.Table().Lookup("APP.example.com", "/").ByInstanceID("inst-2")
	if e == nil || e.AppID != "app1" || e.Index != 1 {
		t.Fatalf("endpoint %+v", e)
	}
	bad := []string{
		`not json`,
		`{"host":"","port":80,"uris":["a.com"]}`,
		`{"host":"10.0.0.1","port":0,"uris":["a.com"]}`,
		`{"host":"10.0.0.1","port":80,"uris":[]}`,
		`{"host":"10.0.0.1","port":80,"uris":["a b.com"]}`,
	}
	for _, b := range bad {
		if err := h.peer.Publish(protocol.RouterRegister, []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.peer.Publish(protocol.RouterUnregister, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bad registrations counted", func() bool { return h.r.metrics.badRegistrations.Load() == uint64(len(bad)+1) })
	if got := h.r.Table().Endpoints(); got != 2 {
		t.Errorf("bad registrations changed the table: %d endpoints", got)
	}
	h.publish(protocol.RouterUnregister, protocol.Register{Host: "10.0.0.1", Port: 8080, URIs: []string{"app.example.com"}})
	eventually(t, "unregistration", func() bool { return h.r.Table().Endpoints() == 1 })
	if v := h.r.Varz(); v.Registrations != 2 || v.BadRegistrations != 6 || v.URLs != 1 || v.Droplets != 1 {
		t.Errorf("varz %+v", v)
	}
}

func TestPruneWithFakeClock(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	cfg := h.r.cfg
	h.register("stale.example.com", "10.0.0.1:8080", "a", "i1", 0)
	h.register("fresh.example.com", "10.0.0.2:8080", "b", "i2", 0)
	// Keep fresh.example.com refreshed as a registrar would, while time
	// passes beyond the threshold.
	for elapsed := time.Duration(0); elapsed <= cfg.PruneThreshold; elapsed += cfg.RegisterInterval {
		h.clock.Advance(cfg.RegisterInterval)
		h.r.Register(&protocol.Register{Host: "10.0.0.2", Port: 8080, URIs: []string{"fresh.example.com"}, App: "b", PrivateInstanceID: "i2", PrivateInstanceIndex: "0"})
	}
	h.clock.Advance(cfg.PruneInterval)
	eventually(t, "stale endpoint pruned", func() bool { return h.r.metrics.prunedEndpoints.Load() == 1 })
	if p := h.r.Table().Lookup("stale.example.com", "/"); p == nil || p.Len() != 0 {
		t.Error("stale route should remain, empty, during the grace period")
	}
	if p := h.r.Table().Lookup("fresh.example.com", "/"); p == nil || p.Len() != 1 {
		t.Error("refreshed endpoint was pruned")
	}
	h.clock.Advance(cfg.EmptyRouteGrace + cfg.PruneInterval)
	eventually(t, "empty route forgotten", func() bool { return h.r.Table().Lookup("stale.example.com", "/") == nil })
}

func TestNoPruneWhileBusDown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	cfg := h.r.cfg
	starts := make(chan struct{}, 10)
	if _, err := h.peer.Subscribe(protocol.RouterStart, func(*bus.Msg) { starts <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	h.register("app.example.com", "10.0.0.1:8080", "a", "i1", 0)

	h.srv.SetConnected(false)
	for range 3 {
		h.clock.Advance(cfg.PruneThreshold)
	}
	eventually(t, "prune suspended", func() bool { return h.r.metrics.pruneSuspended.Load() >= 1 })
	if got := h.r.Table().Endpoints(); got != 1 {
		t.Fatalf("pruned while the bus was down: %d endpoints", got)
	}

	h.srv.SetConnected(true)
	before := h.r.metrics.pruneSuspended.Load()
	h.clock.Advance(cfg.PruneInterval)
	select {
	case <-starts: // router.start on reconnect, so registrars re-register
	case <-time.After(5 * time.Second):
		t.Fatal("no router.start after the bus came back")
	}
	if h.r.metrics.pruneSuspended.Load() != before || h.r.Table().Endpoints() != 1 {
		t.Fatal("first prune after reconnect must refresh, not prune")
	}
	// Nobody re-registers: the endpoint goes once a full threshold passed.
	h.clock.Advance(cfg.PruneThreshold + cfg.PruneInterval)
	eventually(t, "prune resumed", func() bool { return h.r.Table().Endpoints() == 0 })
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	if err := h.r.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestHello(t *testing.T) {
	t.Parallel()
	r, err := New(DefaultConfig(), Deps{Bus: membus.New()})
	if err != nil {
		t.Fatal(err)
	}
	h := r.Hello()
	if len(h.ID) != 32 || h.Validate() != nil {
		t.Errorf("hello %+v", h)
	}
	data, _ := json.Marshal(h)
	if _, err := protocol.Decode[protocol.RouterHello](data); err != nil {
		t.Error(err)
	}
}
