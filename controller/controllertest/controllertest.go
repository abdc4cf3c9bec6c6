// Package controllertest provides test doubles for code that drives a
// controller.Controller over the bus, in the spirit of net/http/httptest.
// It is meant for users' tests as much as for kiln's own: DEA is a fake DEA
// that runs no processes but speaks the DEA's side of the protocol
// (discover, start, stop, update, find, heartbeats and exits), records what
// the controller asked of it and lets a test wait for it (StartDEA ties
// one to a test, NewDEA and Close serve code without a testing.TB);
// Stager is a stager that packs an app's files into a droplet without
// running a buildpack; Run runs a controller for the length of a test and
// WaitReady waits until it has subscribed.
//
// For a whole kernel with real DEAs, router and health manager, use the
// kerneltest package instead.
package controllertest

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

// FileUser and FilePassword are the credentials a DEA hands out in its
// find replies and demands on its file server.
const (
	FileUser     = "u"
	FilePassword = "p"
)

// StartLine is the stdout line a DEA logs for an app when it starts one of
// its instances.
const StartLine = "instance started"

// ErrInvalidConfig is returned (wrapped) by DEAConfig.Validate.
var ErrInvalidConfig = errors.New("controllertest: invalid config")

// DEAConfig configures a DEA.
type DEAConfig struct {
	// ID is the DEA's id: it takes starts on dea.<ID>.start.
	ID string
	// Files serves the instances' files (paths /files/<instance>/<path>)
	// once the request carried FileUser and FilePassword; nil serves the
	// text "file <path>" for every path, and 404 for one ending in
	// /missing.
	Files http.Handler
}

// DefaultDEAConfig returns a configuration for a DEA with id "dea-1" and
// the default file server.
func DefaultDEAConfig() DEAConfig {
	return DEAConfig{ID: "dea-1"}
}

// Validate reports whether c is usable.
func (c DEAConfig) Validate() error {
	if c.ID == "" || strings.ContainsAny(c.ID, ". *>") {
		return fmt.Errorf("%w: DEA id %q is not one subject token", ErrInvalidConfig, c.ID)
	}
	return nil
}

// Instance is an instance a DEA runs.
type Instance struct {
	ID      string
	App     protocol.AppID
	Version string
	Index   int
	// State is protocol.StateRunning, or protocol.StateCrashed for an
	// instance whose start env held CRASH=1.
	State string
}

// Snapshot is what a DEA has been asked and runs at one moment.
type Snapshot struct {
	// BadStarts are the errors of start requests that did not decode.
	BadStarts []error
	// Starts, Stops and Updates are the requests received, oldest first.
	Starts  []protocol.Start
	Stops   []protocol.Stop
	Updates []protocol.Update
	// Instances are those running or crashed, not yet stopped, by id.
	Instances map[string]Instance
	// Fetched tells, by droplet SHA1, whether the last start of that
	// droplet downloaded it from its ExecutableURI with that hash.
	Fetched map[string]bool
}

// Running counts the app's instances of version in state RUNNING.
func (s Snapshot) Running(app protocol.AppID, version string) int {
	n := 0
	for _, i := range s.Instances {
		if i.App == app && i.Version == version && i.State == protocol.StateRunning {
			n++
		}
	}
	return n
}

// DEA is a fake DEA on a bus. It answers dea.discover with its hello; on
// dea.<id>.start it downloads the droplet as a real DEA would and, when
// the hash matches, runs the instance: RUNNING, reported by a heartbeat and
// a StartLine log line, or, when the start env holds CRASH=1, CRASHED and
// reported by a droplet.exited crash. It stops what dea.stop matches
// (publishing the exits), records dea.update and answers dea.find.droplet
// with stats and its file server's address.
type DEA struct {
	id     string
	b      bus.Bus
	files  *httptest.Server
	subs   []bus.Subscription
	report func(error) // told of requests the DEA cannot decode; nil = none

	mu        sync.Mutex
	silent    bool
	seq       int
	bad       []error
	starts    []protocol.Start
	stops     []protocol.Stop
	updates   []protocol.Update
	instances map[string]Instance
	fetched   map[string]bool
	changed   chan struct{} // closed and replaced on every change
}

