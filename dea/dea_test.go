package dea_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/fake"
)

// world is one DEA on membus and warden/fake with recorders on the
// subjects tests watch.
type world struct {
	bus        bus.Bus
	backend    *fake.Backend
	fetcher    *mapFetcher
	node       *node
	reg        *prometheus.Registry
	dr         testDroplet
	uri        string
	heartbeats *recorder
	registers  *recorder
	unregs     *recorder
	exits      *recorder
	logs       *recorder
}

func newWorld(t *testing.T, mod func(*dea.Config)) *world {
	t.Helper()
	b := newMemBus().Connect()
	t.Cleanup(func() { _ = b.Close() })
	w := &world{
		bus:     b,
		backend: newFake(t, fake.DefaultConfig()),
		fetcher: newMapFetcher(),
		reg:     prometheus.NewRegistry(),
		dr:      packDroplet(t, "./server", map[string]string{"server": "#!/bin/sh\n"}),
		uri:     "http://cc.test/droplets/app",
	}
	w.fetcher.add(w.uri, w.dr.data)
	w.heartbeats = record(t, b, protocol.DEAHeartbeat)
	w.registers = record(t, b, protocol.RouterRegister)
	w.unregs = record(t, b, protocol.RouterUnregister)
	w.exits = record(t, b, protocol.DropletExited)
	w.logs = record(t, b, "logs.>")
	cfg := testConfig(t)
	if mod != nil {
		mod(&cfg)
	}
	w.node = runDEA(t, b, cfg, dea.Deps{Backend: w.backend, Fetcher: w.fetcher, Registerer: w.reg})
	return w
}

func (w *world) start(t *testing.T, s protocol.Start) {
	t.Helper()
	publish(t, w.bus, protocol.DEAStartSubject(w.node.dea.ID()), s)
}

// handleOf finds the container of instance id through the environment the
// fake recorded.
func (w *world) handleOf(t *testing.T, id string) string {
	t.Helper()
	for _, r := range w.backend.Runs() {
		if r.ID == "app" && lookupEnv(r.Env, "INSTANCE_GUID") == id {
			return r.Handle
		}
	}
	t.Fatalf("no container for instance %s", id)
	return ""
}

func (w *world) exitFor(t *testing.T, id string) protocol.Exited {
	t.Helper()
	m := w.exits.wait("droplet.exited of "+id, 10*time.Second, func(m *bus.Msg) bool {
		return decodeAs[protocol.Exited](t, m).Instance == id
	})
	return decodeAs[protocol.Exited](t, m)
}

