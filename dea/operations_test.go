package dea_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/fake"
)

func discover(t *testing.T, b bus.Bus, req protocol.Discover, timeout time.Duration) (protocol.DEAHello, error) {
	t.Helper()
	data, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m, err := b.Request(ctx, protocol.DEADiscover, data)
	if err != nil {
		return protocol.DEAHello{}, err
	}
	return decodeAs[protocol.DEAHello](t, m), nil
}

func TestDiscover(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(c *dea.Config) { c.MemoryMB = 1024; c.Stacks = []string{"linux"} })
	id := w.node.dea.ID()
	tests := []struct {
		name  string
		req   protocol.Discover
		reply bool
	}{
		{"fits", protocol.Discover{Droplet: "a", Limits: protocol.Limits{Mem: 256}}, true},
		{"too big", protocol.Discover{Droplet: "b", Limits: protocol.Limits{Mem: 4096}}, false},
		{"wrong stack", protocol.Discover{Droplet: "c", Limits: protocol.Limits{Mem: 64}, Stack: "windows"}, false},
		{"excluded", protocol.Discover{Droplet: "d", Limits: protocol.Limits{Mem: 64}, Exclude: []string{id}}, false},
	}
	for _, tt := range tests {
		// A yes comes within MaxDelay (250 ms); silence is waited for
		// as long.
		hello, err := discover(t, w.bus, tt.req, time.Second)
		switch {
		case tt.reply && (err != nil || hello.ID != id):
			t.Errorf("%s: reply %+v, %v; want one from %s", tt.name, hello, err, id)
		case !tt.reply && !errors.Is(err, context.DeadlineExceeded):
			t.Errorf("%s: got %+v, %v; want silence", tt.name, hello, err)
		}
	}
	// The yes reserved 256 MB: three more yeses fill the DEA, the next
	// discover is declined although no start came.
	for i := 1; i <= 3; i++ {
		if _, err := discover(t, w.bus, protocol.Discover{Droplet: "a", Index: i, Limits: protocol.Limits{Mem: 256}}, 2*time.Second); err != nil {
			t.Fatalf("discover %d: %v", i, err)
		}
	}
	if _, err := discover(t, w.bus, protocol.Discover{Droplet: "a", Index: 9, Limits: protocol.Limits{Mem: 256}}, 400*time.Millisecond); err == nil {
		t.Error("a full DEA (by holds) replied")
	}
	if got := metricValue(t, w.reg, "kiln_dea_reserved_memory_mb"); got != 1024 {
		t.Errorf("reserved = %v MB, want 1024", got)
	}
}

func TestDiscoverHoldLapses(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(c *dea.Config) { c.MemoryMB = 256; c.HoldTimeout = 100 * time.Millisecond })
	if _, err := discover(t, w.bus, protocol.Discover{Droplet: "a", Limits: protocol.Limits{Mem: 256}}, time.Second); err != nil {
		t.Fatal(err)
	}
	// Without a start the hold lapses and the memory is free again.
	waitFor(t, "hold to lapse", 5*time.Second, func() bool {
		_, err := discover(t, w.bus, protocol.Discover{Droplet: "b", Limits: protocol.Limits{Mem: 256}}, 200*time.Millisecond)
		return err == nil
	})
}