// StartDEA starts a DEA on b for a test: it stops when tb's test ends, it
// fails tb when cfg is invalid or the DEA cannot subscribe, and it reports
// a start request it cannot decode as a test error.
func StartDEA(tb testing.TB, b bus.Bus, cfg DEAConfig) *DEA {
	tb.Helper()
	d, err := NewDEA(b, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	d.mu.Lock()
	d.report = func(err error) { tb.Errorf("controllertest: DEA %s: %v", d.id, err) }
	d.mu.Unlock()
	tb.Cleanup(func() { _ = d.Close() })
	return d
}

// NewDEA starts a DEA on b; Close stops it. Use StartDEA in a test.
func NewDEA(b bus.Bus, cfg DEAConfig) (*DEA, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &DEA{id: cfg.ID, b: b, instances: map[string]Instance{}, fetched: map[string]bool{}, changed: make(chan struct{})}
	files := cfg.Files
	if files == nil {
		files = http.HandlerFunc(echoFile)
	}
	d.files = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != FileUser || p != FilePassword {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		files.ServeHTTP(w, r)
	}))
	for subj, h := range map[string]bus.Handler{
		protocol.DEADiscover:           d.onDiscover,
		protocol.DEAStartSubject(d.id): d.onStart,
		protocol.DEAStop:               d.onStop,
		protocol.DEAUpdate:             d.onUpdate,
		protocol.DEAFindDroplet:        d.onFind,
	} {
		sub, err := b.Subscribe(subj, h)
		if err != nil {
			_ = d.Close()
			return nil, fmt.Errorf("controllertest: DEA %s: subscribe %s: %w", d.id, subj, err)
		}
		d.subs = append(d.subs, sub)
	}
	if err := b.Flush(context.Background()); err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("controllertest: DEA %s: flush: %w", d.id, err)
	}
	return d, nil
}

// Close unsubscribes the DEA and stops its file server. It does not close
// the bus.
func (d *DEA) Close() error {
	var errs []error
	for _, sub := range d.subs {
		errs = append(errs, sub.Unsubscribe())
	}
	d.files.Close()
	return errors.Join(errs...)
}

// echoFile is the default file server: "file <path>", or 404 for a path
// ending in /missing.
func echoFile(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/missing") {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	fmt.Fprintf(w, "file %s", r.URL.Path)
}

// ID returns the DEA's id.
func (d *DEA) ID() string { return d.id }

// SetSilent makes the DEA ignore (silent) or answer dea.discover.
func (d *DEA) SetSilent(silent bool) {
	d.mu.Lock()
	d.silent = silent
	d.mu.Unlock()
}

// Remove drops the instance id without a word on the bus, as if it had
// vanished, and reports whether the DEA ran it; a test then reports what
// it likes, such as a crash.
func (d *DEA) Remove(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.instances[id]
	delete(d.instances, id)
	if ok {
		d.notify()
	}
	return ok
}

// Snapshot returns a copy of what the DEA has been asked and runs.
func (d *DEA) Snapshot() Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.snapshot()
}

func (d *DEA) snapshot() Snapshot {
	s := Snapshot{
		BadStarts: slices.Clone(d.bad),
		Starts:    slices.Clone(d.starts),
		Stops:     slices.Clone(d.stops),
		Updates:   slices.Clone(d.updates),
		Instances: make(map[string]Instance, len(d.instances)),
		Fetched:   make(map[string]bool, len(d.fetched)),
	}
	for k, v := range d.instances {
		s.Instances[k] = v
	}
	for k, v := range d.fetched {
		s.Fetched[k] = v
	}
	return s
}

// WaitFor checks cond on every change of the DEA until it holds or ctx
// ends, and returns the snapshot it was last checked on with whether it
// held.
func (d *DEA) WaitFor(ctx context.Context, cond func(Snapshot) bool) (Snapshot, bool) {
	for {
		d.mu.Lock()
		s := d.snapshot()
		ch := d.changed
		d.mu.Unlock()
		if cond(s) {
			return s, true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return s, false
		}
	}
}

// notify wakes WaitFor; the caller holds d.mu.
func (d *DEA) notify() {
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *DEA) onDiscover(m *bus.Msg) {
	d.mu.Lock()
	silent := d.silent
	d.mu.Unlock()
	if silent {
		return
	}
	_ = bus.RespondJSON(d.b, m, protocol.DEAHello{ID: d.id, IP: "127.0.0.1", Port: 1, Version: 0.99})
}

