// Package kerneltest starts a whole kiln kernel inside a test, in the spirit
// of net/http/httptest: one call gives a controller, a DEA, a router and a
// health manager talking over an in-process bus, with a client logged in as
// an administrator and the router's address to send requests through.
//
//	k := kerneltest.Start(t)
//	err := k.Push(ctx, "hello", "./testdata/hello", 1)
//	status, body, err := k.Get(k.AppHost("hello"), "/")
//
// The kernel runs on bus/membus, controller/store/memstore and the in-memory
// blobstore; it has no service brokers unless WithBroker builds some in. Apps are staged for real, by the built-in buildpacks in
// warden/process containers (so the host's go, node and python3 are used);
// the DEA runs instances in warden/fake by default, whose processes answer
// HTTP without running the droplet, or in warden/process with WithProcesses,
// which runs the app itself. Timers are shortened so that crashes are noticed
// and repaired within a fraction of a second.
//
// Start ties the kernel's lifetime to a test (t.Cleanup); New and Close do
// the same for code that has no testing.TB, such as Example functions.
package kerneltest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/controller"
	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/blobstore/memblob"
	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/controller/store/memstore"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/healthmgr"
	"github.com/kiln-paas/kiln/router"
	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/staging"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/fake"
	"github.com/kiln-paas/kiln/warden/process"
)

// DefaultDomain is the app domain of a test kernel: apps get
// <name>.kiln.test, which the router serves whatever address the request
// was sent to (see Kernel.Get).
const DefaultDomain = "kiln.test"

// AdminEmail is the email of the administrator Kernel.Client is logged in
// as; its password is AdminPassword.
const (
	AdminEmail    = "admin@kiln.test"
	AdminPassword = "kerneltest-admin"
)

// ErrNotServing is returned (wrapped) by WaitServing when the deadline
// passes without a 200 answer.
var ErrNotServing = errors.New("kerneltest: app not serving")

// Option customises a kernel.
type Option func(*options)

type options struct {
	processes  bool
	deas       int
	logger     *slog.Logger
	bus        bus.Bus
	store      store.Store
	blobs      blobstore.Blobstore
	domain     string
	goCache    string
	goCacheSet bool
	workDir    string
	stagingDir string
	tune       []func(*Configs)
	brokers    map[string]services.Broker
}

// Configs are the role configurations a kernel is built with, after
// kerneltest's test-friendly defaults; WithConfig changes them.
type Configs struct {
	Controller controller.Config
	DEA        dea.Config
	Router     router.Config
	HealthMgr  healthmgr.Config
	Staging    staging.Config
}

// WithProcesses makes the DEA run instances as real host processes
// (warden/process) instead of warden/fake, so the app's own code answers.
func WithProcesses() Option { return func(o *options) { o.processes = true } }

// WithDEAs sets the number of DEAs (default 1); they share one backend.
func WithDEAs(n int) Option { return func(o *options) { o.deas = n } }

// WithLogger sends every role's logs to l (default: discarded).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithBus runs the kernel on b instead of a fresh membus. The kernel does
// not close it.
func WithBus(b bus.Bus) Option { return func(o *options) { o.bus = b } }

// WithStore runs the controller on st instead of a fresh memstore. The
// kernel does not close it; passing the same store (and blobstore) to a
// second kernel after closing the first simulates a restart.
func WithStore(st store.Store) Option { return func(o *options) { o.store = st } }

// WithBlobstore runs the controller on bs instead of a fresh memblob. The
// kernel does not close it.
func WithBlobstore(bs blobstore.Blobstore) Option { return func(o *options) { o.blobs = bs } }

// WithDomain sets the app domain (default DefaultDomain).
func WithDomain(d string) Option { return func(o *options) { o.domain = d } }

// WithGoBuildCache sets the GOCACHE shared by all Go stagings (see
// staging.GoBuildpack.SharedBuildCache). The default is the host's own
// (`go env GOCACHE`), so Go apps stage in seconds; "" gives each app its own
// cold cache.
func WithGoBuildCache(dir string) Option {
	return func(o *options) { o.goCache, o.goCacheSet = dir, true }
}

// WithWorkDir keeps the kernel's files (containers, droplet caches) under
// dir instead of a temporary directory removed by Close. Reusing dir in a
// later kernel lets the DEA find its snapshot.
func WithWorkDir(dir string) Option { return func(o *options) { o.workDir = dir } }

