package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/controller/controllertest"
)

// loggedIn returns a session targeting k, logged in as a new user.
func loggedIn(t *testing.T, k *kernel, email string) *session {
	t.Helper()
	s := newSession(t, k)
	s.must(exitOK, "target", k.srv.URL)
	s.must(exitOK, "register", email, "--password", "pw")
	return s
}

func TestTargetRegisterLoginConfig(t *testing.T) {
	t.Parallel()
	k := newKernel(t)
	s := newSession(t, k)

	s.must(exitUsage, "apps") // no target yet
	s.must(exitOK, "target", strings.TrimPrefix(k.srv.URL, "http://")+"/")
	var tgt map[string]string
	s.json(&tgt, "target")
	if tgt["target"] != k.srv.URL {
		t.Errorf("target = %q, want %q", tgt["target"], k.srv.URL)
	}
	s.must(exitForbidden, "apps") // not logged in

	// No password and a closed stdin: a usage error, never a hang.
	r := s.must(exitUsage, "register", "bob@x.io")
	if !strings.Contains(r.stderr, "--password") {
		t.Errorf("stderr does not name --password: %s", r.stderr)
	}
	s.must(exitOK, "register", "bob@x.io", "--password", "pw")
	s.must(exitConflict, "register", "bob@x.io", "--password", "pw")

	// register logged in; the config holds the token under KILN_HOME.
	fi, err := os.Stat(filepath.Join(s.home, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config mode = %v, want 0600", fi.Mode().Perm())
	}
	cfg, err := loadConfig(s.home)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Target != k.srv.URL || cfg.Auth[k.srv.URL].User != "bob@x.io" || cfg.Auth[k.srv.URL].Token == "" {
		t.Errorf("config = %+v", cfg)
	}
	var info client.Info
	s.json(&info, "info")
	if info.User != "bob@x.io" {
		t.Errorf("info user = %q", info.User)
	}

	s.must(exitOK, "logout")
	s.must(exitForbidden, "apps")
	s.must(exitForbidden, "login", "bob@x.io", "--password", "wrong")
	s.must(exitForbidden, "login", "nobody@x.io", "--password", "pw")
	s.must(exitUsage, "login", "bob@x.io")
	s.must(exitOK, "login", "--email", "bob@x.io", "--password", "pw")
	s.must(exitOK, "passwd", "--password", "pw2")
	s.must(exitOK, "logout")
	s.must(exitForbidden, "login", "bob@x.io", "--password", "pw")
	s.must(exitOK, "login", "bob@x.io", "--password", "pw2")

	// KILN_TARGET and --target override the stored target.
	s.env["KILN_TARGET"] = "http://127.0.0.1:1"
	if r := s.run("info"); r.code != exitError {
		t.Errorf("info against a dead KILN_TARGET: exit %d, want %d", r.code, exitError)
	}
	s.must(exitOK, "info", "--target", k.srv.URL)
	delete(s.env, "KILN_TARGET")

	// Admin-only commands are forbidden to others; an admin can list
	// and delete users.
	s.must(exitForbidden, "users")
	admin := newSession(t, k)
	admin.must(exitOK, "target", k.srv.URL)
	admin.must(exitOK, "login", "admin@x.io", "--password", "admin-pw")
	var users []client.User
	admin.json(&users, "users")
	if !slices.ContainsFunc(users, func(u client.User) bool { return u.Email == "bob@x.io" }) {
		t.Errorf("users = %+v, want bob", users)
	}
	admin.must(exitUsage, "delete-user", "bob@x.io") // no --force, no terminal
	admin.must(exitOK, "delete-user", "bob@x.io", "--force")
	admin.must(exitNotFound, "delete-user", "bob@x.io", "--force")
}

func TestPushAndManageApp(t *testing.T) {
	t.Parallel()
	k := newKernel(t)
	s := loggedIn(t, k, "alice@x.io")
	var apps []client.App
	s.json(&apps, "apps")
	if len(apps) != 0 {
		t.Fatalf("apps = %+v, want none", apps)
	}

	dir := controllertest.AppDir(t, map[string]string{"index.html": "<h1>hi</h1>", "css/site.css": "body{}"})
	r := s.must(exitOK, "push", "web", "--path", dir, "--url", "web.vcap.me", "--instances", "2", "--mem", "64M",
		"--env", "A=1", "--env", "B=two", "--health-check-type", "http", "--health-check-http-endpoint", "/health", "--timeout", "20")
	for _, want := range []string{"Uploading web", "test buildpack: 2 files", "web is running"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("push output lacks %q:\n%s", want, r.out)
		}
	}
	var a client.App
	s.json(&a, "app", "web")
	want := client.App{Name: "web", URIs: []string{"web.vcap.me"}, Instances: 2, State: "STARTED", Env: []string{"A=1", "B=two"}}
	got := client.App{Name: a.Name, URIs: a.URIs, Instances: a.Instances, State: a.State, Env: a.Env}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("app (-want +got):\n%s", d)
	}
	if a.Resources.Memory != 64 || a.Running() != 2 {
		t.Errorf("memory %d running %d, want 64 and 2", a.Resources.Memory, a.Running())
	}
	cl := s.rawClient(t, k)
	var hc healthCheck
	if err := (&cli{env: func(string) string { return "" }, target: k.srv.URL}).rawCall(t.Context(), cl, "GET", []string{"apps", "web"}, nil, &hc); err != nil {
		t.Fatal(err)
	}
	if hc.Type == nil || *hc.Type != "http" || hc.Endpoint == nil || *hc.Endpoint != "/health" || hc.Timeout == nil || *hc.Timeout != 20 {
		t.Errorf("health check = %+v", hc)
	}

	s.json(&apps, "apps")
	if len(apps) != 1 || apps[0].Name != "web" || health(apps[0]) != "RUNNING" {
		t.Errorf("apps = %+v", apps)
	}
	if r := s.must(exitOK, "apps"); !strings.Contains(r.out, "RUNNING") || !strings.Contains(r.out, "web.vcap.me") {
		t.Errorf("apps table:\n%s", r.out)
	}

	// env, env-add, env-del.
	s.must(exitOK, "env-add", "web", "C=3", "A=one")
	s.must(exitUsage, "env-add", "web", "novalue")
	s.must(exitOK, "env-del", "web", "B")
	s.must(exitNotFound, "env-del", "web", "NOPE")
	var env map[string]string
	s.json(&env, "env", "web")
	if d := cmp.Diff(map[string]string{"A": "one", "C": "3"}, env); d != "" {
		t.Errorf("env (-want +got):\n%s", d)
	}

	// map, unmap, and a URL another app holds.
	s.must(exitOK, "map", "web", "www.vcap.me")
	s.must(exitOK, "unmap", "web", "web.vcap.me")
	s.must(exitNotFound, "unmap", "web", "web.vcap.me")
	s.json(&a, "app", "web")
	if d := cmp.Diff([]string{"www.vcap.me"}, a.URIs); d != "" {
		t.Errorf("uris (-want +got):\n%s", d)
	}
	s.must(exitOK, "push", "other", "--path", dir, "--no-start", "--url", "other.vcap.me")
	s.must(exitConflict, "map", "other", "www.vcap.me")

	// instances, mem.
	s.must(exitOK, "instances", "web", "+1")
	s.json(&a, "app", "web")
	if a.Instances != 3 {
		t.Errorf("instances = %d, want 3", a.Instances)
	}
	s.must(exitOK, "--json", "instances", "web", "-2")
	s.must(exitUsage, "instances", "web", "-5")
	s.must(exitUsage, "instances", "web", "many")
	var insts []client.Instance
	s.json(&insts, "instances", "web")
	s.must(exitOK, "mem", "web", "128M")
	var mem map[string]int
	s.json(&mem, "mem", "web")
	if mem["memory"] != 128 {
		t.Errorf("mem = %v", mem)
	}
	s.must(exitUsage, "mem", "web", "lots")

	var stats map[string]client.InstanceStats
	s.json(&stats, "stats", "web")
	s.must(exitOK, "stats", "web")
	var crashes []client.Crash
	s.json(&crashes, "crashes", "web")
	var logs []struct{ Line string }
	s.json(&logs, "logs", "web")
	if !slices.ContainsFunc(logs, func(l struct{ Line string }) bool { return l.Line == "instance started" }) {
		t.Errorf("logs = %+v", logs)
	}
	if r := s.runUntil("instance started", "logs", "web", "--tail"); r.code != exitOK || !strings.Contains(r.out, "[APP/") {
		t.Errorf("logs --tail: exit %d\n%s%s", r.code, r.out, r.stderr)
	}
	if r := s.must(exitOK, "crashlogs", "web", "--instance", "0"); !strings.Contains(r.out, "==== logs/stdout.log ====\nhello stdout") {
		t.Errorf("crashlogs:\n%s", r.out)
	}
	s.must(exitNotFound, "crashlogs", "web")
	if r := s.must(exitOK, "files", "web", "logs/stderr.log"); r.out != "oh stderr\n" {
		t.Errorf("files = %q", r.out)
	}
	s.must(exitNotFound, "files", "web", "no/such/file")
	if r := s.must(exitOK, "logs", "web", "--staging"); !strings.Contains(r.out, "test buildpack") {
		t.Errorf("staging log:\n%s", r.out)
	}
	var events []client.Event
	s.json(&events, "events", "web")
	if !slices.ContainsFunc(events, func(e client.Event) bool { return e.Type == "app-created" }) {
		t.Errorf("events = %+v, want app-created", events)
	}
	if r := s.must(exitOK, "events", "web"); !strings.Contains(r.out, "app-created") {
		t.Errorf("events table:\n%s", r.out)
	}
	var rts map[string]client.Runtime
	s.json(&rts, "runtimes")
	s.must(exitOK, "stacks")
	var bps []buildpack
	s.json(&bps, "buildpacks")
	if !slices.ContainsFunc(bps, func(b buildpack) bool { return b.Name == "static" }) {
		t.Errorf("buildpacks = %+v", bps)
	}

	// stop, start, restart.
	s.must(exitOK, "stop", "web")
	s.must(exitOK, "start", "web")
	s.must(exitOK, "restart", "web")
	s.json(&a, "app", "web")
	if a.State != "STARTED" {
		t.Errorf("state = %s", a.State)
	}

	// Not found, no prompt, delete.
	s.must(exitNotFound, "app", "nosuch")
	s.must(exitNotFound, "start", "nosuch")
	s.must(exitNotFound, "delete", "nosuch", "--force")
	s.must(exitUsage, "delete", "web")
	s.must(exitOK, "delete", "web", "--force")
	s.must(exitNotFound, "app", "web")

	// Another user cannot see alice's apps.
	eve := loggedIn(t, k, "eve@x.io")
	eve.must(exitNotFound, "app", "other")
}