func (d *DEA) onStart(m *bus.Msg) {
	s, err := protocol.Decode[protocol.Start](m.Data)
	if err != nil {
		err = fmt.Errorf("bad start: %w", err)
		d.mu.Lock()
		d.bad = append(d.bad, err)
		report := d.report
		d.notify()
		d.mu.Unlock()
		if report != nil {
			report(err)
		}
		return
	}
	fetched := fetch(s.ExecutableURI, s.SHA1)
	crash := slices.Contains(s.Env, "CRASH=1")
	d.mu.Lock()
	d.starts = append(d.starts, s)
	d.fetched[s.SHA1] = fetched
	d.seq++
	inst := Instance{ID: fmt.Sprintf("%s-i%d", d.id, d.seq), App: s.Droplet, Version: s.Version, Index: s.Index, State: protocol.StateRunning}
	if crash {
		inst.State = protocol.StateCrashed
	}
	d.instances[inst.ID] = inst
	d.notify()
	d.mu.Unlock()
	if !fetched {
		return
	}
	if crash {
		_ = bus.PublishJSON(d.b, protocol.DropletExited, protocol.Exited{Droplet: s.Droplet, Version: s.Version, Instance: inst.ID, Index: s.Index,
			Reason: protocol.ReasonCrashed, CrashTimestamp: time.Now().Unix()})
		return
	}
	d.heartbeat()
	_ = bus.PublishJSON(d.b, protocol.LogSubject(s.Droplet), protocol.LogLine{App: s.Droplet, Instance: inst.ID, Index: s.Index,
		Source: protocol.SourceApp, Stream: "stdout", Timestamp: time.Now().UnixNano(), Line: StartLine})
}

// fetch downloads a droplet and reports whether it has the given SHA1.
func fetch(uri, sum string) bool {
	resp, err := http.Get(uri)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	h := sha1.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return false
	}
	return resp.StatusCode == http.StatusOK && hex.EncodeToString(h.Sum(nil)) == sum
}

func (d *DEA) heartbeat() {
	d.mu.Lock()
	hb := protocol.Heartbeat{DEA: d.id}
	for _, i := range d.instances {
		hb.Droplets = append(hb.Droplets, protocol.InstanceHeartbeat{Droplet: i.App, Version: i.Version, Instance: i.ID, Index: i.Index,
			State: i.State, StateTimestamp: float64(time.Now().Unix())})
	}
	d.mu.Unlock()
	_ = bus.PublishJSON(d.b, protocol.DEAHeartbeat, hb)
}

func (d *DEA) onStop(m *bus.Msg) {
	f, err := protocol.Decode[protocol.Stop](m.Data)
	if err != nil {
		return
	}
	d.mu.Lock()
	d.stops = append(d.stops, f)
	var gone []Instance
	for id, i := range d.instances {
		if f.Match(i.App, i.Version, i.ID, i.Index, i.State) {
			delete(d.instances, id)
			gone = append(gone, i)
		}
	}
	d.notify()
	d.mu.Unlock()
	for _, i := range gone {
		_ = bus.PublishJSON(d.b, protocol.DropletExited, protocol.Exited{Droplet: i.App, Version: i.Version, Instance: i.ID, Index: i.Index, Reason: protocol.ReasonStopped})
	}
}

func (d *DEA) onUpdate(m *bus.Msg) {
	u, err := protocol.Decode[protocol.Update](m.Data)
	if err != nil {
		return
	}
	d.mu.Lock()
	d.updates = append(d.updates, u)
	d.notify()
	d.mu.Unlock()
}

func (d *DEA) onFind(m *bus.Msg) {
	var q protocol.FindDroplet
	if json.Unmarshal(m.Data, &q) != nil {
		return
	}
	d.mu.Lock()
	var replies []protocol.FindDropletReply
	for _, i := range d.instances {
		if !q.Match(i.App, i.Version, i.ID, i.Index, i.State) {
			continue
		}
		r := protocol.FindDropletReply{DEA: d.id, Version: i.Version, Droplet: i.App, Instance: i.ID, Index: i.Index, State: i.State,
			StateTimestamp: float64(time.Now().Unix()), FileURI: d.files.URL + "/files/" + i.ID + "/",
			Credentials: []string{FileUser, FilePassword}, Staged: i.ID}
		if q.IncludeStats {
			r.Stats = &protocol.InstanceStats{Name: "x", Host: "127.0.0.1", Port: 5000, Uptime: 3, MemQuota: 64 << 20,
				Usage: &protocol.Usage{CPU: 1.5, Mem: 2048, Disk: 4096}}
		}
		replies = append(replies, r)
	}
	d.mu.Unlock()
	for _, r := range replies {
		_ = bus.RespondJSON(d.b, m, r)
	}
}

// Runner is what has a Run loop, such as a controller.Controller.
type Runner interface {
	Run(ctx context.Context) error
}

// Run runs r.Run in a goroutine until tb's test ends, then cancels it,
// waits for it to return and fails tb if it returned an error.
func Run(tb testing.TB, r Runner) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("controllertest: Run: %v", err)
		}
	})
}

// WaitReady waits until a controller whose Run was started on the bus
// behind b has subscribed (it answers the bulk credentials request), or
// fails tb after timeout.
func WaitReady(tb testing.TB, b bus.Bus, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		var creds protocol.BulkCredentials
		err := bus.RequestJSON(ctx, b, protocol.BulkCredentialsSubject, struct{}{}, &creds)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("controllertest: controller did not subscribe within %v: %v", timeout, err)
		}
	}
}
