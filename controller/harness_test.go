package controller

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/blobstore/memblob"
	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/controller/store/memstore"
	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/staging"
	"github.com/kiln-paas/kiln/staging/droplet"
)

// fakeStager packs the package's files into a real droplet. A package
// holding a file named FAIL fails staging.
type fakeStager struct {
	mu    sync.Mutex
	count int
	// gate, when set, holds each staging after its first log line.
	gate chan struct{}
}

func (f *fakeStager) stagings() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.count
}

func (f *fakeStager) Stage(ctx context.Context, req staging.Request) (staging.Result, error) {
	f.mu.Lock()
	f.count++
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		fmt.Fprintln(req.LogWriter, "-----> waiting at the gate")
		select {
		case <-gate:
		case <-ctx.Done():
			return staging.Result{}, ctx.Err()
		}
	}
	zr, err := zip.NewReader(req.Package, req.PackageSize)
	if err != nil {
		return staging.Result{}, fmt.Errorf("%w: %v", staging.ErrBadPackage, err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, zf := range zr.File {
		if zf.Name == "FAIL" {
			fmt.Fprintln(req.LogWriter, "-----> FAIL file found")
			return staging.Result{}, &staging.CompileError{Buildpack: "fake", ExitStatus: 1, Reason: "FAIL file"}
		}
		rc, err := zf.Open()
		if err != nil {
			return staging.Result{}, err
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		_ = tw.WriteHeader(&tar.Header{Name: zf.Name, Mode: int64(zf.Mode().Perm()), Size: int64(len(b)), Typeflag: tar.TypeReg})
		_, _ = tw.Write(b)
	}
	_ = tw.Close()
	fmt.Fprintf(req.LogWriter, "-----> fake buildpack: %d files\n", len(zr.File))
	sum, err := droplet.Pack(req.Droplet, droplet.Info{DetectedBuildpack: "fake", StartCommand: "./run", Stack: "linux"}, &tb)
	if err != nil {
		return staging.Result{}, err
	}
	return staging.Result{Buildpack: "fake", StartCommand: "./run", Stack: "linux", DropletSHA1: sum.SHA1, DropletSize: sum.Size}, nil
}

// fakeDEA answers dea.discover, runs "instances" on dea.<id>.start by
// heartbeating them RUNNING (or CRASHED when the app env holds CRASH=1),
// honours dea.stop and answers dea.find.droplet.
type fakeDEA struct {
	t      testing.TB
	id     string
	b      bus.Bus
	files  *httptest.Server
	silent bool

	mu        sync.Mutex
	starts    []protocol.Start
	stops     []protocol.Stop
	updates   []protocol.Update
	instances map[string]*fakeInstance
	seq       int
	fetched   map[string]bool
	changed   chan struct{}
}

type fakeInstance struct {
	id, version, state string
	app                protocol.AppID
	index              int
}

func newFakeDEA(t testing.TB, b bus.Bus, id string) *fakeDEA {
	d := &fakeDEA{t: t, id: id, b: b, instances: map[string]*fakeInstance{}, fetched: map[string]bool{}, changed: make(chan struct{})}
	d.files = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "u" || p != "p" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/missing") {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		fmt.Fprintf(w, "file %s", r.URL.Path)
	}))
	t.Cleanup(d.files.Close)
	subs := []struct {
		subj string
		h    bus.Handler
	}{
		{protocol.DEADiscover, d.onDiscover},
		{protocol.DEAStartSubject(id), d.onStart},
		{protocol.DEAStop, d.onStop},
		{protocol.DEAUpdate, d.onUpdate},
		{protocol.DEAFindDroplet, d.onFind},
	}
	for _, s := range subs {
		sub, err := b.Subscribe(s.subj, s.h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *fakeDEA) notify() {
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *fakeDEA) onDiscover(m *bus.Msg) {
	d.mu.Lock()
	silent := d.silent
	d.mu.Unlock()
	if silent {
		return
	}
	_ = bus.RespondJSON(d.b, m, protocol.DEAHello{ID: d.id, IP: "127.0.0.1", Port: 1, Version: 0.99})
}

func (d *fakeDEA) onStart(m *bus.Msg) {
	s, err := protocol.Decode[protocol.Start](m.Data)
	if err != nil {
		d.t.Errorf("fake dea: bad start: %v", err)
		return
	}
	// Fetch the droplet as a DEA would and check its hash.
	resp, err := http.Get(s.ExecutableURI)
	fetched := false
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sum := sha1.Sum(b)
		fetched = resp.StatusCode == 200 && hex.EncodeToString(sum[:]) == s.SHA1
	}
	crash := false
	for _, e := range s.Env {
		crash = crash || e == "CRASH=1"
	}
	d.mu.Lock()
	d.starts = append(d.starts, s)
	d.fetched[s.SHA1] = fetched
	d.seq++
	inst := &fakeInstance{id: fmt.Sprintf("%s-i%d", d.id, d.seq), version: s.Version, app: s.Droplet, index: s.Index, state: protocol.StateRunning}
	if crash {
		inst.state = protocol.StateCrashed
	}
	d.instances[inst.id] = inst
	d.notify()
	d.mu.Unlock()
	if !fetched {
		return
	}
	if crash {
		_ = bus.PublishJSON(d.b, protocol.DropletExited, protocol.Exited{Droplet: s.Droplet, Version: s.Version, Instance: inst.id, Index: s.Index, Reason: protocol.ReasonCrashed, CrashTimestamp: time.Now().Unix()})
		return
	}
	d.heartbeat()
}

