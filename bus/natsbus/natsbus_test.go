package natsbus

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/bustest"
	"github.com/kiln-paas/kiln/internal/syncbuf"
)

// testConfig returns a configuration for url that reconnects quickly.
func testConfig(urls ...string) Config {
	cfg := DefaultConfig()
	cfg.URLs = urls
	cfg.ReconnectWait = 10 * time.Millisecond
	cfg.MaxReconnectWait = 100 * time.Millisecond
	cfg.DialTimeout = time.Second
	return cfg
}

func connectT(t *testing.T, cfg Config) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	bustest.Run(t, func(t *testing.T) (a, b bus.Bus) {
		srv := RunTestServer(t)
		return connectT(t, testConfig(srv.ClientURL())), connectT(t, testConfig(srv.ClientURL()))
	})
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stateLog records connection-state hook calls.
type stateLog struct {
	mu  sync.Mutex
	got []bool
	ch  chan bool
}

func newStateLog() *stateLog { return &stateLog{ch: make(chan bool, 16)} }

func (l *stateLog) hook(up bool) {
	l.mu.Lock()
	l.got = append(l.got, up)
	l.mu.Unlock()
	l.ch <- up
}

func (l *stateLog) expect(t *testing.T, want bool) {
	t.Helper()
	select {
	case got := <-l.ch:
		if got != want {
			t.Fatalf("connection hook called with %v, want %v", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("connection hook not called with %v", want)
	}
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

func runServerT(t *testing.T, cfg ServerConfig) *Server {
	t.Helper()
	s, err := RunServer(cfg)
	if err != nil {
		t.Fatalf("RunServer: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// counter reads a counter of reg labelled name, 0 if absent.
func counter(t *testing.T, reg *prometheus.Registry, metric, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "name" && l.GetValue() == name {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestDialTone starts a connection before its server exists, then restarts
// the server on the same port: the connection comes up, goes down, comes
// back, keeps its subscription, and reports all of it.
func TestDialTone(t *testing.T) {
	port := freePort(t)
	scfg := DefaultServerConfig()
	scfg.Port = port
	url := "nats://127.0.0.1:" + strconv.Itoa(port)

	states := newStateLog()
	reg := prometheus.NewRegistry()
	var logs syncbuf.Buffer
	cfg := testConfig(url)
	cfg.Name = "dialtone"
	cfg.OnConnectionChange = states.hook
	cfg.Registerer = reg
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	c := connectT(t, cfg)
	if st := c.Stats(); st.Connected {
		t.Fatal("Stats().Connected = true with no server")
	}
	watched := newStateLog()
	remove := c.OnConnectionChange(watched.hook)
	defer remove()
	removed := newStateLog()
	c.OnConnectionChange(removed.hook)() // removed at once: never called

	got := make(chan string, 16)
	if _, err := c.Subscribe("tone.>", func(m *bus.Msg) { got <- string(m.Data) }); err != nil {
		t.Fatalf("Subscribe while not connected: %v", err)
	}
	if err := c.Publish("tone.early", []byte("buffered")); err != nil {
		t.Fatalf("Publish while not connected: %v", err)
	}

	srv := runServerT(t, scfg)
	states.expect(t, true)
	watched.expect(t, true)
	if !c.Connected() || !c.Stats().Connected {
		t.Fatal("not connected after the hook said so")
	}
	expectMsg(t, got, "buffered")

	srv.Shutdown()
	states.expect(t, false)
	watched.expect(t, false)
	if c.Connected() {
		t.Fatal("Connected() = true after the server stopped")
	}

	runServerT(t, scfg)
	states.expect(t, true)
	watched.expect(t, true)
	other := connectT(t, testConfig(url))
	// The subscription was re-sent on reconnect; a Flush on c makes sure
	// the server has it before other publishes.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("Flush after reconnect: %v", err)
	}
	if err := other.Publish("tone.late", []byte("after restart")); err != nil {
		t.Fatal(err)
	}
	expectMsg(t, got, "after restart")

	st := c.Stats()
	if st.Reconnects < 1 {
		t.Errorf("Stats().Reconnects = %d, want at least 1", st.Reconnects)
	}
	if n := counter(t, reg, "kiln_natsbus_disconnects_total", "dialtone"); n != 1 {
		t.Errorf("disconnects counter = %v, want 1", n)
	}
	if n := counter(t, reg, "kiln_natsbus_reconnects_total", "dialtone"); n != 1 {
		t.Errorf("reconnects counter = %v, want 1", n)
	}
	for _, event := range []string{"bus-connect-deferred", "bus-connected", "bus-disconnected", "bus-reconnected"} {
		if !strings.Contains(logs.String(), "msg="+event) {
			t.Errorf("log lacks event %s:\n%s", event, logs.String())
		}
	}

	// Our own Close is not reported; once the connection has finished
	// closing no further call can come.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("connection did not finish closing")
	}
	for _, l := range []*stateLog{states, watched} {
		l.mu.Lock()
		if diff := cmp.Diff([]bool{true, false, true}, l.got); diff != "" {
			t.Errorf("OnConnectionChange calls (-want +got):\n%s", diff)
		}
		l.mu.Unlock()
	}
	removed.mu.Lock()
	defer removed.mu.Unlock()
	if len(removed.got) != 0 {
		t.Errorf("removed hook called %v", removed.got)
	}
}

func expectMsg(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("got message %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("message %q not delivered", want)
	}
}

func TestNoRetryFailsWithoutServer(t *testing.T) {
	cfg := testConfig("nats://127.0.0.1:" + strconv.Itoa(freePort(t)))
	cfg.RetryOnFailedConnect = false
	c, err := Connect(t.Context(), cfg)
	if err == nil {
		_ = c.Close()
		t.Fatal("Connect without server and without retry succeeded")
	}
	if errors.Is(err, ErrAuthorization) {
		t.Errorf("Connect = %v, not an authorization error", err)
	}
}

func TestURLPasswordNotRevealed(t *testing.T) {
	srv := RunTestServer(t)
	cfg := testConfig(strings.Replace(srv.ClientURL(), "nats://", "nats://kiln:hunter2@", 1))
	cfg.RetryOnFailedConnect = false
	c, err := Connect(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Connect with credentials in the URL to an open server: %v", err)
	}
	_ = c.Close()

	cfg = testConfig("nats://kiln:hunter2@127.0.0.1:" + strconv.Itoa(freePort(t)))
	cfg.RetryOnFailedConnect = false
	var logs syncbuf.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	_, err = Connect(t.Context(), cfg)
	if err == nil {
		t.Fatal("Connect to nobody succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") || strings.Contains(logs.String(), "hunter2") {
		t.Errorf("password revealed in %q or logs %q", err, logs.String())
	}
}

func TestConnectHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Connect(ctx, testConfig("nats://127.0.0.1:4222")); !errors.Is(err, context.Canceled) {
		t.Errorf("Connect with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestAuth(t *testing.T) {
	userSrv := DefaultServerConfig()
	userSrv.User, userSrv.Password = "kiln", "s3cret"
	tokenSrv := DefaultServerConfig()
	tokenSrv.Token = "t0ken"
	tests := []struct {
		name                  string
		srv                   ServerConfig
		user, password, token string
		wantErr               error
	}{
		{"user ok", userSrv, "kiln", "s3cret", "", nil},
		{"wrong password", userSrv, "kiln", "nope", "", ErrAuthorization},
		{"no credentials", userSrv, "", "", "", ErrAuthorization},
		{"token ok", tokenSrv, "", "", "t0ken", nil},
		{"wrong token", tokenSrv, "", "", "other", ErrAuthorization},
		{"open server ignores token", DefaultServerConfig(), "", "", "t0ken", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := runServerT(t, tc.srv)
			cfg := testConfig(srv.ClientURL())
			cfg.User, cfg.Password, cfg.Token = tc.user, tc.password, tc.token
			// Retrying is on: a rejection must still fail at once.
			start := time.Now()
			c, err := Connect(t.Context(), cfg)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Connect = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("rejection took %v", d)
				}
				if strings.Contains(err.Error(), tc.password) && tc.password != "" {
					t.Errorf("error %q reveals the password", err)
				}
				return
			}
			defer c.Close()
			if _, err := c.Subscribe("echo", func(m *bus.Msg) { _ = c.Publish(m.Reply, m.Data) }); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			m, err := c.Request(ctx, "echo", []byte("hi"))
			if err != nil || string(m.Data) != "hi" {
				t.Fatalf("Request = %v, %v", m, err)
			}
		})
	}
}

func TestSlowConsumer(t *testing.T) {
	srv := RunTestServer(t)
	reg := prometheus.NewRegistry()
	cfg := testConfig(srv.ClientURL())
	cfg.Name = "slow"
	cfg.Registerer = reg
	cfg.PendingLimits = PendingLimits{Msgs: 10, Bytes: -1}
	c := connectT(t, cfg)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	sub, err := c.Subscribe("slow", func(*bus.Msg) { <-release })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 100
	for range n {
		if err := c.Publish("slow", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "drops to be counted", func() bool { return sub.Dropped() > 0 })
	waitUntil(t, "the slow-consumer counter", func() bool {
		return counter(t, reg, "kiln_natsbus_slow_consumers_total", "slow") >= 1
	})
	unblock()
	waitUntil(t, "every message to be delivered or dropped", func() bool {
		st := c.Stats()
		return st.InMsgs+st.Dropped == n
	})
	if got, want := c.Stats().Dropped, sub.Dropped(); got != want {
		t.Errorf("Stats().Dropped = %d, subscription's = %d", got, want)
	}
	// The count survives Unsubscribe and Close.
	dropped := sub.Dropped()
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if sub.Dropped() != dropped || c.Stats().Dropped != dropped {
		t.Errorf("after Close: sub dropped %d, stats dropped %d, want %d", sub.Dropped(), c.Stats().Dropped, dropped)
	}
}

func TestSharedRegisterer(t *testing.T) {
	srv := RunTestServer(t)
	reg := prometheus.NewRegistry()
	for _, name := range []string{"router", "router", "dea"} {
		cfg := testConfig(srv.ClientURL())
		cfg.Name = name
		cfg.Registerer = reg
		connectT(t, cfg)
	}
	// A foreign collector under our name is an error, not a panic.
	clash := prometheus.NewGauge(prometheus.GaugeOpts{Name: "kiln_natsbus_disconnects_total", Help: "x"})
	reg2 := prometheus.NewRegistry()
	reg2.MustRegister(clash)
	cfg := testConfig(srv.ClientURL())
	cfg.Registerer = reg2
	if c, err := Connect(t.Context(), cfg); err == nil {
		_ = c.Close()
		t.Error("Connect with a clashing metric succeeded")
	}
}

func TestUnsubscribeStopsHandler(t *testing.T) {
	srv := RunTestServer(t)
	c := connectT(t, testConfig(srv.ClientURL()))
	var mu sync.Mutex
	var got int
	var sub bus.Subscription
	// Unsubscribing from inside the handler must not deadlock and must
	// stop further calls even with messages already queued.
	entered := make(chan struct{})
	sub, err := c.Subscribe("self", func(*bus.Msg) {
		mu.Lock()
		got++
		first := got == 1
		mu.Unlock()
		if first {
			<-entered
			if err := sub.Unsubscribe(); err != nil {
				t.Errorf("Unsubscribe from handler: %v", err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := c.Publish("self", nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	close(entered)
	waitUntil(t, "the unsubscribe", func() bool { return c.Stats().Subscriptions == 0 })
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got != 1 {
		t.Errorf("handler called %d times, want 1", got)
	}
}

func TestBackoff(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		attempt int
		jitter  float64
		rnd     float64
		want    time.Duration
	}{
		{1, 0, 0, 250 * ms},
		{2, 0, 0, 500 * ms},
		{3, 0, 0, 1000 * ms},
		{5, 0, 0, 4000 * ms},
		{6, 0, 0, 5000 * ms},
		{100, 0, 0, 5000 * ms},
		{1, 0.5, 0.999999, 125*ms + 250*ms*5/10_000_000},
		{1, 0.5, 0.5, 187500 * time.Microsecond},
		{100, 0.5, 0.5, 3750 * ms},
	}
	for _, tc := range tests {
		got := backoff(250*ms, 5000*ms, tc.jitter, tc.attempt, func() float64 { return tc.rnd })
		if diff := got - tc.want; diff < -ms/10 || diff > ms/10 {
			t.Errorf("backoff(attempt %d, jitter %v, rnd %v) = %v, want %v", tc.attempt, tc.jitter, tc.rnd, got, tc.want)
		}
	}
}

// validateCase is a change to a default configuration and whether the
// result must pass Validate.
type validateCase[C any] struct {
	name   string
	modify func(*C)
	ok     bool
}

// checkValidate runs the cases against configurations from def; a failing
// one must wrap ErrInvalidConfig.
func checkValidate[C interface{ Validate() error }](t *testing.T, def func() C, tests []validateCase[C]) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := def()
			tc.modify(&cfg)
			err := cfg.Validate()
			if tc.ok && err != nil {
				t.Errorf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []validateCase[Config]{
		{"default", func(*Config) {}, true},
		{"several urls", func(c *Config) { c.URLs = []string{"nats://a:4222", "b:4222", "tls://c:4443"} }, true},
		{"no urls", func(c *Config) { c.URLs = nil }, false},
		{"bad scheme", func(c *Config) { c.URLs = []string{"http://a:4222"} }, false},
		{"no host", func(c *Config) { c.URLs = []string{"nats://:4222"} }, false},
		{"bad url", func(c *Config) { c.URLs = []string{"nats://a b:%%"} }, false},
		{"user and password", func(c *Config) { c.User, c.Password = "u", "p" }, true},
		{"password alone", func(c *Config) { c.Password = "p" }, false},
		{"token and user", func(c *Config) { c.User, c.Token = "u", "t" }, false},
		{"unlimited pending", func(c *Config) { c.PendingLimits = PendingLimits{-1, -1} }, true},
		{"zero pending msgs", func(c *Config) { c.PendingLimits.Msgs = 0 }, false},
		{"zero pending bytes", func(c *Config) { c.PendingLimits.Bytes = 0 }, false},
		{"zero reconnect wait", func(c *Config) { c.ReconnectWait = 0 }, false},
		{"max below wait", func(c *Config) { c.MaxReconnectWait = c.ReconnectWait / 2 }, false},
		{"jitter 1", func(c *Config) { c.ReconnectJitter = 1 }, false},
		{"negative jitter", func(c *Config) { c.ReconnectJitter = -0.1 }, false},
		{"no reconnect buffer", func(c *Config) { c.ReconnectBufSize = -1 }, true},
		{"zero reconnect buffer", func(c *Config) { c.ReconnectBufSize = 0 }, false},
		{"zero dial timeout", func(c *Config) { c.DialTimeout = 0 }, false},
		{"zero ping interval", func(c *Config) { c.PingInterval = 0 }, false},
		{"zero pings out", func(c *Config) { c.MaxPingsOut = 0 }, false},
		{"zero flush timeout", func(c *Config) { c.FlushTimeout = 0 }, false},
		{"zero drain timeout", func(c *Config) { c.DrainTimeout = 0 }, false},
	}
	checkValidate(t, DefaultConfig, tests)
	if _, err := Connect(t.Context(), Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Connect(zero Config) = %v, want ErrInvalidConfig", err)
	}
}

// TestWhileDisconnected checks what each operation does before any server
// is up: publishes are buffered (or refused without a buffer), waits end
// with their context, and Drain gives up at once.
func TestWhileDisconnected(t *testing.T) {
	url := "nats://127.0.0.1:" + strconv.Itoa(freePort(t))
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	c := connectT(t, testConfig(url))
	if err := c.Publish("buffered", []byte("x")); err != nil {
		t.Errorf("Publish = %v, want it buffered", err)
	}
	if _, err := c.Request(short(), "anyone", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Request = %v, want context.DeadlineExceeded", err)
	}
	if err := c.Flush(short()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Flush = %v, want context.DeadlineExceeded", err)
	}
	if err := c.Drain(t.Context()); err == nil {
		t.Error("Drain while disconnected = nil, want an error")
	}
	if err := c.Publish("after", nil); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish after Drain = %v, want ErrClosed", err)
	}

	cfg := testConfig(url)
	cfg.ReconnectBufSize = -1
	unbuffered := connectT(t, cfg)
	if err := unbuffered.Publish("refused", []byte("x")); err == nil {
		t.Error("Publish without reconnect buffer while disconnected = nil, want an error")
	}
}

// TestReconnectThroughRejection restarts the server with other credentials
// and then with the right ones again: the connection keeps trying through
// the rejections (counted as async errors) and comes back.
func TestReconnectThroughRejection(t *testing.T) {
	scfg := DefaultServerConfig()
	scfg.Port = freePort(t)
	scfg.User, scfg.Password = "kiln", "right"
	srv := runServerT(t, scfg)

	states := newStateLog()
	reg := prometheus.NewRegistry()
	cfg := testConfig(srv.ClientURL())
	cfg.Name = "rejected"
	cfg.User, cfg.Password = "kiln", "right"
	cfg.Registerer = reg
	cfg.OnConnectionChange = states.hook
	c := connectT(t, cfg)
	states.expect(t, true)

	srv.Shutdown()
	states.expect(t, false)
	wrong := scfg
	wrong.Password = "rotated"
	srv = runServerT(t, wrong)
	waitUntil(t, "rejections to be counted", func() bool {
		return counter(t, reg, "kiln_natsbus_async_errors_total", "rejected") >= 2
	})
	if c.Connected() {
		t.Fatal("connected with rejected credentials")
	}
	srv.Shutdown()
	runServerT(t, scfg)
	states.expect(t, true)
	if !c.Connected() {
		t.Error("not connected after the credentials were accepted again")
	}
}
