package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller"
	"github.com/kiln-paas/kiln/controller/blobstore/memblob"
	"github.com/kiln-paas/kiln/controller/store/memstore"
	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/services/membroker"
	"github.com/kiln-paas/kiln/staging"
	"github.com/kiln-paas/kiln/staging/droplet"
)

// tarStager stages a package by packing its files into a real droplet;
// a package holding a file named FAIL fails staging.
type tarStager struct{}

func (tarStager) Stage(_ context.Context, req staging.Request) (staging.Result, error) {
	zr, err := zip.NewReader(req.Package, req.PackageSize)
	if err != nil {
		return staging.Result{}, fmt.Errorf("%w: %v", staging.ErrBadPackage, err)
	}
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, zf := range zr.File {
		if zf.Name == "FAIL" {
			fmt.Fprintln(req.LogWriter, "-----> FAIL file found")
			return staging.Result{}, &staging.CompileError{Buildpack: "test", ExitStatus: 1, Reason: "FAIL file"}
		}
		rc, err := zf.Open()
		if err != nil {
			return staging.Result{}, err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return staging.Result{}, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: zf.Name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return staging.Result{}, err
		}
		if _, err := tw.Write(b); err != nil {
			return staging.Result{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return staging.Result{}, err
	}
	fmt.Fprintf(req.LogWriter, "-----> test buildpack: %d files\n", len(zr.File))
	sum, err := droplet.Pack(req.Droplet, droplet.Info{DetectedBuildpack: "test", StartCommand: "./run", Stack: "linux"}, &tb)
	if err != nil {
		return staging.Result{}, err
	}
	return staging.Result{Buildpack: "test", StartCommand: "./run", Stack: "linux", DropletSHA1: sum.SHA1, DropletSize: sum.Size}, nil
}

// fakeDEA runs "instances" on the bus: each start becomes a RUNNING
// instance reported by heartbeat, or a crash when the app's env holds
// CRASH=1. It answers stops, finds (with stats and a file server) and
// discovery.
type fakeDEA struct {
	t     testing.TB
	id    string
	b     bus.Bus
	files *httptest.Server

	mu        sync.Mutex
	seq       int
	instances map[string]*fakeInstance
}

type fakeInstance struct {
	id, version, state string
	app                protocol.AppID
	index              int
}

func newFakeDEA(t testing.TB, b bus.Bus) *fakeDEA {
	d := &fakeDEA{t: t, id: "dea-1", b: b, instances: map[string]*fakeInstance{}}
	d.files = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/logs"), strings.HasSuffix(r.URL.Path, "/logs/"):
			fmt.Fprint(w, "stdout.log   12B\nstderr.log   9B\n")
		case strings.HasSuffix(r.URL.Path, "/logs/stdout.log"):
			fmt.Fprint(w, "hello stdout\n")
		case strings.HasSuffix(r.URL.Path, "/logs/stderr.log"):
			fmt.Fprint(w, "oh stderr\n")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(d.files.Close)
	for subj, h := range map[string]bus.Handler{
		protocol.DEADiscover:           d.onDiscover,
		protocol.DEAStartSubject(d.id): d.onStart,
		protocol.DEAStop:               d.onStop,
		protocol.DEAFindDroplet:        d.onFind,
	} {
		sub, err := b.Subscribe(subj, h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *fakeDEA) onDiscover(m *bus.Msg) {
	_ = bus.RespondJSON(d.b, m, protocol.DEAHello{ID: d.id, IP: "127.0.0.1", Port: 1, Version: 0.99})
}

func (d *fakeDEA) onStart(m *bus.Msg) {
	s, err := protocol.Decode[protocol.Start](m.Data)
	if err != nil {
		d.t.Errorf("fake dea: bad start: %v", err)
		return
	}
	crash := false
	for _, e := range s.Env {
		crash = crash || e == "CRASH=1"
	}
	d.mu.Lock()
	d.seq++
	inst := &fakeInstance{id: fmt.Sprintf("%s-i%d", d.id, d.seq), version: s.Version, app: s.Droplet, index: s.Index, state: protocol.StateRunning}
	if !crash {
		d.instances[inst.id] = inst
	}
	d.mu.Unlock()
	if crash {
		_ = bus.PublishJSON(d.b, protocol.DropletExited, protocol.Exited{Droplet: s.Droplet, Version: s.Version, Instance: inst.id, Index: s.Index,
			Reason: protocol.ReasonCrashed, CrashTimestamp: time.Now().Unix()})
		return
	}
	d.heartbeat()
	_ = bus.PublishJSON(d.b, protocol.LogSubject(s.Droplet), protocol.LogLine{App: s.Droplet, Instance: inst.id, Index: s.Index,
		Source: "App", Stream: "stdout", Timestamp: time.Now().UnixNano(), Line: "instance started"})
}

func (d *fakeDEA) heartbeat() {
	d.mu.Lock()
	hb := protocol.Heartbeat{DEA: d.id}
	for _, i := range d.instances {
		hb.Droplets = append(hb.Droplets, protocol.InstanceHeartbeat{Droplet: i.app, Version: i.version, Instance: i.id, Index: i.index,
			State: i.state, StateTimestamp: float64(time.Now().Unix())})
	}
	d.mu.Unlock()
	_ = bus.PublishJSON(d.b, protocol.DEAHeartbeat, hb)
}

func (d *fakeDEA) onStop(m *bus.Msg) {
	f, err := protocol.Decode[protocol.Stop](m.Data)
	if err != nil {
		return
	}
	d.mu.Lock()
	var gone []*fakeInstance
	for id, i := range d.instances {
		if f.Match(i.app, i.version, i.id, i.index, i.state) {
			delete(d.instances, id)
			gone = append(gone, i)
		}
	}
	d.mu.Unlock()
	for _, i := range gone {
		_ = bus.PublishJSON(d.b, protocol.DropletExited, protocol.Exited{Droplet: i.app, Version: i.version, Instance: i.id, Index: i.index, Reason: protocol.ReasonStopped})
	}
}

func (d *fakeDEA) onFind(m *bus.Msg) {
	var q protocol.FindDroplet
	if json.Unmarshal(m.Data, &q) != nil {
		return
	}
	d.mu.Lock()
	var replies []protocol.FindDropletReply
	for _, i := range d.instances {
		if q.Match(i.app, i.version, i.id, i.index, i.state) {
			r := protocol.FindDropletReply{DEA: d.id, Version: i.version, Droplet: i.app, Instance: i.id, Index: i.index, State: i.state,
				StateTimestamp: float64(time.Now().Unix()), FileURI: d.files.URL + "/files/" + i.id + "/", Credentials: []string{"u", "p"}, Staged: i.id}
			if q.IncludeStats {
				r.Stats = &protocol.InstanceStats{Name: "x", Host: "127.0.0.1", Port: 5000, Uptime: 3, MemQuota: 64 << 20,
					Usage: &protocol.Usage{CPU: 1.5, Mem: 2048, Disk: 4096}}
			}
			replies = append(replies, r)
		}
	}
	d.mu.Unlock()
	for _, r := range replies {
		_ = bus.RespondJSON(d.b, m, r)
	}
}

// kernel is a controller on membus, memstore and memblob behind httptest,
// with a fake DEA and the in-memory service broker.
type kernel struct {
	srv *httptest.Server
	c   *controller.Controller
}

func newKernel(t *testing.T) *kernel {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	cfg := controller.DefaultConfig()
	cfg.ExternalURL = "http://" + srv.Listener.Addr().String()
	cfg.BcryptCost = bcrypt.MinCost
	cfg.Admins = []string{"admin@x.io"}
	cfg.DiscoverTimeout = 300 * time.Millisecond
	cfg.DiscoverAttempts = 2
	cfg.FindTimeout = 300 * time.Millisecond
	cfg.HeartbeatTTL = time.Minute
	cfg.RolloutTimeout = 5 * time.Second
	cfg.TokenKey = []byte("test-key")
	cfg.ProvisionPoll = 10 * time.Millisecond
	cfg.TempDir = t.TempDir()
	mb := membus.NewServer(membus.DefaultConfig())
	t.Cleanup(mb.Close)
	conn := mb.Connect()
	st, err := memstore.New(memstore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := memblob.New(memblob.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	broker, err := membroker.New(membroker.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	c, err := controller.New(cfg, controller.Deps{Bus: conn, Store: st, Blobs: blobs, Stager: tarStager{},
		Builtin: map[string]services.Broker{"memory": broker}})
	if err != nil {
		t.Fatal(err)
	}
	newFakeDEA(t, mb.Connect())
	srv.Config.Handler = c.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller Run: %v", err)
		}
	})
	// Wait until Run subscribed: the bulk credentials request is answered.
	deadline := time.Now().Add(5 * time.Second)
	for {
		rctx, rcancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		var creds protocol.BulkCredentials
		err := bus.RequestJSON(rctx, conn, protocol.BulkCredentialsSubject, struct{}{}, &creds)
		rcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("controller did not subscribe: %v", err)
		}
	}
	if err := c.CreateUser(context.Background(), "admin@x.io", "admin-pw"); err != nil {
		t.Fatal(err)
	}
	return &kernel{srv: srv, c: c}
}

// session runs the CLI in-process with its own KILN_HOME.
type session struct {
	t    *testing.T
	hc   *http.Client
	home string
	env  map[string]string
}

func newSession(t *testing.T, k *kernel) *session {
	s := &session{t: t, home: t.TempDir(), env: map[string]string{}}
	if k != nil {
		s.hc = k.srv.Client()
	}
	s.env["KILN_HOME"] = s.home
	return s
}

// result is one CLI run.
type result struct {
	code        int
	out, stderr string
}

func (s *session) run(args ...string) result {
	s.t.Helper()
	var out, errb bytes.Buffer
	k := &cli{in: strings.NewReader(""), out: &out, err: &errb, env: func(key string) string { return s.env[key] }, hc: s.hc, poll: 10 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := k.run(ctx, args)
	return result{code: code, out: out.String(), stderr: errb.String()}
}

// watchWriter cancels a run once its output holds want.
type watchWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	want   string
	cancel context.CancelFunc
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.cancel()
	}
	return n, err
}

// runUntil runs args until their stdout holds want (then interrupts them
// as Ctrl-C would) or 10 s pass.
func (s *session) runUntil(want string, args ...string) result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := &watchWriter{want: want, cancel: cancel}
	var errb bytes.Buffer
	k := &cli{in: strings.NewReader(""), out: out, err: &errb, env: func(key string) string { return s.env[key] }, hc: s.hc, poll: 10 * time.Millisecond}
	code := k.run(ctx, args)
	out.mu.Lock()
	defer out.mu.Unlock()
	return result{code: code, out: out.buf.String(), stderr: errb.String()}
}

// must runs args and fails the test unless the exit code is want.
func (s *session) must(want int, args ...string) result {
	s.t.Helper()
	r := s.run(args...)
	if r.code != want {
		s.t.Fatalf("kiln %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, want, r.out, r.stderr)
	}
	return r
}

// json runs args with --json, expects success and decodes stdout into v.
func (s *session) json(v any, args ...string) {
	s.t.Helper()
	r := s.must(exitOK, append(args, "--json")...)
	if err := json.Unmarshal([]byte(r.out), v); err != nil {
		s.t.Fatalf("kiln %s --json: %v\n%s", strings.Join(args, " "), err, r.out)
	}
}

// appDir writes files to a new temporary directory.
func appDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