func TestFindDropletAndFileServer(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.backend.Script(fake.ForProgram("/bin/sh", fake.Behavior{Stdout: "hello from the app\n", Stderr: "warning: x\n"}))
	w.start(t, startMsg("files", 0, w.dr, w.uri, "files.kiln.test"))
	id := instanceOf(t, w.heartbeats, "files", 0)
	w.logs.wait("app stdout line on the bus", 5*time.Second, func(m *bus.Msg) bool {
		l := decodeAs[protocol.LogLine](t, m)
		return l.Source == protocol.SourceApp && l.Stream == "stdout" && l.Line == "hello from the app" && l.Instance == id
	})

	rs := find(t, w.bus, protocol.FindDroplet{InstanceFilter: protocol.InstanceFilter{Droplet: "files", States: []string{protocol.StateRunning}}, IncludeStats: true}, 1)
	r := rs[0]
	if r.Instance != id || r.State != protocol.StateRunning || r.Stats == nil || r.Stats.Usage == nil || r.Stats.MemQuota != 128<<20 {
		t.Fatalf("find reply = %+v", r)
	}
	if !strings.HasPrefix(r.FileURI, "http://dea.test:8080/files/"+id+"/") {
		t.Fatalf("file uri = %q", r.FileURI)
	}
	srv := httptest.NewServer(w.node.dea.Handler())
	t.Cleanup(srv.Close)
	base := strings.Replace(r.FileURI, "http://dea.test:8080", srv.URL, 1)
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	forged := strings.Replace(base, id+"/", id+"/", 1)
	parts := strings.Split(strings.TrimSuffix(forged, "/"), "/")
	parts[len(parts)-1] = strings.Repeat("0", 64)
	forged = strings.Join(parts, "/") + "/"
	tests := []struct {
		url  string
		code int
		body string
	}{
		{base + "logs/stdout.log", 200, "hello from the app\n"},
		{base + "logs/stderr.log", 200, "warning: x\n"},
		{base, 200, "logs/"},
		{base + "logs/", 200, "stdout.log"},
		{base + "app/missing", 404, ""},
		{base + "staging_info.json", 403, ""},
		{base + "logs/../../etc/passwd", 403, ""},
		{forged + "logs/stdout.log", 403, ""},
		{srv.URL + "/files/" + id + "/1/" + strings.Repeat("a", 64) + "/logs/stdout.log", 403, ""},
	}
	for _, tt := range tests {
		code, body := get(tt.url)
		if code != tt.code || !strings.Contains(body, tt.body) {
			t.Errorf("GET %s = %d %q, want %d containing %q", tt.url, code, body, tt.code, tt.body)
		}
	}
	// Status endpoints.
	for path, want := range map[string]string{"/healthz": "ok", "/varz": `"type":"DEA"`, "/metrics": "kiln_dea_messages_total"} {
		if code, body := get(srv.URL + path); code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s = %d %.200q", path, code, body)
		}
	}
}

func TestUpdateRoutes(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.start(t, startMsg("upd", 0, w.dr, w.uri, "a.kiln.test", "b.kiln.test"))
	instanceOf(t, w.heartbeats, "upd", 0)
	w.registers.wait("register", 5*time.Second, func(*bus.Msg) bool { return true })
	publish(t, w.bus, protocol.DEAUpdate, protocol.Update{Droplet: "upd", URIs: []string{"b.kiln.test", "c.kiln.test"}})
	un := w.unregs.wait("unregister a", 5*time.Second, func(*bus.Msg) bool { return true })
	if got := decodeAs[protocol.Register](t, un).URIs; len(got) != 1 || got[0] != "a.kiln.test" {
		t.Errorf("unregistered %v", got)
	}
	w.registers.wait("register c", 5*time.Second, func(m *bus.Msg) bool {
		u := decodeAs[protocol.Register](t, m).URIs
		return len(u) == 1 && u[0] == "c.kiln.test"
	})
	// router.start with an interval: everything re-registered at once.
	n := len(w.registers.all())
	publish(t, w.bus, protocol.RouterStart, protocol.RouterHello{ID: "r1", MinimumRegisterIntervalInSeconds: 1})
	w.registers.wait("re-register", 5*time.Second, func(m *bus.Msg) bool {
		u := decodeAs[protocol.Register](t, m).URIs
		return len(w.registers.all()) > n && len(u) == 2
	})
}

func TestSHA1MismatchFailsStart(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	s := startMsg("bad", 0, w.dr, w.uri)
	s.SHA1 = strings.Repeat("ab", 20)
	w.start(t, s)
	ex := decodeAs[protocol.Exited](t, w.exits.wait("exit", 5*time.Second, func(*bus.Msg) bool { return true }))
	if ex.Reason != protocol.ReasonCrashed || !strings.Contains(ex.ExitDescription, "sha1 mismatch") {
		t.Errorf("exited = %+v", ex)
	}
}

