package membus_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/bustest"
	"github.com/kiln-paas/kiln/bus/membus"
)

func TestConformance(t *testing.T) {
	bustest.Run(t, func(t *testing.T) (a, b bus.Bus) {
		srv := membus.NewServer(membus.DefaultConfig())
		t.Cleanup(srv.Close)
		return srv.Connect(), srv.Connect()
	})
}

const timeout = 10 * time.Second

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// gate is a handler that blocks until released, for a stuck subscriber.
type gate struct {
	release chan struct{}
	once    sync.Once
	got     atomic.Int64
}

func newGate(t *testing.T) *gate {
	g := &gate{release: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) handle(*bus.Msg) {
	<-g.release
	g.got.Add(1)
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// recordHandler is a slog.Handler that keeps the records it is given.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordHandler) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.records {
		s := r.Message
		r.Attrs(func(a slog.Attr) bool {
			s += " " + a.String()
			return true
		})
		out = append(out, s)
	}
	return out
}

func TestSlowConsumerDrops(t *testing.T) {
	const limit, extra = 8, 5
	logs := &recordHandler{}
	var slow []string
	var slowMu sync.Mutex
	srv := membus.NewServer(membus.Config{
		PendingLimit: limit,
		Logger:       slog.New(logs),
		OnSlowConsumer: func(s bus.Subscription) {
			slowMu.Lock()
			slow = append(slow, s.Subject())
			slowMu.Unlock()
		},
	})
	t.Cleanup(srv.Close)
	pub, conn := srv.Connect(), srv.Connect()

	// The handler takes one token per message: the test decides how many
	// messages it may finish.
	tokens := make(chan struct{})
	t.Cleanup(func() { close(tokens) })
	entered := make(chan struct{}, 1)
	var handled atomic.Int64
	stuck, err := conn.Subscribe("busy.>", func(*bus.Msg) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-tokens
		handled.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Two episodes: fill the queue and overflow it, let it drain, then
	// overflow it again. Each is reported once.
	for episode := range 2 {
		select {
		case <-entered: // left over from the previous episode
		default:
		}
		if err := pub.Publish("busy.x", nil); err != nil {
			t.Fatal(err)
		}
		select {
		case <-entered: // the first message is being handled
		case <-time.After(timeout):
			t.Fatal("handler never called")
		}
		for range limit - 1 + extra {
			if err := pub.Publish("busy.x", nil); err != nil {
				t.Fatal(err)
			}
		}
		if got, want := stuck.Dropped(), uint64(extra*(episode+1)); got != want {
			t.Fatalf("episode %d: Dropped() = %d, want %d", episode, got, want)
		}
		for range limit {
			tokens <- struct{}{}
		}
		waitFor(t, "the handler to catch up", func() bool { return handled.Load() == int64(limit*(episode+1)) })
	}
	if got := conn.Stats().Dropped; got != 2*extra {
		t.Errorf("Stats().Dropped = %d, want %d", got, 2*extra)
	}
	if got := pub.Stats().Dropped; got != 0 {
		t.Errorf("publisher's Stats().Dropped = %d, want 0 (drops belong to the subscriber's connection)", got)
	}
	slowMu.Lock()
	defer slowMu.Unlock()
	if diff := cmp.Diff([]string{"busy.>", "busy.>"}, slow); diff != "" {
		t.Errorf("OnSlowConsumer calls (-want +got):\n%s", diff)
	}
	want := []string{
		"slow-consumer subject=busy.> queue= pending-limit=8 dropped=1",
		"slow-consumer subject=busy.> queue= pending-limit=8 dropped=" + strconv.Itoa(extra+1),
	}
	if diff := cmp.Diff(want, logs.messages()); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}
}