func (d *fakeDEA) heartbeat() {
	d.mu.Lock()
	hb := protocol.Heartbeat{DEA: d.id}
	for _, i := range d.instances {
		hb.Droplets = append(hb.Droplets, protocol.InstanceHeartbeat{Droplet: i.app, Version: i.version, Instance: i.id, Index: i.index, State: i.state, StateTimestamp: float64(time.Now().Unix())})
	}
	d.mu.Unlock()
	_ = bus.PublishJSON(d.b, protocol.DEAHeartbeat, hb)
}

func (d *fakeDEA) onStop(m *bus.Msg) {
	f, err := protocol.Decode[protocol.Stop](m.Data)
	if err != nil {
		return
	}
	d.mu.Lock()
	d.stops = append(d.stops, f)
	for id, i := range d.instances {
		if f.Match(i.app, i.version, i.id, i.index, i.state) {
			delete(d.instances, id)
			_ = bus.PublishJSON(d.b, protocol.DropletExited, protocol.Exited{Droplet: i.app, Version: i.version, Instance: i.id, Index: i.index, Reason: protocol.ReasonStopped})
		}
	}
	d.notify()
	d.mu.Unlock()
}

func (d *fakeDEA) onUpdate(m *bus.Msg) {
	u, err := protocol.Decode[protocol.Update](m.Data)
	if err != nil {
		return
	}
	d.mu.Lock()
	d.updates = append(d.updates, u)
	d.notify()
	d.mu.Unlock()
}

func (d *fakeDEA) onFind(m *bus.Msg) {
	var q protocol.FindDroplet
	if json.Unmarshal(m.Data, &q) != nil {
		return
	}
	d.mu.Lock()
	var replies []protocol.FindDropletReply
	for _, i := range d.instances {
		if q.Match(i.app, i.version, i.id, i.index, i.state) {
			r := protocol.FindDropletReply{DEA: d.id, Version: i.version, Droplet: i.app, Instance: i.id, Index: i.index, State: i.state,
				StateTimestamp: float64(time.Now().Unix()), FileURI: d.files.URL + "/files/" + i.id + "/", Credentials: []string{"u", "p"}, Staged: i.id}
			if q.IncludeStats {
				r.Stats = &protocol.InstanceStats{Name: "x", Host: "127.0.0.1", Port: 5000, Uptime: 1, MemQuota: 1 << 20}
			}
			replies = append(replies, r)
		}
	}
	d.mu.Unlock()
	for _, r := range replies {
		_ = bus.RespondJSON(d.b, m, r)
	}
}