func TestConcurrentStartsShareOneDownload(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.fetcher.gate = make(chan struct{})
	for i := range 5 {
		w.start(t, startMsg("many", i, w.dr, w.uri))
	}
	waitFor(t, "first fetch", 5*time.Second, func() bool { return w.fetcher.fetches.Load() >= 1 })
	close(w.fetcher.gate)
	for i := range 5 {
		instanceOf(t, w.heartbeats, "many", i)
	}
	if n := w.fetcher.fetches.Load(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
	// A later start hits the cache.
	w.start(t, startMsg("many", 5, w.dr, w.uri))
	instanceOf(t, w.heartbeats, "many", 5)
	if n := w.fetcher.fetches.Load(); n != 1 {
		t.Errorf("%d fetches after a cached start, want 1", n)
	}
}

func TestShutdownReportsAndStops(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.start(t, startMsg("sd", 0, w.dr, w.uri, "sd.kiln.test"))
	id := instanceOf(t, w.heartbeats, "sd", 0)
	handle := w.handleOf(t, id)
	w.node.stop(t)
	ex := w.exitFor(t, id)
	if ex.Reason != protocol.ReasonDEAShutdown {
		t.Errorf("reason = %s", ex.Reason)
	}
	if _, err := w.backend.Lookup(context.Background(), handle); !errors.Is(err, warden.ErrNotFound) {
		t.Errorf("container after shutdown: %v", err)
	}
	if n := len(w.exits.all()); n != 1 {
		t.Errorf("%d exits, want 1", n)
	}
}

func TestEvacuate(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(c *dea.Config) { c.EvacuationDelay = 100 * time.Millisecond })
	w.start(t, startMsg("ev", 0, w.dr, w.uri, "ev.kiln.test"))
	id := instanceOf(t, w.heartbeats, "ev", 0)
	done := make(chan error, 1)
	go func() { done <- w.node.dea.Evacuate(context.Background()) }()
	ex := w.exitFor(t, id)
	if ex.Reason != protocol.ReasonDEAEvacuation {
		t.Errorf("reason = %s", ex.Reason)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	w.unregs.wait("unregister", 5*time.Second, func(*bus.Msg) bool { return true })
	// Draining: no more yeses.
	if _, err := discover(t, w.bus, protocol.Discover{Droplet: "x", Limits: protocol.Limits{Mem: 1}}, 300*time.Millisecond); err == nil {
		t.Error("an evacuating DEA answered discover")
	}
	w.node.stop(t)
	if n := len(w.exits.all()); n != 1 {
		t.Errorf("%d exits, want 1 (no DEA_SHUTDOWN after evacuation)", n)
	}
}

func TestRestartRecoversRunningInstances(t *testing.T) {
	t.Parallel()
	b := newMemBus().Connect()
	t.Cleanup(func() { _ = b.Close() })
	backend := newFake(t, fake.DefaultConfig())
	fetcher := newMapFetcher()
	dr := packDroplet(t, "./server", map[string]string{"server": "x"})
	fetcher.add("http://cc/d", dr.data)
	hbs := record(t, b, protocol.DEAHeartbeat)
	exits := record(t, b, protocol.DropletExited)
	regs := record(t, b, protocol.RouterRegister)
	cfg := testConfig(t)
	cfg.LeaveRunning = true
	n1 := runDEA(t, b, cfg, dea.Deps{Backend: backend, Fetcher: fetcher})
	publish(t, b, protocol.DEAStartSubject(n1.dea.ID()), startMsg("keep", 0, dr, "http://cc/d", "keep.kiln.test"))
	publish(t, b, protocol.DEAStartSubject(n1.dea.ID()), startMsg("keep", 1, dr, "http://cc/d", "keep.kiln.test"))
	id0 := instanceOf(t, hbs, "keep", 0)
	id1 := instanceOf(t, hbs, "keep", 1)
	n1.stop(t)
	if n := len(exits.all()); n != 0 {
		t.Fatalf("%d exits when leaving instances running", n)
	}
	runs := len(backend.Runs())
	// Instance 1 dies while no DEA watches.
	var h1 string
	for _, r := range backend.Runs() {
		if lookupEnv(r.Env, "INSTANCE_GUID") == id1 {
			h1 = r.Handle
		}
	}
	if err := backend.Exit(h1, "app", 9); err != nil {
		t.Fatal(err)
	}

	regsBefore := len(regs.all())
	cfg.ID = "" // the id comes back from the snapshot
	n2 := runDEA(t, b, cfg, dea.Deps{Backend: backend, Fetcher: fetcher})
	if n2.dea.ID() != n1.dea.ID() {
		t.Fatalf("restarted DEA id %s, want %s", n2.dea.ID(), n1.dea.ID())
	}
	exits.wait("crash of the instance that died meanwhile", 5*time.Second, func(m *bus.Msg) bool {
		ex := decodeAs[protocol.Exited](t, m)
		return ex.Instance == id1 && ex.Reason == protocol.ReasonCrashed
	})
	regs.wait("routes re-registered", 5*time.Second, func(m *bus.Msg) bool {
		return len(regs.all()) > regsBefore && decodeAs[protocol.Register](t, m).PrivateInstanceID == id0
	})
	publish(t, b, protocol.HealthManagerStart, map[string]any{})
	hbs.wait("heartbeat of the recovered instance", 5*time.Second, func(m *bus.Msg) bool {
		hb := decodeAs[protocol.Heartbeat](t, m)
		return len(hb.Droplets) == 1 && hb.Droplets[0].Instance == id0 && hb.Droplets[0].State == protocol.StateRunning
	})
	if got := len(backend.Runs()); got != runs {
		t.Errorf("%d processes started by the recovering DEA, want 0", got-runs)
	}
	// The recovered instance is still supervised: a crash is reported.
	var h0 string
	for _, r := range backend.Runs() {
		if lookupEnv(r.Env, "INSTANCE_GUID") == id0 {
			h0 = r.Handle
		}
	}
	if err := backend.Exit(h0, "app", 1); err != nil {
		t.Fatal(err)
	}
	exits.wait("crash of the recovered instance", 5*time.Second, func(m *bus.Msg) bool {
		return decodeAs[protocol.Exited](t, m).Instance == id0
	})
}

func TestBadMessagesAreCountedAndDropped(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	id := w.node.dea.ID()
	subjects := []string{protocol.DEADiscover, protocol.DEAStartSubject(id), protocol.DEAStop, protocol.DEAUpdate,
		protocol.DEAFindDroplet, protocol.DEAAdvertise, protocol.RouterStart}
	for _, s := range subjects {
		for _, payload := range []string{"", "not json", "[]", `{"droplet":""}`, `{"droplet":5,"index":-1}`} {
			if err := w.bus.PublishRequest(s, w.bus.NewInbox(), []byte(payload)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A start with a bad sha1 is refused as bad input too.
	bad := startMsg("x", 0, w.dr, w.uri)
	bad.SHA1 = "../../etc/passwd"
	w.start(t, bad)
	waitFor(t, "bad messages counted", 5*time.Second, func() bool {
		return metricValue(t, w.reg, "kiln_dea_bad_messages_total") >= float64(len(subjects)*4+1)
	})
	// Still alive and well.
	w.start(t, startMsg("ok", 0, w.dr, w.uri))
	instanceOf(t, w.heartbeats, "ok", 0)
}

func TestLogRateLimit(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(c *dea.Config) { c.LogRate = 1; c.LogBurst = 5 })
	var many strings.Builder
	for range 50 {
		many.WriteString("line\n")
	}
	w.backend.Script(fake.ForProgram("/bin/sh", fake.Behavior{Stdout: many.String()}))
	w.start(t, startMsg("chatty", 0, w.dr, w.uri))
	instanceOf(t, w.heartbeats, "chatty", 0)
	waitFor(t, "drops counted", 5*time.Second, func() bool {
		return metricValue(t, w.reg, "kiln_dea_log_lines_dropped_total") == 45
	})
	var app int
	for _, m := range w.logs.all() {
		if decodeAs[protocol.LogLine](t, m).Source == protocol.SourceApp {
			app++
		}
	}
	if app != 5 {
		t.Errorf("%d app lines on the bus, want the burst of 5", app)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(*dea.Config)
		ok   bool
	}{
		{"default with base dir", func(*dea.Config) {}, true},
		{"no base dir", func(c *dea.Config) { c.BaseDir = "" }, false},
		{"no memory", func(c *dea.Config) { c.MemoryMB = 0 }, false},
		{"negative drain", func(c *dea.Config) { c.DrainTimeout = -1 }, false},
		{"zero log rate", func(c *dea.Config) { c.LogRate = 0 }, false},
		{"bad placement", func(c *dea.Config) { c.Placement.DiskThreshold = 2 }, false},
	}
	for _, tt := range tests {
		cfg := dea.DefaultConfig()
		cfg.BaseDir = "/tmp/x"
		tt.mod(&cfg)
		err := cfg.Validate()
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, dea.ErrInvalidConfig)) {
			t.Errorf("%s: Validate = %v", tt.name, err)
		}
	}
	if _, err := dea.New(dea.DefaultConfig(), dea.Deps{}); !errors.Is(err, dea.ErrInvalidConfig) {
		t.Errorf("New with zero deps = %v", err)
	}
}

// TestTwentyDEAs runs twenty DEAs on one bus and places sixty instances the
// way a controller does: discover, first reply wins, start.
//
// It does not run in parallel with other tests: placement order rests on
// reply delays of tens of milliseconds, which a loaded machine blurs.
func TestTwentyDEAs(t *testing.T) {
	srv := newMemBus()
	cc := srv.Connect()
	t.Cleanup(func() { _ = cc.Close() })
	backend := newFake(t, fake.DefaultConfig())
	fetcher := newMapFetcher()
	dr := packDroplet(t, "./server", map[string]string{"server": "x"})
	fetcher.add("http://cc/d", dr.data)
	hbs := record(t, cc, protocol.DEAHeartbeat)
	ids := map[string]bool{}
	for i := range 20 {
		cfg := testConfig(t)
		cfg.Index = i
		cfg.MemoryMB = 2048
		cfg.AdvertiseInterval = time.Second
		b := srv.Connect()
		t.Cleanup(func() { _ = b.Close() })
		n := runDEA(t, b, cfg, dea.Deps{Backend: backend, Fetcher: fetcher})
		ids[n.dea.ID()] = true
	}
	// Let every DEA hear every advert once, so they score against peers.
	adverts := record(t, cc, protocol.DEAAdvertise)
	waitFor(t, "adverts from all", 5*time.Second, func() bool {
		seen := map[string]bool{}
		for _, m := range adverts.all() {
			seen[decodeAs[protocol.Advertise](t, m).ID] = true
		}
		return len(seen) == 20
	})
	const apps, perApp = 3, 20
	placed := map[string]int{}
	var mu sync.Mutex
	for a := range apps {
		app := "app" + string(rune('a'+a))
		for i := range perApp {
			hello, err := discover(t, cc, protocol.Discover{Droplet: protocol.AppID(app), Index: i, Limits: protocol.Limits{Mem: 128}}, 2*time.Second)
			if err != nil || !ids[hello.ID] {
				t.Fatalf("discover %s/%d: %+v %v", app, i, hello, err)
			}
			mu.Lock()
			placed[hello.ID]++
			mu.Unlock()
			cursor := adverts.len()
			publish(t, cc, protocol.DEAStartSubject(hello.ID), startMsg(app, i, dr, "http://cc/d", app+".kiln.test"))
			// Pace like a controller that starts one instance after the
			// other: the winner's advert with the new instance reaches
			// its peers before the next discover.
			want := placed[hello.ID]
			adverts.waitFrom(cursor, "advert of "+hello.ID, 5*time.Second, func(m *bus.Msg) bool {
				a := decodeAs[protocol.Advertise](t, m)
				return a.ID == hello.ID && a.Instances == want
			})
		}
	}
	for a := range apps {
		for i := range perApp {
			instanceOf(t, hbs, protocol.AppID("app"+string(rune('a'+a))), i)
		}
	}
	most := 0
	for _, n := range placed {
		most = max(most, n)
	}
	t.Logf("%d instances on %d DEAs, at most %d on one", apps*perApp, len(placed), most)
	// Three per DEA is perfect; one more tolerates scheduling noise.
	if len(placed) < 18 || most > 5 {
		t.Errorf("poor spread: %v", placed)
	}
}

func TestStopWhileStarting(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.fetcher.gate = make(chan struct{}) // the download never finishes
	w.start(t, startMsg("early", 0, w.dr, w.uri, "early.kiln.test"))
	m := w.heartbeats.wait("STARTING", 5*time.Second, heartbeatState(t, "early", 0, protocol.StateStarting))
	id := decodeAs[protocol.Heartbeat](t, m).Droplets[0].Instance
	publish(t, w.bus, protocol.DEAStop, protocol.Stop{Droplet: "early"})
	if ex := w.exitFor(t, id); ex.Reason != protocol.ReasonStopped {
		t.Errorf("exit = %+v", ex)
	}
	if n := len(w.registers.all()); n != 0 {
		t.Errorf("%d registrations", n)
	}
	cs, err := w.backend.Containers(context.Background(), nil)
	if err != nil || len(cs) != 0 {
		t.Errorf("containers left: %d, %v", len(cs), err)
	}
}