func TestQueueGroupPassesOverFullMember(t *testing.T) {
	const limit = 4
	srv := membus.NewServer(membus.Config{PendingLimit: limit})
	t.Cleanup(srv.Close)
	c := srv.Connect()
	g1, g2 := newGate(t), newGate(t)
	s1, err := c.QueueSubscribe("jobs", "workers", g1.handle)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c.QueueSubscribe("jobs", "workers", g2.handle)
	if err != nil {
		t.Fatal(err)
	}
	dropped := func() uint64 { return s1.Dropped() + s2.Dropped() }
	// Both members are stuck, so together they hold 2*limit messages.
	// Random choice alone would overflow one of them long before that;
	// passing over a full member fills both.
	for i := range 2 * limit {
		if err := c.Publish("jobs", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if d := dropped(); d != 0 {
		t.Fatalf("%d messages dropped while a member still had room", d)
	}
	if err := c.Publish("jobs", nil); err != nil {
		t.Fatal(err)
	}
	if d := dropped(); d != 1 {
		t.Fatalf("Dropped = %d once both members were full, want 1", d)
	}
	g1.open()
	g2.open()
	waitFor(t, "both members to handle what they hold", func() bool {
		return g1.got.Load()+g2.got.Load() == 2*limit
	})
}

func TestSetConnected(t *testing.T) {
	srv := membus.NewServer(membus.DefaultConfig())
	t.Cleanup(srv.Close)
	a, b := srv.Connect(), srv.Connect()
	var changes []bool
	var mu sync.Mutex
	remove := b.OnConnectionChange(func(up bool) {
		mu.Lock()
		changes = append(changes, up)
		mu.Unlock()
	})
	var got atomic.Int64
	if _, err := b.Subscribe("ping", func(m *bus.Msg) {
		got.Add(1)
		_ = b.Publish(m.Reply, []byte("pong"))
	}); err != nil {
		t.Fatal(err)
	}

	srv.SetConnected(false)
	srv.SetConnected(false) // no change, no hook call
	if a.Stats().Connected || b.Stats().Connected {
		t.Error("Connected = true while the bus is down")
	}
	if err := a.Publish("ping", nil); err != nil {
		t.Errorf("Publish while down = %v, want nil (fire and forget)", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := a.Request(ctx, "ping", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Request while down = %v, want context.DeadlineExceeded", err)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- a.Flush(t.Context()) }()
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned %v while the bus was down", err)
	case <-time.After(20 * time.Millisecond):
	}

	srv.SetConnected(true)
	select {
	case err := <-flushed:
		if err != nil {
			t.Errorf("Flush after reconnect = %v", err)
		}
	case <-time.After(timeout):
		t.Fatal("Flush did not return after reconnect")
	}
	if !a.Stats().Connected || b.Stats().Reconnects != 1 {
		t.Errorf("after reconnect: Connected = %v, Reconnects = %d; want true, 1", a.Stats().Connected, b.Stats().Reconnects)
	}
	m, err := a.Request(t.Context(), "ping", nil)
	if err != nil || string(m.Data) != "pong" {
		t.Fatalf("Request after reconnect = %v, %v", m, err)
	}
	if n := got.Load(); n != 1 {
		t.Errorf("subscriber received %d messages, want 1 (those sent while down are lost)", n)
	}

	remove()
	remove()
	srv.SetConnected(false)
	srv.SetConnected(true)
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]bool{false, true}, changes); diff != "" {
		t.Errorf("hook calls (-want +got):\n%s", diff)
	}
}

func TestServerClose(t *testing.T) {
	srv := membus.NewServer(membus.DefaultConfig())
	a, b := srv.Connect(), srv.Connect()
	srv.Close()
	for i, c := range []*membus.Conn{a, b, srv.Connect()} {
		if err := c.Publish("x", nil); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("conn %d: Publish after Server.Close = %v, want ErrClosed", i, err)
		}
	}
	srv.Close() // idempotent
}

func TestUnsubscribeAndCloseFromHandler(t *testing.T) {
	c := membus.New()
	t.Cleanup(func() { _ = c.Close() })
	var sub bus.Subscription
	var calls atomic.Int64
	unsubscribed := make(chan error, 1)
	sub, err := c.Subscribe("once", func(*bus.Msg) {
		if calls.Add(1) == 1 {
			unsubscribed <- sub.Unsubscribe()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := c.Publish("once", nil); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-unsubscribed:
		if err != nil {
			t.Fatalf("Unsubscribe from the handler: %v", err)
		}
	case <-time.After(timeout):
		t.Fatal("handler never ran")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times; nothing may be delivered after Unsubscribe returns", n)
	}

	closed := make(chan error, 1)
	if _, err := c.Subscribe("close", func(*bus.Msg) { closed <- c.Close() }); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish("close", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close from a handler: %v", err)
		}
	case <-time.After(timeout):
		t.Fatal("Close from a handler did not return")
	}
}

func TestRequestUnblocksOnClose(t *testing.T) {
	c := membus.New()
	if _, err := c.Subscribe("silent", func(*bus.Msg) {}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Request(t.Context(), "silent", nil)
		done <- err
	}()
	waitFor(t, "the request to be delivered", func() bool { return c.Stats().InMsgs == 1 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, bus.ErrClosed) {
			t.Errorf("Request interrupted by Close = %v, want ErrClosed", err)
		}
	case <-time.After(timeout):
		t.Fatal("Request did not return after Close")
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name  string
		cfg   membus.Config
		valid bool
	}{
		{"default", membus.DefaultConfig(), true},
		{"zero", membus.Config{}, true},
		{"one", membus.Config{PendingLimit: 1}, true},
		{"negative", membus.Config{PendingLimit: -1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != tc.valid || err != nil && !errors.Is(err, membus.ErrBadConfig) {
				t.Fatalf("Validate() = %v, want valid=%v", err, tc.valid)
			}
			defer func() {
				if r := recover(); (r == nil) != tc.valid {
					t.Errorf("NewServer panic = %v, want panic=%v", r, !tc.valid)
				}
			}()
			membus.NewServer(tc.cfg).Close()
		})
	}
}

func TestErrorsReturnNilSubscription(t *testing.T) {
	c := membus.New()
	t.Cleanup(func() { _ = c.Close() })
	if s, err := c.Subscribe("a..b", func(*bus.Msg) {}); err == nil || s != nil {
		t.Errorf("Subscribe(bad) = %v, %v; want nil and an error", s, err)
	}
	if s, err := c.QueueSubscribe("a", "q", nil); err == nil || s != nil {
		t.Errorf("QueueSubscribe(nil handler) = %v, %v; want nil and an error", s, err)
	}
}