// waitFor polls cond on every change until it holds or 10 s pass.
func (d *fakeDEA) waitFor(cond func(d *fakeDEA) bool) bool {
	deadline := time.After(10 * time.Second)
	for {
		d.mu.Lock()
		ok := cond(d)
		ch := d.changed
		d.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline:
			return false
		}
	}
}

func (d *fakeDEA) running(app protocol.AppID, version string) int {
	n := 0
	for _, i := range d.instances {
		if i.app == app && i.version == version && i.state == protocol.StateRunning {
			n++
		}
	}
	return n
}

// memBroker is a built-in broker for tests.
type memBroker struct {
	mu        sync.Mutex
	async     bool
	polls     int
	instances map[string]bool
	bindings  map[string]bool
}

func newMemBroker() *memBroker {
	return &memBroker{instances: map[string]bool{}, bindings: map[string]bool{}}
}

func (b *memBroker) Catalog(context.Context) (services.Catalog, error) {
	return services.Catalog{Services: []services.Service{{ID: "svc-kv", Name: "redis", Description: "kv", Version: "2.2", Bindable: true,
		Plans: []services.Plan{{ID: "plan-free", Name: "free", Free: true}, {ID: "plan-big", Name: "big"}}}}}, nil
}

func (b *memBroker) Provision(_ context.Context, r services.ProvisionRequest) (services.ProvisionResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.instances[r.InstanceID] = true
	if b.async && r.AcceptsIncomplete {
		return services.ProvisionResponse{Async: true, Operation: "op-1"}, nil
	}
	return services.ProvisionResponse{}, nil
}

func (b *memBroker) Deprovision(_ context.Context, r services.DeprovisionRequest) (services.OperationResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.instances[r.InstanceID] {
		return services.OperationResponse{}, services.ErrInstanceNotFound
	}
	delete(b.instances, r.InstanceID)
	return services.OperationResponse{}, nil
}

func (b *memBroker) LastOperation(context.Context, services.LastOperationRequest) (services.LastOperation, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.polls++
	if b.polls < 2 {
		return services.LastOperation{State: services.StateInProgress}, nil
	}
	return services.LastOperation{State: services.StateSucceeded}, nil
}

func (b *memBroker) Bind(_ context.Context, r services.BindRequest) (services.Binding, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bindings[r.BindingID] = true
	return services.Binding{Credentials: map[string]any{"uri": "redis://" + r.InstanceID, "binding": r.BindingID}}, nil
}

func (b *memBroker) Unbind(_ context.Context, r services.UnbindRequest) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.bindings[r.BindingID] {
		return services.ErrBindingNotFound
	}
	delete(b.bindings, r.BindingID)
	return nil
}

// env is a controller on membus, memstore and memblob behind a real HTTP
// server.
type env struct {
	t      testing.TB
	c      *Controller
	srv    *httptest.Server
	bus    bus.Bus
	store  *memstore.Store
	blobs  *memblob.Store
	stager *fakeStager
	broker *memBroker
	clock  *testClock
}

// testClock is the wall clock until Set, then a settable one.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now.IsZero() {
		return time.Now()
	}
	return c.now
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.BcryptCost = bcrypt.MinCost
	cfg.Admins = []string{"admin@x.io"}
	cfg.DiscoverTimeout = 300 * time.Millisecond
	cfg.DiscoverAttempts = 2
	cfg.FindTimeout = 300 * time.Millisecond
	cfg.HeartbeatTTL = time.Minute
	cfg.RolloutTimeout = 5 * time.Second
	cfg.TokenKey = []byte("test-key")
	cfg.ProvisionPoll = 10 * time.Millisecond
	return cfg
}

