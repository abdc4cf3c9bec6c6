package dea_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/staging/droplet"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/fake"
)

// testDroplet is a packed droplet and its hash.
type testDroplet struct {
	data []byte
	sha1 string
}

// packDroplet packs files (name to contents) with the start command.
func packDroplet(t testing.TB, command string, files map[string]string) testDroplet {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	sum, err := droplet.PackDir(&buf, droplet.Info{DetectedBuildpack: "test", StartCommand: command, Stack: "linux"}, dir)
	if err != nil {
		t.Fatal(err)
	}
	return testDroplet{data: buf.Bytes(), sha1: sum.SHA1}
}

// mapFetcher serves droplets from memory and counts fetches.
type mapFetcher struct {
	mu      sync.Mutex
	byURI   map[string][]byte
	fetches atomic.Int64
	gate    chan struct{} // when not nil, fetches wait for it to close
}

func newMapFetcher() *mapFetcher { return &mapFetcher{byURI: map[string][]byte{}} }

func (f *mapFetcher) add(uri string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byURI[uri] = data
}

func (f *mapFetcher) Fetch(ctx context.Context, uri string) (io.ReadCloser, error) {
	f.fetches.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	data, ok := f.byURI[uri]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no droplet at %s", uri)
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// recorder collects every message on a subject pattern.
type recorder struct {
	t    testing.TB
	mu   sync.Mutex
	msgs []*bus.Msg
	wake chan struct{}
}

func record(t testing.TB, b bus.Bus, subject string) *recorder {
	t.Helper()
	r := &recorder{t: t, wake: make(chan struct{}, 1)}
	sub, err := b.Subscribe(subject, func(m *bus.Msg) {
		c := *m
		c.Data = bytes.Clone(m.Data)
		r.mu.Lock()
		r.msgs = append(r.msgs, &c)
		r.mu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return r
}

func (r *recorder) all() []*bus.Msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*bus.Msg(nil), r.msgs...)
}

// wait returns the first message (in arrival order) for which match holds,
// failing the test after timeout.
func (r *recorder) wait(what string, timeout time.Duration, match func(*bus.Msg) bool) *bus.Msg {
	r.t.Helper()
	return r.waitFrom(0, what, timeout, match)
}

// len returns how many messages arrived so far, a cursor for waitFrom.
func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// waitFrom is wait for the messages from the cursor from on.
func (r *recorder) waitFrom(from int, what string, timeout time.Duration, match func(*bus.Msg) bool) *bus.Msg {
	r.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		all := r.all()
		for _, m := range all[min(from, len(all)):] {
			if match(m) {
				return m
			}
		}
		from = len(all)
		select {
		case <-r.wake:
		case <-deadline.C:
			r.t.Fatalf("timed out after %v waiting for %s", timeout, what)
			return nil
		}
	}
}

func decodeAs[T any](t testing.TB, m *bus.Msg) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(m.Data, &v); err != nil {
		t.Fatalf("decode %s: %v", m.Subject, err)
	}
	return v
}

// testConfig is a DEA config with fast timers for tests.
func testConfig(t testing.TB) dea.Config {
	cfg := dea.DefaultConfig()
	cfg.BaseDir = t.TempDir()
	cfg.MemoryMB = 4096
	cfg.HealthCheckInterval = 10 * time.Millisecond
	cfg.HealthCheckTimeout = 10 * time.Second
	cfg.DrainTimeout = 50 * time.Millisecond
	cfg.StopGrace = time.Second
	cfg.GreetTimeout = 100 * time.Millisecond
	cfg.FileServerURL = "http://dea.test:8080"
	return cfg
}

// node is a running DEA in a test.
type node struct {
	dea    *dea.DEA
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, valid after done
}

// stop ends Run and waits for it.
func (n *node) stop(t testing.TB) {
	t.Helper()
	n.cancel()
	select {
	case <-n.done:
		if n.err != nil {
			t.Errorf("Run: %v", n.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
}

// runDEA starts a DEA and waits until it listens on the bus. Without a
// CPU sampler in deps the DEA reports an idle host.
func runDEA(t testing.TB, b bus.Bus, cfg dea.Config, deps dea.Deps) *node {
	t.Helper()
	deps.Bus = b
	if deps.CPU == nil {
		// The host's real load would differ between DEAs by sampling
		// noise and blur placement order in tests.
		deps.CPU = dea.FixedCPU(0)
	}
	d, err := dea.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	hello := record(t, b, protocol.DEAHelloSubject)
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{dea: d, cancel: cancel, done: make(chan struct{})}
	go func() { n.err = d.Run(ctx); close(n.done) }()
	t.Cleanup(func() { cancel(); <-n.done })
	hello.wait("dea hello", 10*time.Second, func(m *bus.Msg) bool {
		return decodeAs[protocol.DEAHello](t, m).ID == d.ID()
	})
	return n
}

func newFake(t testing.TB, cfg fake.Config) *fake.Backend {
	t.Helper()
	b, err := fake.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// startMsg is a start message for app with the droplet at uri.
func startMsg(app string, index int, dr testDroplet, uri string, uris ...string) protocol.Start {
	return protocol.Start{
		Droplet: protocol.AppID(app), Index: index, Name: app, URIs: uris,
		SHA1: dr.sha1, ExecutableURI: uri, Version: dr.sha1[:8] + "-1",
		Limits: protocol.Limits{Mem: 128, Disk: 64, FDs: 256},
		Env:    []string{"GREETING=hello"},
		Services: []protocol.ServiceBinding{{
			Name: "db", Label: "postgresql", Plan: "free", Tags: []string{"sql"},
			Credentials: map[string]any{"uri": "postgres://x"},
		}},
	}
}

func publish(t testing.TB, b bus.Bus, subject string, v any) {
	t.Helper()
	if err := bus.PublishJSON(b, subject, v); err != nil {
		t.Fatal(err)
	}
}

func heartbeatState(t testing.TB, app protocol.AppID, index int, state string) func(*bus.Msg) bool {
	return func(m *bus.Msg) bool {
		hb := decodeAs[protocol.Heartbeat](t, m)
		for _, d := range hb.Droplets {
			if d.Droplet == app && d.Index == index && d.State == state {
				return true
			}
		}
		return false
	}
}

// instanceOf returns the instance id of app/index from a RUNNING heartbeat.
func instanceOf(t testing.TB, hbs *recorder, app protocol.AppID, index int) string {
	t.Helper()
	m := hbs.wait(fmt.Sprintf("%s/%d running", app, index), 20*time.Second, heartbeatState(t, app, index, protocol.StateRunning))
	for _, d := range decodeAs[protocol.Heartbeat](t, m).Droplets {
		if d.Droplet == app && d.Index == index {
			return d.Instance
		}
	}
	t.Fatal("unreachable")
	return ""
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// envOf returns the environment the fake backend gave the app process of
// the container handle.
func envOf(b *fake.Backend, handle string) []string {
	for _, r := range b.Runs() {
		if r.Handle == handle && r.ID == "app" {
			return r.Env
		}
	}
	return nil
}

func lookupEnv(env []string, k string) string {
	v, _ := warden.LookupEnv(env, k)
	return v
}

// metricValue sums every series of the metric name in reg.
func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func newMemBus() *membus.Server { return membus.NewServer(membus.DefaultConfig()) }