// WithStagingCache sets the directory the stager keeps its built tools in
// (the static file server); the default is shared by every kernel of the
// host, so the tool is built once.
func WithStagingCache(dir string) Option { return func(o *options) { o.stagingDir = dir } }

// WithBroker builds the service broker b into the controller under name
// (controller.Deps.Builtin), so that its catalog's services can be
// provisioned and bound through Kernel.Client (CreateService, BindService,
// ...). It may be given more than once with different names; a repeated
// name replaces the earlier broker. The kernel does not close b.
func WithBroker(name string, b services.Broker) Option {
	return func(o *options) {
		if o.brokers == nil {
			o.brokers = map[string]services.Broker{}
		}
		o.brokers[name] = b
	}
}

// WithConfig lets f change the role configurations before the kernel is
// built (for example to slow a timer down or give the DEA less memory).
func WithConfig(f func(*Configs)) Option { return func(o *options) { o.tune = append(o.tune, f) } }

// Kernel is a running kernel. Its fields are set by New and must not be
// changed.
type Kernel struct {
	// Client is logged in as AdminEmail.
	Client *client.Client
	// ControllerURL is the controller's base URL ("http://127.0.0.1:port").
	ControllerURL string
	// RouterURL is the router's base URL; RouterAddr its host:port.
	RouterURL, RouterAddr string
	// Domain is the app domain.
	Domain string

	// Bus is the kernel's bus.
	Bus bus.Bus
	// Controller, DEAs, Router and HealthMgr are the running roles.
	Controller *controller.Controller
	DEAs       []*dea.DEA
	Router     *router.Router
	HealthMgr  *healthmgr.Manager
	// Backend runs the DEAs' instances: a *fake.Backend or, with
	// WithProcesses, a *process.Backend.
	Backend warden.Backend
	// Configs are the role configurations the kernel was built with (each
	// DEA's BaseDir, Index and FileServerURL differ from Configs.DEA).
	Configs Configs

	http     *http.Client
	cancel   context.CancelFunc
	group    *errgroup.Group
	closers  []func() error
	closeMu  sync.Mutex
	closed   bool
	closeErr error
}

// Start starts a kernel for a test and stops it when the test ends. It
// fails the test if the kernel cannot start.
func Start(tb testing.TB, opts ...Option) *Kernel {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k, err := New(ctx, opts...)
	if err != nil {
		tb.Fatalf("kerneltest: %v", err)
	}
	tb.Cleanup(func() {
		if err := k.Close(); err != nil {
			tb.Errorf("kerneltest: close: %v", err)
		}
	})
	return k
}