// rawClient is a client of k logged in with the session's token.
func (s *session) rawClient(t *testing.T, k *kernel) *client.Client {
	t.Helper()
	cfg, err := loadConfig(s.home)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(k.srv.URL, k.srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	cl.SetToken(cfg.Auth[k.srv.URL].Token)
	return cl
}

func TestPushFailures(t *testing.T) {
	t.Parallel()
	k := newKernel(t)
	s := loggedIn(t, k, "carol@x.io")
	r := s.must(exitStaging, "push", "bad", "--path", controllertest.AppDir(t, map[string]string{"FAIL": "x"}))
	if !strings.Contains(r.out, "FAIL file found") {
		t.Errorf("staging log not streamed:\n%s", r.out)
	}
	s.must(exitStartFailed, "push", "crashy", "--path", controllertest.AppDir(t, map[string]string{"a": "b"}), "--env", "CRASH=1")
	var cs []client.Crash
	s.json(&cs, "crashes", "crashy")
	if len(cs) == 0 {
		t.Fatal("no crash recorded")
	}
	s.must(exitUsage, "push")
	s.must(exitUsage, "push", "x", "--path", filepath.Join(t.TempDir(), "missing"))
	s.must(exitUsage, "push", "x", "--health-check-type", "ping")
	s.must(exitUsage, "push", "x", "--mem", "huge")
	s.must(exitUsage, "push", "x", "--env", "NOEQUALS")
	s.must(exitUsage, "push", "x", "--no-manifest", "--manifest", filepath.Join(t.TempDir(), "m.yml"), "extra")
}

func TestPushManifestAndRollback(t *testing.T) {
	t.Parallel()
	k := newKernel(t)
	s := loggedIn(t, k, "dan@x.io")
	dir := controllertest.AppDir(t, map[string]string{
		"manifest.yml": `memory: 64M
env: {SHARED: yes}
applications:
- name: front
  path: front
  instances: 2
  routes: [{route: front.vcap.me}]
  health-check-type: port
  timeout: 30
- name: back
  path: back
  no-route: true
  command: ./run-back
  env: {ROLE: back}
`,
		"front/index.html": "v1",
		"back/run-back":    "#!/bin/sh\n",
	})
	s.must(exitOK, "push", "--manifest", filepath.Join(dir, "manifest.yml"))
	var apps []client.App
	s.json(&apps, "apps")
	got := map[string]string{}
	for _, a := range apps {
		got[a.Name] = strings.Join(a.URIs, ",") + "|" + strings.Join(a.Env, ",") + "|" + a.State
	}
	want := map[string]string{"front": "front.vcap.me|SHARED=yes|STARTED", "back": "|ROLE=back,SHARED=yes|STARTED"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("apps (-want +got):\n%s", d)
	}
	s.must(exitUsage, "push", "--manifest", filepath.Join(dir, "manifest.yml"), "--instances", "3")
	s.must(exitUsage, "push", "nosuch", "--manifest", filepath.Join(dir, "manifest.yml"))

	// A second push of changed bits keeps the old droplet for rollback.
	if err := os.WriteFile(filepath.Join(dir, "front", "index.html"), []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.must(exitOK, "push", "front", "--manifest", filepath.Join(dir, "manifest.yml"))
	var ds []client.Droplet
	s.json(&ds, "droplets", "front")
	if len(ds) != 2 || !ds[0].Current {
		t.Fatalf("droplets = %+v, want 2 with the newest current", ds)
	}
	s.must(exitOK, "rollback", "front")
	s.json(&ds, "droplets", "front")
	if len(ds) != 2 || !slices.ContainsFunc(ds, func(d client.Droplet) bool { return d.Current && d.Hash != "" }) {
		t.Errorf("droplets after rollback = %+v", ds)
	}
	s.must(exitNotFound, "rollback", "front", "ffffffff")

	// update uploads again from a path.
	s.must(exitOK, "update", "back", "--path", filepath.Join(dir, "back"))
}

func TestServices(t *testing.T) {
	t.Parallel()
	k := newKernel(t)
	s := loggedIn(t, k, "erin@x.io")
	// The repository's static example app.
	if r := s.must(exitOK, "push", "app", "--path", filepath.Join("..", "apps", "static"), "--no-start"); !strings.Contains(r.out, "(not started)") {
		t.Errorf("push --no-start:\n%s", r.out)
	}
	var svcs struct {
		Offerings []offering       `json:"offerings"`
		Services  []client.Service `json:"services"`
	}
	s.json(&svcs, "services")
	if len(svcs.Offerings) != 1 || svcs.Offerings[0].Vendor != "memory" || len(svcs.Services) != 0 {
		t.Fatalf("services = %+v", svcs)
	}
	s.must(exitNotFound, "create-service", "nosuch")
	s.must(exitOK, "create-service", "memory", "cache", "--bind", "app")
	s.must(exitConflict, "create-service", "memory", "cache")
	s.json(&svcs, "services")
	if len(svcs.Services) != 1 || svcs.Services[0].Name != "cache" {
		t.Fatalf("services = %+v", svcs)
	}
	var a client.App
	s.json(&a, "app", "app")
	if d := cmp.Diff([]string{"cache"}, a.Services); d != "" {
		t.Errorf("bound (-want +got):\n%s", d)
	}
	s.must(exitOK, "unbind-service", "cache", "app")
	s.must(exitNotFound, "unbind-service", "cache", "app")
	s.must(exitNotFound, "bind-service", "nosuch", "app")
	s.must(exitOK, "bind-service", "cache", "app")
	s.must(exitConflict, "delete-service", "cache", "--force") // still bound
	s.must(exitOK, "unbind-service", "cache", "app")
	s.must(exitUsage, "delete-service", "cache")
	s.must(exitOK, "delete-service", "cache", "--force")
	s.must(exitNotFound, "delete-service", "cache", "--force")
	s.must(exitForbidden, "register-broker", "b", "http://127.0.0.1:1", "--username", "u", "--password", "p")
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	s := newSession(t, nil)
	for _, args := range [][]string{
		{"nosuch-command"},
		{"apps", "extra"},
		{"apps", "--no-such-flag"},
		{"map", "web"},
		{"instances"},
		{"apps"}, // no target
		{"target", "http://[::1"},
	} {
		if r := s.run(args...); r.code != exitUsage {
			t.Errorf("kiln %s: exit %d, want %d (%s)", strings.Join(args, " "), r.code, exitUsage, r.stderr)
		}
	}
	if r := s.must(exitOK, "exit-codes"); !strings.Contains(r.out, "    7  the app's instances crashed") {
		t.Errorf("exit-codes:\n%s", r.out)
	}
	if r := s.must(exitOK, "help"); !strings.Contains(r.out, "push") {
		t.Errorf("help:\n%s", r.out)
	}
}
