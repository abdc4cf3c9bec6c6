package healthmgr

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

// BenchmarkCrashToRequest measures, on membus with the wall clock, the time
// from publishing droplet.exited CRASHED to receiving the START request
// on cloudcontrollers.hm.requests, one crash at a time across 1,000 apps.
// It reports the median and 99th percentile; the goal is under 20 ms.
//
//	go test -run '^$' -bench CrashToRequest -benchtime 200x ./healthmgr/
func BenchmarkCrashToRequest(b *testing.B) {
	const apps = 1000
	srv := membus.NewServer(membus.DefaultConfig())
	b.Cleanup(srv.Close)
	src := NewMemSource()
	updated := time.Now().Add(-time.Hour).Unix()
	for i := range apps {
		src.Put(protocol.BulkApp{ID: protocol.AppID(fmt.Sprint("app-", i)), Version: "v1", Instances: 1, State: "STARTED", UpdatedAt: updated})
	}
	cfg := DefaultConfig()
	cfg.StartupWait = 0
	cfg.LeaderElection = false
	cfg.AnalysisInterval = time.Hour // only crashes trigger passes
	// Every crash restarts at once, even of an app crashed a moment ago.
	cfg.Policy.RetryAfter = 0
	cfg.Policy.ImmediateRestarts = 1 << 30
	m, err := New(cfg, Deps{Bus: srv.Connect(), Desired: src})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })

	cc := srv.Connect()
	starts := make(chan string, 16)
	if _, err := cc.Subscribe(protocol.HMRequests, func(msg *bus.Msg) {
		var r protocol.HMRequest
		if json.Unmarshal(msg.Data, &r) == nil && r.Op == protocol.OpStart {
			starts <- string(r.Droplet)
		}
	}); err != nil {
		b.Fatal(err)
	}
	dea := srv.Connect()
	deadline := time.Now().Add(waitLimit)
	for !m.ready() {
		if time.Now().After(deadline) {
			b.Fatal("manager not ready")
		}
		time.Sleep(time.Millisecond)
	}

	lat := make([]time.Duration, 0, b.N)
	n := 0
	for b.Loop() {
		app := fmt.Sprint("app-", n%apps)
		data, _ := json.Marshal(protocol.Exited{
			Droplet: protocol.AppID(app), Version: "v1", Instance: fmt.Sprint("i-", n), Reason: protocol.ReasonCrashed,
		})
		n++
		lat = append(lat, crashToStart(b, dea, starts, app, data))
	}
	reportLatency(b, lat)
}

// crashToStart publishes a droplet.exited for app and returns how long the
// manager took to request its START.
func crashToStart(b *testing.B, pub bus.Bus, starts <-chan string, app string, exited []byte) time.Duration {
	t0 := time.Now()
	if err := pub.Publish(protocol.DropletExited, exited); err != nil {
		b.Fatal(err)
	}
	for got := ""; got != app; {
		select {
		case got = <-starts:
		case <-time.After(waitLimit):
			b.Fatalf("no START for %s", app)
		}
	}
	return time.Since(t0)
}

// reportLatency reports the median and p99 of lat.
func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// ready reports whether the manager has its desired state and may act.
func (m *Manager) ready() bool {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.desiredLoaded && m.leading && !now.Before(m.actFrom)
}

// BenchmarkFullPass measures one full analysis pass over 10,000 apps of 10
// instances (100,000 instances from 100 DEAs) with 1 % missing, the cost
// of the periodic analysis at that scale.
//
//	go test -run '^$' -bench FullPass ./healthmgr/
func BenchmarkFullPass(b *testing.B) {
	const apps, per, deas = 10000, 10, 100
	srv := membus.NewServer(membus.DefaultConfig())
	b.Cleanup(srv.Close)
	clk := newFakeClock()
	src := NewMemSource()
	updated := clk.Now().Add(-time.Hour).Unix()
	hbs := make([]protocol.Heartbeat, deas)
	for d := range hbs {
		hbs[d].DEA = fmt.Sprint("dea-", d)
	}
	k := 0
	for a := range apps {
		id := fmt.Sprint("app-", a)
		src.Put(protocol.BulkApp{ID: protocol.AppID(id), Version: "v1", Instances: per, State: "STARTED", UpdatedAt: updated})
		for i := range per {
			k++
			if k%100 == 0 {
				continue // 1 % missing
			}
			d := &hbs[k%deas]
			d.Droplets = append(d.Droplets, protocol.InstanceHeartbeat{
				Droplet: protocol.AppID(id), Version: "v1", Instance: fmt.Sprint("i-", k), Index: i,
				State: protocol.StateRunning, StateTimestamp: float64(updated),
			})
		}
	}
	cfg := DefaultConfig()
	cfg.StartupWait = 0
	cfg.LeaderElection = false
	m, err := New(cfg, Deps{Bus: srv.Connect(), Desired: src, Clock: clk})
	if err != nil {
		b.Fatal(err)
	}
	m.leading = true
	if !m.loadAll(context.Background()) {
		b.Fatal("load failed")
	}
	for _, hb := range hbs {
		data, _ := json.Marshal(hb)
		m.onHeartbeat(&bus.Msg{Subject: protocol.DEAHeartbeat, Data: data})
	}
	m.analyze(true) // sends the STARTs once; later passes repeat nothing
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		m.analyze(true)
	}
}

