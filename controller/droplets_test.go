package controller

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

func TestSignedDropletURLs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	cl := e.user("drop@x.io")
	pushStaged(t, cl, "d", map[string]string{"a": "b"})
	rec, _ := e.store.GetAppByName(ctx, "drop@x.io", "d")
	good := e.c.dropletURL(rec.ID, rec.DropletHash)
	u, _ := url.Parse(good)
	q := u.Query()
	tamper := func(k, v string) string {
		q2 := url.Values{}
		for kk, vv := range q {
			q2[kk] = vv
		}
		q2.Set(k, v)
		u2 := *u
		u2.RawQuery = q2.Encode()
		return u2.String()
	}
	other := e.c.dropletURL(rec.ID, strings.Repeat("a", 40))
	tests := []struct {
		name   string
		url    string
		status int
	}{
		{"valid", good, 200},
		{"bad signature", tamper("signature", strings.Repeat("0", 64)), 403},
		{"extended expiry", tamper("expires", "99999999999"), 403},
		{"no signature", strings.Split(good, "?")[0], 403},
		{"signed but unknown droplet", other, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d %s, want %d", resp.StatusCode, b, tt.status)
			}
		})
	}
	// Expired: the clock moves past the URL's expiry.
	e.clock.Set(time.Now().Add(2 * time.Hour))
	if resp, err := http.Get(good); err != nil || resp.StatusCode != 403 {
		t.Fatalf("expired URL: %v %v", resp.StatusCode, err)
	}
	e.clock.Set(time.Time{})
	// A range request resumes a download.
	req, _ := http.NewRequest("GET", good, nil)
	req.Header.Set("Range", "bytes=0-9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("range: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	evs, err := cl.Events(ctx, "d")
	if err != nil || len(evs) < 3 || evs[0].Type != "app-created" {
		t.Fatalf("events = %+v, %v", evs, err)
	}
}

func TestComponentStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	srv := httptest.NewServer(e.c.StatusHandler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "ok" {
		t.Fatalf("healthz = %d %q", resp.StatusCode, b)
	}
	resp, err = http.Get(srv.URL + "/varz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"pending_stage_cmds"`) || !strings.Contains(string(b), `"CloudController"`) {
		t.Fatalf("varz = %s", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var comp protocol.Component
	if err := bus.RequestJSON(ctx, e.bus, protocol.ComponentDiscover, struct{}{}, &comp); err != nil || comp.Type != "CloudController" {
		t.Fatalf("discover = %+v, %v", comp, err)
	}
}

func TestRouteRegistration(t *testing.T) {
	t.Parallel()
	mb := membus.NewServer(membus.DefaultConfig())
	t.Cleanup(mb.Close)
	watch := mb.Connect()
	regs := make(chan protocol.Register, 16)
	for _, subj := range []string{protocol.RouterRegister, protocol.RouterUnregister} {
		sub, err := watch.Subscribe(subj, func(m *bus.Msg) {
			r, err := protocol.Decode[protocol.Register](m.Data)
			if err == nil {
				r.Tags["subject"] = m.Subject
				regs <- r
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	e := newEnvOn(t, func(c *Config) {
		c.RouteURIs = []string{"api.vcap.me"}
		c.RouteHost, c.RoutePort = "127.0.0.1", 9022
		c.RegisterInterval = time.Hour
	}, mb.Connect())
	next := func() protocol.Register {
		select {
		case r := <-regs:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no registration")
		}
		return protocol.Register{}
	}
	if r := next(); r.Tags["subject"] != protocol.RouterRegister || r.URIs[0] != "api.vcap.me" || r.Port != 9022 || r.Tags["component"] != "CloudController" {
		t.Fatalf("register = %+v", r)
	}
	// A router starting asks everyone to register again.
	_ = bus.PublishJSON(e.bus, protocol.RouterStart, protocol.RouterHello{ID: "r1"})
	if r := next(); r.Tags["subject"] != protocol.RouterRegister {
		t.Fatalf("after router.start = %+v", r)
	}
}
