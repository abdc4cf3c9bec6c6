package controller

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/controller/blobstore/memblob"
	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/controller/controllertest"
	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/controller/store/memstore"
	"github.com/kiln-paas/kiln/services"
)

// newFakeDEA starts a controllertest.DEA with the given id on b.
func newFakeDEA(t testing.TB, b bus.Bus, id string) *controllertest.DEA {
	t.Helper()
	cfg := controllertest.DefaultDEAConfig()
	cfg.ID = id
	return controllertest.StartDEA(t, b, cfg)
}

// waitDEA waits up to 10 s for cond to hold on d and returns the snapshot
// last checked.
func waitDEA(d *controllertest.DEA, cond func(controllertest.Snapshot) bool) (controllertest.Snapshot, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return d.WaitFor(ctx, cond)
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
	stager *controllertest.Stager
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
	clock := &testClock{}
	bcfg := memblob.DefaultConfig()
	bcfg.Now = clock.Now // blobs age with the controller's clock (garbage collection tests)
	blobs, err := memblob.New(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, bus: conn, store: st, blobs: blobs, stager: &controllertest.Stager{}, broker: newMemBroker(), srv: srv, clock: clock}
	c, err := New(cfg, Deps{Bus: conn, Store: st, Blobs: blobs, Stager: e.stager, Now: e.clock.Now, Builtin: map[string]services.Broker{"mem": e.broker},
		Brokers: func(store.ServiceBroker) (services.Broker, error) { return e.broker, nil }})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	srv.Config.Handler = c.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	controllertest.Run(t, c)
	controllertest.WaitReady(t, conn, 5*time.Second)
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
	if _, err := cl.Push(ctx, name, controllertest.AppDir(t, files)); err != nil {
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