func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	mb := membus.NewServer(membus.DefaultConfig())
	t.Cleanup(mb.Close)
	return newEnvOn(t, mod, mb.Connect())
}

// newEnvOn is newEnv on a given bus connection.
func newEnvOn(t testing.TB, mod func(*Config), conn bus.Bus) *env {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	cfg := testConfig()
	cfg.ExternalURL = "http://" + srv.Listener.Addr().String()
	cfg.TempDir = t.TempDir()
	if mod != nil {
		mod(&cfg)
	}
	st, err := memstore.New(memstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := memblob.New(memblob.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, bus: conn, store: st, blobs: blobs, stager: &fakeStager{}, broker: newMemBroker(), srv: srv, clock: &testClock{}}
	c, err := New(cfg, Deps{Bus: conn, Store: st, Blobs: blobs, Stager: e.stager, Now: e.clock.Now, Builtin: map[string]services.Broker{"mem": e.broker},
		Brokers: func(store.ServiceBroker) (services.Broker, error) { return e.broker, nil }})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	srv.Config.Handler = c.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	// Wait until Run subscribed: the bulk credentials request is answered.
	deadline := time.Now().Add(5 * time.Second)
	for {
		rctx, rcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		var creds protocol.BulkCredentials
		err := bus.RequestJSON(rctx, conn, protocol.BulkCredentialsSubject, struct{}{}, &creds)
		rcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("controller did not subscribe: %v", err)
		}
	}
	return e
}

// client returns an anonymous client.
func (e *env) client() *client.Client {
	cl, err := client.New(e.srv.URL, e.srv.Client())
	if err != nil {
		e.t.Fatal(err)
	}
	return cl
}

// user registers and logs in a user.
func (e *env) user(email string) *client.Client {
	e.t.Helper()
	cl := e.client()
	ctx := context.Background()
	register := func() error { return cl.Register(ctx, email, "pw-"+email) }
	if strings.HasPrefix(email, "admin@") {
		register = func() error { return e.c.CreateUser(ctx, email, "pw-"+email) }
	}
	if err := register(); err != nil {
		e.t.Fatalf("register %s: %v", email, err)
	}
	if _, err := cl.Login(ctx, email, "pw-"+email); err != nil {
		e.t.Fatalf("login %s: %v", email, err)
	}
	return cl
}

// appDir writes a small app to a temporary directory.
func appDir(t testing.TB, files map[string]string) string {
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// waitApp polls the app until cond holds.
func waitApp(t testing.TB, cl *client.Client, name string, cond func(client.App) bool) client.App {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, err := cl.App(context.Background(), name)
		if err == nil && cond(a) {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("app %s: condition not met: %+v (err %v)", name, a, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pushStaged creates, pushes and waits for the staging of an app.
func pushStaged(t testing.TB, cl *client.Client, name string, files map[string]string) client.App {
	t.Helper()
	ctx := context.Background()
	if err := cl.CreateApp(ctx, client.AppRequest{Name: name, URIs: []string{name + ".vcap.me"}, Instances: 1, Memory: 64}); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	if _, err := cl.Push(ctx, name, appDir(t, files)); err != nil {
		t.Fatalf("push %s: %v", name, err)
	}
	return waitApp(t, cl, name, func(a client.App) bool { return a.PackageState == store.PackageStaged })
}

// apiErr asserts that err is a client error with status and code.
func apiErr(t testing.TB, err error, status, code int) {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want API error %d/%d", err, status, code)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("err = %d/%d %q, want %d/%d", e.Status, e.Code, e.Description, status, code)
	}
}

func basic(u, p string) string {
	return base64.StdEncoding.EncodeToString([]byte(u + ":" + p))
}

func clientAppRequest(name string) client.AppRequest {
	return client.AppRequest{Name: name, Instances: 1, Memory: 64}
}