// New starts a kernel and returns once every role serves and the admin
// client is logged in; ctx bounds the start only. The caller must call
// Close.
func New(ctx context.Context, opts ...Option) (k *Kernel, err error) {
	o := options{deas: 1, domain: DefaultDomain}
	for _, opt := range opts {
		opt(&o)
	}
	if o.deas < 1 {
		return nil, fmt.Errorf("kerneltest: WithDEAs(%d): need at least one DEA", o.deas)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if !o.goCacheSet {
		o.goCache = staging.HostGoCache()
	}
	runCtx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(runCtx)
	k = &Kernel{Domain: o.domain, cancel: cancel, group: g,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	defer func() {
		if err != nil {
			_ = k.Close()
			k = nil
		}
	}()
	if err := k.build(ctx, gctx, o); err != nil {
		return nil, err
	}
	return k, nil
}

// build assembles the roles and starts them in k.group.
func (k *Kernel) build(ctx, gctx context.Context, o options) error {
	work := o.workDir
	if work == "" {
		dir, err := os.MkdirTemp("", "kerneltest-")
		if err != nil {
			return fmt.Errorf("kerneltest: %w", err)
		}
		work = dir
		k.onClose(func() error { return os.RemoveAll(dir) })
	}
	cfgs, err := defaultConfigs(work, o)
	if err != nil {
		return err
	}
	for _, f := range o.tune {
		f(&cfgs)
	}
	// Bus.
	k.Bus = o.bus
	if k.Bus == nil {
		srv := membus.NewServer(membus.DefaultConfig())
		k.onClose(func() error { srv.Close(); return nil })
		k.Bus = srv.Connect()
	}

	// Listeners first: the controller's URL goes into its own config.
	ccLn, err := listen()
	if err != nil {
		return err
	}
	k.ControllerURL = "http://" + ccLn.Addr().String()
	cfgs.Controller.ExternalURL = k.ControllerURL
	rtLn, err := listen()
	if err != nil {
		ccLn.Close()
		return err
	}
	k.RouterAddr = rtLn.Addr().String()
	k.RouterURL = "http://" + k.RouterAddr

	// Staging runs real buildpacks in process containers.
	stageBackend, err := newProcessBackend(filepath.Join(work, "staging"))
	if err != nil {
		ccLn.Close()
		rtLn.Close()
		return err
	}
	k.onClose(stageBackend.Close)
	stager := staging.New(cfgs.Staging, stageBackend, o.logger.With("role", "staging"))

	st := o.store
	if st == nil {
		if st, err = memstore.New(memstore.DefaultConfig()); err != nil {
			return fmt.Errorf("kerneltest: memstore: %w", err)
		}
	}
	blobs := o.blobs
	if blobs == nil {
		if blobs, err = memblob.New(memblob.DefaultConfig()); err != nil {
			return fmt.Errorf("kerneltest: memblob: %w", err)
		}
	}
	cc, err := controller.New(cfgs.Controller, controller.Deps{Bus: k.Bus, Store: st, Blobs: blobs, Stager: stager,
		Builtin: o.brokers, Logger: o.logger.With("role", "controller")})
	if err != nil {
		ccLn.Close()
		rtLn.Close()
		return fmt.Errorf("kerneltest: %w", err)
	}
	k.Controller = cc
	k.serveHTTP(gctx, ccLn, cc.Handler())

	rt, err := router.New(cfgs.Router, router.Deps{Bus: k.Bus, Logger: o.logger.With("role", "router")})
	if err != nil {
		rtLn.Close()
		return fmt.Errorf("kerneltest: %w", err)
	}
	k.Router = rt
	k.group.Go(func() error { return rt.Run(gctx) })
	k.group.Go(func() error { return rt.Serve(gctx, rtLn) })

	if err := k.startDEAs(gctx, work, cfgs.DEA, o); err != nil {
		return err
	}
	k.group.Go(func() error { return cc.Run(gctx) })

	src, err := healthmgr.NewBulkSource(k.ControllerURL, k.Bus, nil)
	if err != nil {
		return fmt.Errorf("kerneltest: %w", err)
	}
	hm, err := healthmgr.New(cfgs.HealthMgr, healthmgr.Deps{Bus: k.Bus, Desired: src, Logger: o.logger.With("role", "healthmgr")})
	if err != nil {
		return fmt.Errorf("kerneltest: %w", err)
	}
	k.HealthMgr = hm
	k.group.Go(func() error { return hm.Run(gctx) })

	k.Configs = cfgs
	if err := k.bootstrap(ctx, cc); err != nil {
		return err
	}
	return nil
}

// startDEAs creates the instance backend and the DEAs, each with a file
// server, and runs them.
func (k *Kernel) startDEAs(gctx context.Context, work string, base dea.Config, o options) error {
	if o.processes {
		b, err := newProcessBackend(filepath.Join(work, "containers"))
		if err != nil {
			return err
		}
		k.onClose(b.Close)
		k.Backend = b
	} else {
		b, err := fake.New(fake.DefaultConfig())
		if err != nil {
			return fmt.Errorf("kerneltest: fake backend: %w", err)
		}
		k.Backend = b
	}
	for i := range o.deas {
		ln, err := listen()
		if err != nil {
			return err
		}
		cfg := base
		cfg.Index = i
		cfg.BaseDir = filepath.Join(work, fmt.Sprintf("dea-%d", i))
		cfg.FileServerURL = "http://" + ln.Addr().String()
		d, err := dea.New(cfg, dea.Deps{Bus: k.Bus, Backend: k.Backend, Logger: o.logger.With("role", "dea", "index", i)})
		if err != nil {
			ln.Close()
			return fmt.Errorf("kerneltest: %w", err)
		}
		k.DEAs = append(k.DEAs, d)
		k.serveHTTP(gctx, ln, d.Handler())
		k.group.Go(func() error { return d.Run(gctx) })
	}
	return nil
}

// bootstrap creates the admin and logs the client in, which also proves the
// controller serves.
func (k *Kernel) bootstrap(ctx context.Context, cc *controller.Controller) error {
	if err := cc.CreateUser(ctx, AdminEmail, AdminPassword); err != nil && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("kerneltest: create admin: %w", err)
	}
	cl, err := client.New(k.ControllerURL, k.http)
	if err != nil {
		return fmt.Errorf("kerneltest: %w", err)
	}
	if _, err := cl.Login(ctx, AdminEmail, AdminPassword); err != nil {
		return fmt.Errorf("kerneltest: admin login: %w", err)
	}
	k.Client = cl
	// The router answers once Serve accepts; a request for an unknown
	// host proves it.
	for {
		if st, _, err := k.get(ctx, "ready.invalid", "/"); err == nil && st > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kerneltest: router not serving: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// defaultConfigs returns the role configurations with test timings.
func defaultConfigs(work string, o options) (Configs, error) {
	var c Configs
	c.Controller = controller.DefaultConfig()
	c.Controller.BcryptCost = bcrypt.MinCost
	c.Controller.Admins = []string{AdminEmail}
	c.Controller.TokenKey = []byte("kerneltest")
	c.Controller.DiscoverTimeout = time.Second
	c.Controller.FindTimeout = time.Second
	c.Controller.RolloutTimeout = 30 * time.Second
	c.Controller.HeartbeatTTL = 5 * time.Second
	c.Controller.StartPending = 10 * time.Second
	c.Controller.UserQuota.URIs = 16
	c.Controller.TempDir = filepath.Join(work, "controller")
	if err := os.MkdirAll(c.Controller.TempDir, 0o755); err != nil {
		return c, fmt.Errorf("kerneltest: %w", err)
	}

	c.DEA = dea.DefaultConfig()
	c.DEA.MemoryMB = 16 << 10
	c.DEA.HeartbeatInterval = time.Second
	c.DEA.AdvertiseInterval = time.Second
	c.DEA.HealthCheckInterval = 5 * time.Millisecond
	c.DEA.HealthCheckTimeout = 30 * time.Second
	c.DEA.DrainTimeout = 50 * time.Millisecond
	c.DEA.StopGrace = 2 * time.Second
	c.DEA.GreetTimeout = 200 * time.Millisecond

	c.Router = router.DefaultConfig()
	c.Router.EmptyRouteGrace = 0
	c.Router.FailureBackoff = time.Second
	c.Router.DialTimeout = time.Second
	c.Router.ShutdownTimeout = 2 * time.Second

	c.HealthMgr = healthmgr.DefaultConfig()
	c.HealthMgr.StartupWait = 200 * time.Millisecond
	c.HealthMgr.AnalysisInterval = 100 * time.Millisecond
	c.HealthMgr.AnalysisDebounce = 20 * time.Millisecond
	c.HealthMgr.DesiredInterval = 2 * time.Second
	c.HealthMgr.DesiredRetry = 200 * time.Millisecond
	c.HealthMgr.ReloadDebounce = 50 * time.Millisecond
	c.HealthMgr.LeaderElection = false
	c.HealthMgr.Policy.HeartbeatTTL = 3 * time.Second
	c.HealthMgr.Policy.Grace = time.Second
	c.HealthMgr.Policy.RetryAfter = 100 * time.Millisecond
	c.HealthMgr.Policy.OrphanGrace = 5 * time.Second
	c.HealthMgr.Policy.ImmediateRestarts = 20
	c.HealthMgr.Policy.MinBackoff = time.Second
	c.HealthMgr.Policy.MaxBackoff = 5 * time.Second

	c.Staging = staging.DefaultConfig()
	c.Staging.Path = staging.HostPath()
	c.Staging.TempDir = c.Controller.TempDir
	if o.stagingDir != "" {
		c.Staging.CacheDir = o.stagingDir
	}
	c.Staging.Buildpacks = staging.BuiltinsSharingGoCache(o.goCache)
	return c, nil
}

func newProcessBackend(root string) (*process.Backend, error) {
	cfg := process.DefaultConfig()
	cfg.Root = root
	cfg.ExitPollInterval = 50 * time.Millisecond
	b, err := process.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("kerneltest: process backend: %w", err)
	}
	return b, nil
}

func listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("kerneltest: listen: %w", err)
	}
	return ln, nil
}

