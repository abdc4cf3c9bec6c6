package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/controller"
	"github.com/kiln-paas/kiln/controller/blobstore/memblob"
	"github.com/kiln-paas/kiln/controller/controllertest"
	"github.com/kiln-paas/kiln/controller/store/memstore"
	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/services/membroker"
)

// deaFiles is the fake DEA's file server: every instance has the same two
// logs.
func deaFiles(w http.ResponseWriter, r *http.Request) {
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
	c, err := controller.New(cfg, controller.Deps{Bus: conn, Store: st, Blobs: blobs, Stager: &controllertest.Stager{},
		Builtin: map[string]services.Broker{"memory": broker}})
	if err != nil {
		t.Fatal(err)
	}
	deaCfg := controllertest.DefaultDEAConfig()
	deaCfg.Files = http.HandlerFunc(deaFiles)
	controllertest.StartDEA(t, mb.Connect(), deaCfg)
	srv.Config.Handler = c.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	controllertest.Run(t, c)
	controllertest.WaitReady(t, conn, 5*time.Second)
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
