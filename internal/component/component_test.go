package component

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

func TestUptime(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0d:0h:0m:0s"},
		{61 * time.Second, "0d:0h:1m:1s"},
		{26*time.Hour + 3*time.Minute + 4*time.Second, "1d:2h:3m:4s"},
	}
	for _, tt := range tests {
		if got := Uptime(tt.d); got != tt.want {
			t.Errorf("Uptime(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestAnnounceAndDiscover(t *testing.T) {
	srv := membus.NewServer(membus.DefaultConfig())
	a, b := srv.Connect(), srv.Connect()
	t.Cleanup(func() { a.Close(); b.Close() })

	announced := make(chan protocol.Component, 1)
	if _, err := b.Subscribe(protocol.ComponentAnnounce, func(m *bus.Msg) {
		var c protocol.Component
		if json.Unmarshal(m.Data, &c) == nil {
			announced <- c
		}
	}); err != nil {
		t.Fatal(err)
	}
	c := New(Config{Type: "DEA", Index: 2, Host: "127.0.0.1:1"}, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Announce(ctx, a) }()
	t.Cleanup(func() { cancel(); <-done })

	select {
	case got := <-announced:
		if got.Type != "DEA" || got.UUID != c.UUID() || got.Index != 2 {
			t.Errorf("announce = %+v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no announce")
	}
	var rec protocol.Component
	rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer rcancel()
	// The subscription may not be active yet the first time; retry.
	for {
		err := bus.RequestJSON(rctx, b, protocol.ComponentDiscover, struct{}{}, &rec)
		if err == nil {
			break
		}
		if !errors.Is(err, bus.ErrNoResponders) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rec.UUID != c.UUID() || rec.Uptime == "" {
		t.Errorf("discover reply = %+v", rec)
	}
}

func TestHandler(t *testing.T) {
	var sick error
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_test_total", Help: "test"}))
	c := New(Config{Type: "Router", User: "u", Password: "p"},
		func() error { return sick },
		func() map[string]any { return map[string]any{"requests": 7} })
	srv := httptest.NewServer(c.Handler(reg))
	t.Cleanup(srv.Close)

	get := func(path string, auth bool) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if auth {
			req.SetBasicAuth("u", "p")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	tests := []struct {
		path string
		auth bool
		want int
	}{
		{"/healthz", false, 200},
		{"/varz", false, 401},
		{"/varz", true, 200},
		{"/metrics", false, 200},
	}
	for _, tt := range tests {
		if got := get(tt.path, tt.auth).StatusCode; got != tt.want {
			t.Errorf("GET %s auth=%v = %d, want %d", tt.path, tt.auth, got, tt.want)
		}
	}
	var varz map[string]any
	if err := json.NewDecoder(get("/varz", true).Body).Decode(&varz); err != nil {
		t.Fatal(err)
	}
	if varz["type"] != "Router" || varz["requests"] != float64(7) || varz["num_cores"] == nil {
		t.Errorf("varz = %v", varz)
	}
	sick = errors.New("bus down")
	if got := get("/healthz", false).StatusCode; got != http.StatusServiceUnavailable {
		t.Errorf("unhealthy /healthz = %d", got)
	}
}