// serveHTTP serves h on ln in the group until ctx ends.
func (k *Kernel) serveHTTP(ctx context.Context, ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	k.group.Go(func() error {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	k.group.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	})
}

func (k *Kernel) onClose(f func() error) { k.closers = append(k.closers, f) }

// Close stops every role (the DEAs stop their instances), waits for them
// and removes the kernel's files. It is safe to call more than once.
func (k *Kernel) Close() error {
	k.closeMu.Lock()
	defer k.closeMu.Unlock()
	if k.closed {
		return k.closeErr
	}
	k.closed = true
	k.cancel()
	errs := []error{k.group.Wait()}
	for i := len(k.closers) - 1; i >= 0; i-- {
		errs = append(errs, k.closers[i]())
	}
	k.http.CloseIdleConnections()
	k.closeErr = errors.Join(errs...)
	return k.closeErr
}

// AppHost returns the host name routed to the app name: name.Domain.
func (k *Kernel) AppHost(name string) string { return name + "." + k.Domain }

// NewUser registers a user (as the admin) and returns a client logged in
// as them.
func (k *Kernel) NewUser(ctx context.Context, email, password string) (*client.Client, error) {
	if err := k.Client.Register(ctx, email, password); err != nil {
		return nil, fmt.Errorf("kerneltest: register %s: %w", email, err)
	}
	cl, err := client.New(k.ControllerURL, k.http)
	if err != nil {
		return nil, fmt.Errorf("kerneltest: %w", err)
	}
	if _, err := cl.Login(ctx, email, password); err != nil {
		return nil, fmt.Errorf("kerneltest: login %s: %w", email, err)
	}
	return cl, nil
}