// BenchmarkCrashDuringFullPasses measures, on membus with the wall clock,
// the time from publishing droplet.exited CRASHED to receiving its START
// request while full analysis passes over 10,000 apps of 10 instances
// (100,000 instances) run back to back in the background, one crash at a
// time, each of another app, 5 ms after the previous one's START. It
// reports the median and 99th percentile of the crash-to-request latency
// and how many full passes ended per crash.
//
//	go test -run '^$' -bench CrashDuringFullPasses -benchtime 200x ./healthmgr/
func BenchmarkCrashDuringFullPasses(b *testing.B) {
	const apps, per, deas = 10000, 10, 100
	const crashGap = 5 * time.Millisecond
	srv := membus.NewServer(membus.DefaultConfig())
	b.Cleanup(srv.Close)
	src := NewMemSource()
	now := time.Now()
	updated := now.Add(-time.Hour).Unix()
	hbs := make([]protocol.Heartbeat, deas)
	for d := range hbs {
		hbs[d].DEA = fmt.Sprint("dea-", d)
	}
	k := 0
	for a := range apps {
		id := fmt.Sprint("app-", a)
		src.Put(protocol.BulkApp{ID: protocol.AppID(id), Version: "v1", Instances: per, State: "STARTED", UpdatedAt: updated})
		for i := range per {
			k++
			d := &hbs[k%deas]
			d.Droplets = append(d.Droplets, protocol.InstanceHeartbeat{
				Droplet: protocol.AppID(id), Version: "v1", Instance: fmt.Sprint("i-", k), Index: i,
				State: protocol.StateRunning, StateTimestamp: float64(updated),
			})
		}
	}
	cfg := DefaultConfig()
	cfg.StartupWait = 0
	cfg.LeaderElection = false
	cfg.AnalysisInterval = time.Hour // the background loop below runs the full passes
	// Instances stay fresh for the whole run without heartbeats; a START
	// is sent once; every crash restarts at once.
	cfg.Policy.HeartbeatTTL = time.Hour
	cfg.Policy.RetryAfter = time.Hour
	cfg.Policy.ImmediateRestarts = 1 << 30
	m, err := New(cfg, Deps{Bus: srv.Connect(), Desired: src})
	if err != nil {
		b.Fatal(err)
	}
	// The instances are known before the desired state, so the first pass
	// finds nothing missing.
	for _, hb := range hbs {
		data, _ := json.Marshal(hb)
		m.onHeartbeat(&bus.Msg{Subject: protocol.DEAHeartbeat, Data: data})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })

	cc := srv.Connect()
	starts := make(chan string, 1024)
	if _, err := cc.Subscribe(protocol.HMRequests, func(msg *bus.Msg) {
		var r protocol.HMRequest
		if json.Unmarshal(msg.Data, &r) == nil && r.Op == protocol.OpStart {
			select {
			case starts <- string(r.Droplet):
			default:
			}
		}
	}); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(waitLimit)
	for !m.ready() {
		if time.Now().After(deadline) {
			b.Fatal("manager not ready")
		}
		time.Sleep(time.Millisecond)
	}
	// Full passes back to back until the measurement ends.
	var passes atomic.Int64
	bg, stopBG := context.WithCancel(context.Background())
	bgDone := make(chan struct{})
	go func() {
		defer close(bgDone)
		for bg.Err() == nil {
			m.analyze(true)
			passes.Add(1)
		}
	}()
	defer func() { stopBG(); <-bgDone }()

	dea := srv.Connect()
	lat := make([]time.Duration, 0, b.N)
	before := passes.Load()
	n := 0
	for b.Loop() {
		// The instance at index 0 of the next app crashes.
		a := n % apps
		app := fmt.Sprint("app-", a)
		data, _ := json.Marshal(protocol.Exited{
			Droplet: protocol.AppID(app), Version: "v1", Instance: fmt.Sprint("i-", a*per+1), Index: 0, Reason: protocol.ReasonCrashed,
		})
		n++
		lat = append(lat, crashToStart(b, dea, starts, app, data))
		// Crashes come apart, so they land at every phase of the passes.
		time.Sleep(crashGap)
	}
	b.StopTimer()
	reportLatency(b, lat)
	b.ReportMetric(float64(passes.Load()-before)/float64(len(lat)), "passes/crash")
}