func TestStartRunningRegistered(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	s := startMsg("app-1", 0, w.dr, w.uri, "app-1.kiln.test")
	w.start(t, s)
	id := instanceOf(t, w.heartbeats, "app-1", 0)

	m := w.registers.wait("router.register", 5*time.Second, func(*bus.Msg) bool { return true })
	reg := decodeAs[protocol.Register](t, m)
	if reg.Port == 0 || reg.Host != "127.0.0.1" {
		t.Errorf("register endpoint = %s:%d", reg.Host, reg.Port)
	}
	want := protocol.Register{
		DEA: w.node.dea.ID(), App: "app-1", Host: reg.Host, Port: reg.Port, URIs: []string{"app-1.kiln.test"},
		Tags: map[string]string{"component": "dea-0"}, PrivateInstanceID: id, PrivateInstanceIndex: "0",
	}
	if diff := cmp.Diff(want, reg); diff != "" {
		t.Errorf("register (-want +got):\n%s", diff)
	}
	// The app answers on the registered port (the fake binds it).
	resp, err := http.Get("http://" + reg.Addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	env := envOf(w.backend, w.handleOf(t, id))
	var app map[string]any
	if err := json.Unmarshal([]byte(lookupEnv(env, "VCAP_APPLICATION")), &app); err != nil {
		t.Fatalf("VCAP_APPLICATION: %v", err)
	}
	for _, k := range []string{"name", "application_name", "uris", "application_uris", "application_id", "version",
		"application_version", "instance_id", "instance_index", "host", "port", "limits", "space_name",
		"organization_name", "start", "started_at"} {
		if _, ok := app[k]; !ok {
			t.Errorf("VCAP_APPLICATION lacks %q", k)
		}
	}
	if app["instance_id"] != id || app["application_id"] != "app-1" {
		t.Errorf("VCAP_APPLICATION ids = %v, %v", app["instance_id"], app["application_id"])
	}
	if got := lookupEnv(env, "PORT"); got == "" || got != lookupEnv(env, "VCAP_APP_PORT") {
		t.Errorf("PORT %q, VCAP_APP_PORT %q", got, lookupEnv(env, "VCAP_APP_PORT"))
	}
	if got := lookupEnv(env, "GREETING"); got != "hello" {
		t.Errorf("user env GREETING = %q", got)
	}
	var svcs map[string][]map[string]any
	if err := json.Unmarshal([]byte(lookupEnv(env, "VCAP_SERVICES")), &svcs); err != nil {
		t.Fatalf("VCAP_SERVICES: %v", err)
	}
	if len(svcs["postgresql"]) != 1 || svcs["postgresql"][0]["name"] != "db" {
		t.Errorf("VCAP_SERVICES = %v", svcs)
	}
	w.logs.wait("DEA log line about the health check", 5*time.Second, func(m *bus.Msg) bool {
		l := decodeAs[protocol.LogLine](t, m)
		return l.Source == protocol.SourceDEA && strings.Contains(l.Line, "health check passed")
	})
}

func TestCrashReportsExitAndUnregister(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.start(t, startMsg("crashy", 2, w.dr, w.uri, "crashy.kiln.test"))
	id := instanceOf(t, w.heartbeats, "crashy", 2)
	w.registers.wait("register", 5*time.Second, func(*bus.Msg) bool { return true })

	if err := w.backend.Exit(w.handleOf(t, id), "app", 3); err != nil {
		t.Fatal(err)
	}
	ex := w.exitFor(t, id)
	want := protocol.Exited{Droplet: "crashy", Version: ex.Version, Instance: id, Index: 2, Reason: protocol.ReasonCrashed,
		CrashTimestamp: ex.CrashTimestamp, ExitStatus: 3, ExitDescription: "app exited with status 3"}
	if diff := cmp.Diff(want, ex); diff != "" || ex.CrashTimestamp == 0 {
		t.Errorf("exited (-want +got):\n%s", diff)
	}
	un := decodeAs[protocol.Register](t, w.unregs.wait("unregister", 5*time.Second, func(*bus.Msg) bool { return true }))
	if un.PrivateInstanceID != id {
		t.Errorf("unregistered %s, want %s", un.PrivateInstanceID, id)
	}
	w.heartbeats.wait("CRASHED heartbeat", 5*time.Second, heartbeatState(t, "crashy", 2, protocol.StateCrashed))
	w.logs.wait("crash line", 5*time.Second, func(m *bus.Msg) bool {
		return strings.Contains(decodeAs[protocol.LogLine](t, m).Line, "crashed with status 3")
	})

	// A crashed instance stays findable (crash logs) until stopped.
	replies := find(t, w.bus, protocol.FindDroplet{InstanceFilter: protocol.InstanceFilter{Droplet: "crashy"}}, 1)
	if replies[0].State != protocol.StateCrashed {
		t.Errorf("find state = %s", replies[0].State)
	}
	publish(t, w.bus, protocol.DEAStop, protocol.Stop{Droplet: "crashy"})
	waitFor(t, "crashed instance deleted", 5*time.Second, func() bool {
		_, err := w.backend.Lookup(context.Background(), w.handleOf(t, id))
		return err != nil
	})
}

// find requests dea.find.droplet and collects n replies.
func find(t *testing.T, b bus.Bus, f protocol.FindDroplet, n int) []protocol.FindDropletReply {
	t.Helper()
	inbox := b.NewInbox()
	r := record(t, b, inbox)
	data, _ := json.Marshal(f)
	if err := b.PublishRequest(protocol.DEAFindDroplet, inbox, data); err != nil {
		t.Fatal(err)
	}
	var out []protocol.FindDropletReply
	waitFor(t, "find replies", 5*time.Second, func() bool { return len(r.all()) >= n })
	for _, m := range r.all() {
		out = append(out, decodeAs[protocol.FindDropletReply](t, m))
	}
	return out
}

func TestStopUnregistersDrainsAndIsIdempotent(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(c *dea.Config) { c.DrainTimeout = 200 * time.Millisecond })
	s := startMsg("web", 0, w.dr, w.uri, "web.kiln.test")
	w.start(t, s)
	id := instanceOf(t, w.heartbeats, "web", 0)
	handle := w.handleOf(t, id)

	stopAt := time.Now()
	publish(t, w.bus, protocol.DEAStop, protocol.Stop{Droplet: "web", Version: s.Version, Indices: []int{0}})
	publish(t, w.bus, protocol.DEAStop, protocol.Stop{Droplet: "web", Indices: []int{0}}) // repeated
	publish(t, w.bus, protocol.DEAStop, protocol.Stop{Droplet: "nope"})                   // unknown
	unAt := w.unregs.wait("unregister", 5*time.Second, func(*bus.Msg) bool { return true })
	_ = unAt
	ex := w.exitFor(t, id)
	if ex.Reason != protocol.ReasonStopped {
		t.Errorf("reason = %s", ex.Reason)
	}
	if took := time.Since(stopAt); took < 200*time.Millisecond {
		t.Errorf("stopped after %v, before the drain period", took)
	}
	// Exactly one exit and one unregister for the instance.
	waitFor(t, "container destroyed", 5*time.Second, func() bool {
		_, err := w.backend.Lookup(context.Background(), handle)
		return err != nil
	})
	if n := len(w.exits.all()); n != 1 {
		t.Errorf("%d droplet.exited, want 1", n)
	}
	if n := len(w.unregs.all()); n != 1 {
		t.Errorf("%d router.unregister, want 1", n)
	}
}

func TestHealthCheckTimeoutCrashes(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.backend.Script(func(string, warden.ProcessSpec) (fake.Behavior, bool) { return fake.Behavior{NoBind: true}, true })
	s := startMsg("slow", 0, w.dr, w.uri, "slow.kiln.test")
	s.HealthCheckTimeout = 1
	w.start(t, s)
	m := w.exits.wait("exit", 10*time.Second, func(*bus.Msg) bool { return true })
	ex := decodeAs[protocol.Exited](t, m)
	if ex.Reason != protocol.ReasonCrashed || !strings.Contains(ex.ExitDescription, "health check") {
		t.Errorf("exited = %+v", ex)
	}
	if n := len(w.registers.all()); n != 0 {
		t.Errorf("%d registrations for an unhealthy instance", n)
	}
}