// Push creates the app name (routed at AppHost(name)) as the admin, uploads
// dir, starts instances of it and waits until they all run and the router
// serves it. See PushAs for another user.
func (k *Kernel) Push(ctx context.Context, name, dir string, instances int) error {
	return k.PushAs(ctx, k.Client, name, dir, instances)
}

// PushAs is Push as the user cl is logged in as.
func (k *Kernel) PushAs(ctx context.Context, cl *client.Client, name, dir string, instances int) error {
	if err := cl.CreateApp(ctx, client.AppRequest{Name: name, URIs: []string{k.AppHost(name)}, Instances: instances, Memory: 128}); err != nil {
		return fmt.Errorf("kerneltest: create %s: %w", name, err)
	}
	if _, err := cl.Push(ctx, name, dir); err != nil {
		return fmt.Errorf("kerneltest: push %s: %w", name, err)
	}
	if err := cl.Start(ctx, name); err != nil {
		return fmt.Errorf("kerneltest: start %s: %w", name, err)
	}
	if _, err := cl.WaitRunning(ctx, name, 20*time.Millisecond); err != nil {
		return fmt.Errorf("kerneltest: %s: %w", name, err)
	}
	if _, err := k.WaitServing(ctx, k.AppHost(name), "/"); err != nil {
		return err
	}
	return nil
}

// Get sends GET path through the router with the Host header set to host
// and returns the status code and body.
func (k *Kernel) Get(host, path string) (status int, body string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return k.get(ctx, host, path)
}

func (k *Kernel) get(ctx context.Context, host, path string) (int, string, error) {
	u := &url.URL{Scheme: "http", Host: k.RouterAddr, Path: path}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, "", fmt.Errorf("kerneltest: %w", err)
	}
	req.Host = host
	resp, err := k.http.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("kerneltest: get %s%s: %w", host, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, string(b), fmt.Errorf("kerneltest: get %s%s: %w", host, path, err)
	}
	return resp.StatusCode, string(b), nil
}

// WaitServing polls host/path through the router until it answers 200 and
// returns that body, or fails with ErrNotServing when ctx ends.
func (k *Kernel) WaitServing(ctx context.Context, host, path string) (string, error) {
	var last string
	for {
		st, body, err := k.get(ctx, host, path)
		if err == nil && st == http.StatusOK {
			return body, nil
		}
		last = fmt.Sprintf("status %d, err %v", st, err)
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: %s%s: last %s", ErrNotServing, host, path, last)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
