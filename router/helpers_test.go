package router

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

// fakeClock is a Clock moved by hand; its tickers fire on Advance.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	tickers []*fakeTicker
}

type fakeTicker struct {
	c      chan time.Time
	period time.Duration
	next   time.Time
}

func (t *fakeTicker) C() <-chan time.Time { return t.c }
func (t *fakeTicker) Stop()               {}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTicker(d time.Duration) Ticker {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTicker{c: make(chan time.Time, 1), period: d, next: c.now.Add(d)}
	c.tickers = append(c.tickers, t)
	return t
}

func (c *fakeClock) tickerCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.tickers)
}

// Advance moves time and fires due tickers (dropping ticks a slow reader
// has not taken, as time.Ticker does).
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.tickers {
		for !t.next.After(c.now) {
			select {
			case t.c <- t.next:
			default:
			}
			t.next = t.next.Add(t.period)
		}
	}
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type harness struct {
	t     *testing.T
	srv   *membus.Server
	bus   *membus.Conn // the router's connection
	peer  *membus.Conn // a registrar's connection
	clock *fakeClock
	r     *Router
}

// newHarness starts a router's Run on a private membus with a fake clock.
func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ID = "test-router"
	cfg.Hosts = []string{"127.0.0.1"}
	if mod != nil {
		mod(&cfg)
	}
	h := &harness{t: t, srv: membus.NewServer(membus.DefaultConfig()), clock: newFakeClock()}
	h.bus, h.peer = h.srv.Connect(), h.srv.Connect()
	t.Cleanup(h.srv.Close)
	r, err := New(cfg, Deps{Bus: h.bus, Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	h.r = r
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, "router subscriptions and tickers", func() bool {
		return h.bus.Stats().Subscriptions == 4 && h.clock.tickerCount() == 2
	})
	return h
}

func (h *harness) publish(subject string, m any) {
	h.t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := h.peer.Publish(subject, data); err != nil {
		h.t.Fatal(err)
	}
}

// register publishes router.register for addr and waits until it is routed.
func (h *harness) register(uri, addr, app, instance string, index int) {
	h.t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	idx := ""
	if index >= 0 {
		idx = strconv.Itoa(index)
	}
	h.publish(protocol.RouterRegister, protocol.Register{Host: host, Port: p, URIs: []string{uri}, App: protocol.AppID(app),
		PrivateInstanceID: instance, PrivateInstanceIndex: idx})
	eventually(h.t, "registration of "+addr, func() bool {
		pool := h.r.Table().Lookup(uri, "/")
		if pool == nil {
			return false
		}
		for _, e := range pool.Endpoints() {
			if e.Addr == addr && e.PrivateInstanceID == instance {
				return true
			}
		}
		return false
	})
}

// modes are the two serving paths every proxy test runs against.
var modes = []string{"serve", "handler"}

// eachMode runs f as a parallel subtest for every front end, each with a
// fresh harness configured by mod.
func eachMode(t *testing.T, mod func(*Config), f func(t *testing.T, h *harness, mode string)) {
	t.Helper()
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			f(t, newHarness(t, mod), mode)
		})
	}
}

// frontend starts the router's proxy in the given mode on 127.0.0.1 and
// returns its base URL.
func (h *harness) frontend(mode string) string {
	h.t.Helper()
	switch mode {
	case "handler":
		s := httptest.NewServer(h.r.Handler())
		h.t.Cleanup(s.Close)
		h.t.Cleanup(h.r.CloseTunnels)
		return s.URL
	default:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			h.t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.r.Serve(ctx, ln) }()
		h.t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("Serve: %v", err)
			}
		})
		return "http://" + ln.Addr().String()
	}
}

// backend starts an httptest server and returns it with its address.
func backend(t *testing.T, h http.Handler) (*httptest.Server, string) {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s, s.Listener.Addr().String()
}

// client is an HTTP client with a timeout that does not follow redirects.
func client() *http.Client {
	return &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// send sends a request for host to url with c and returns the response
// with its whole body read (and closed).
func send(t *testing.T, c *http.Client, method, url, host string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// get sends a GET for host through the router at base.
func get(t *testing.T, c *http.Client, base, host, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf [64 << 10]byte
	n := 0
	for {
		m, err := resp.Body.Read(buf[n:])
		n += m
		if err != nil || n == len(buf) {
			break
		}
	}
	return resp, string(buf[:n])
}
