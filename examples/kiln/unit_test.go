package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/controller/client"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"plain", errors.New("boom"), exitError},
		{"marked", withCode(exitUsage, errors.New("x")), exitUsage},
		{"wrapped mark", fmt.Errorf("ctx: %w", withCode(exitQuota, errors.New("x"))), exitQuota},
		{"staging", fmt.Errorf("a: %w", errStaging), exitStaging},
		{"start", fmt.Errorf("a: %w", errStart), exitStartFailed},
		{"wait", client.ErrNotRunning, exitStartFailed},
		{"not logged in", errNotLoggedIn, exitForbidden},
		{"app not found", &client.Error{Status: 404, Code: 301}, exitNotFound},
		{"user not found", &client.Error{Status: 403, Code: 201}, exitNotFound},
		{"service not found", &client.Error{Status: 404, Code: 500}, exitNotFound},
		{"unknown route", &client.Error{Status: 404}, exitNotFound},
		{"forbidden", &client.Error{Status: 403, Code: 200}, exitForbidden},
		{"unauthorized", &client.Error{Status: 401}, exitForbidden},
		{"uri taken", &client.Error{Status: 400, Code: 701}, exitConflict},
		{"stale", &client.Error{Status: 400, Code: 102}, exitConflict},
		{"exists", &client.Error{Status: 400, Code: 100, Description: "Bad request: user a already exists"}, exitConflict},
		{"bad request", &client.Error{Status: 400, Code: 100, Description: "Bad request: junk"}, exitError},
		{"rollout busy", &client.Error{Status: 409, Code: 312}, exitConflict},
		{"memory quota", &client.Error{Status: 403, Code: 600}, exitQuota},
		{"staging failed", &client.Error{Status: 500, Code: 310}, exitStaging},
		{"server", &client.Error{Status: 500, Code: 111}, exitError},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got != tt.want {
			t.Errorf("%s: classify(%v) = %d, want %d", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestScaleTo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cur  int
		arg  string
		want int
		ok   bool
	}{
		{2, "5", 5, true}, {2, "+3", 5, true}, {2, "-1", 1, true}, {2, "-2", 0, true}, {2, "0", 0, true},
		{2, "-3", 0, false}, {2, "x", 0, false}, {2, "", 0, false}, {2, "+", 0, false},
	}
	for _, tt := range tests {
		got, err := scaleTo(tt.cur, tt.arg)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("scaleTo(%d, %q) = %d, %v; want %d ok=%v", tt.cur, tt.arg, got, err, tt.want, tt.ok)
		}
		if err != nil && classify(err) != exitUsage {
			t.Errorf("scaleTo(%d, %q) error is not a usage error", tt.cur, tt.arg)
		}
	}
}

func TestEnvEdits(t *testing.T) {
	t.Parallel()
	env := []string{"A=1", "B=2=2"}
	if d := cmp.Diff([]string{"A=one", "B=2=2", "C="}, setEnv(env, []string{"A=one", "C="})); d != "" {
		t.Errorf("setEnv (-want +got):\n%s", d)
	}
	got, n := delEnv(env, []string{"B", "Z"})
	if d := cmp.Diff([]string{"A=1"}, got); d != "" || n != 1 {
		t.Errorf("delEnv = %v, %d", got, n)
	}
	if d := cmp.Diff([]string{"A=1", "B=2=2"}, env); d != "" {
		t.Errorf("input modified: %s", d)
	}
}

func TestPickDroplet(t *testing.T) {
	t.Parallel()
	ds := []client.Droplet{{Hash: "ccc1", Current: true}, {Hash: "bbb2"}, {Hash: "bbb3"}}
	tests := []struct {
		prefix string
		want   string
		code   int
	}{
		{"", "bbb2", 0}, {"ccc", "ccc1", 0}, {"bbb3", "bbb3", 0}, {"bbb", "", exitUsage}, {"zzz", "", exitNotFound},
	}
	for _, tt := range tests {
		d, err := pickDroplet(ds, tt.prefix)
		if tt.code != 0 {
			if classify(err) != tt.code {
				t.Errorf("pickDroplet(%q) = %v, want exit %d", tt.prefix, err, tt.code)
			}
			continue
		}
		if err != nil || d.Hash != tt.want {
			t.Errorf("pickDroplet(%q) = %v, %v; want %s", tt.prefix, d, err, tt.want)
		}
	}
	if _, err := pickDroplet(ds[:1], ""); classify(err) != exitNotFound {
		t.Errorf("no older droplet: %v", err)
	}
}

func TestNegativeDelta(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want []string }{
		{[]string{"instances", "web", "-2"}, []string{"instances", "web", "--", "-2"}},
		{[]string{"instances", "web", "-2", "--json"}, []string{"instances", "web", "--json", "--", "-2"}},
		{[]string{"instances", "web", "+2"}, []string{"instances", "web", "+2"}},
		{[]string{"instances", "web", "-q"}, []string{"instances", "web", "-q"}},
		{[]string{"mem", "web", "-2"}, []string{"mem", "web", "-2"}},
		{[]string{"instances", "--", "web", "-2"}, []string{"instances", "--", "web", "-2"}},
		{[]string{"--json", "--target", "instances", "instances", "web", "-2"}, []string{"--json", "--target", "instances", "instances", "web", "--", "-2"}},
		{[]string{"--target=x", "instances", "web", "-1"}, []string{"--target=x", "instances", "web", "--", "-1"}},
		{[]string{"--json", "apps", "-1"}, []string{"--json", "apps", "-1"}},
		{nil, nil},
	}
	for _, tt := range tests {
		if d := cmp.Diff(tt.want, negativeDelta(tt.in)); d != "" {
			t.Errorf("negativeDelta(%q) (-want +got):\n%s", tt.in, d)
		}
	}
}

func TestNormalizeTargetAndDefaultRoute(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"api.vcap.me": "http://api.vcap.me", "https://x.io/": "https://x.io", " http://h:1// ": "http://h:1", "": "",
	} {
		if got := normalizeTarget(in); got != want {
			t.Errorf("normalizeTarget(%q) = %q, want %q", in, got, want)
		}
	}
	for target, want := range map[string]string{"api.vcap.me": "web.vcap.me", "http://127.0.0.1:8080": "", "api.local": "", "https://api.x.io:8443": "web.x.io"} {
		k := &cli{env: func(string) string { return "" }, target: target}
		if got := k.defaultRoute(context.Background(), nil, "web"); got != want {
			t.Errorf("defaultRoute with target %q = %q, want %q", target, got, want)
		}
	}
}

func TestConfigRoundTripAndDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c, err := loadConfig(dir)
	if err != nil || c.Target != "" {
		t.Fatalf("empty config = %+v, %v", c, err)
	}
	want := config{Target: "http://a", Auth: map[string]auth{"http://a": {User: "u", Token: "t"}}}
	if err := want.save(dir + "/sub"); err != nil {
		t.Fatal(err)
	}
	got, err := loadConfig(dir + "/sub")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("config (-want +got):\n%s", d)
	}
	envs := map[string]map[string]string{
		"/k":      {"KILN_HOME": "/k", "XDG_CONFIG_HOME": "/x"},
		"/x/kiln": {"XDG_CONFIG_HOME": "/x"},
	}
	for want, env := range envs {
		got, err := configDir(func(k string) string { return env[k] })
		if err != nil || got != want {
			t.Errorf("configDir(%v) = %q, %v; want %q", env, got, err, want)
		}
	}
}

func TestProgressPlainAndTTY(t *testing.T) {
	t.Parallel()
	var plain bytes.Buffer
	p := newProgress(&plain, false, "Uploading", 100)
	for i := int64(0); i <= 100; i += 5 {
		p.set(i)
	}
	p.done("OK")
	want := "Uploading 0%\nUploading 10%\nUploading 20%\nUploading 30%\nUploading 40%\nUploading 50%\nUploading 60%\nUploading 70%\nUploading 80%\nUploading 90%\nUploading 100%\nUploading OK\n"
	if d := cmp.Diff(want, plain.String()); d != "" {
		t.Errorf("plain progress (-want +got):\n%s", d)
	}
	var tty bytes.Buffer
	p = newProgress(&tty, true, "Up", 4)
	p.set(2)
	if got := tty.String(); got != "\rUp [===============               ]  50%" {
		t.Errorf("tty progress = %q", got)
	}
}

func TestListEntries(t *testing.T) {
	t.Parallel()
	got := listEntries("stdout.log   12B\n\nsub/   -\n  stderr.log 9B\n")
	if d := cmp.Diff([]string{"stdout.log", "sub/", "stderr.log"}, got); d != "" {
		t.Error(d)
	}
}

func TestAskNeverReadsClosedStdin(t *testing.T) {
	t.Parallel()
	k := &cli{in: bytes.NewReader([]byte("secret\n")), err: &bytes.Buffer{}}
	if _, err := k.ask("", "Password", "--password", true); classify(err) != exitUsage {
		t.Errorf("ask on a non-terminal = %v, want a usage error", err)
	}
	if v, err := k.ask("given", "Password", "--password", true); v != "given" || err != nil {
		t.Errorf("ask with a value = %q, %v", v, err)
	}
	if err := k.confirm(false, "Delete x?"); classify(err) != exitUsage {
		t.Errorf("confirm on a non-terminal = %v, want a usage error", err)
	}
	if err := k.confirm(true, "Delete x?"); err != nil {
		t.Errorf("confirm with force = %v", err)
	}
}

func TestEventsFallbackWithoutEndpoint(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/apps/web":
			fmt.Fprint(w, `{"name":"web","meta":{"version":1,"created":100}}`)
		case "/apps/web/droplets":
			fmt.Fprint(w, `[{"hash":"d2","created":300,"current":true},{"hash":"d1","created":200}]`)
		case "/apps/web/crashes":
			fmt.Fprint(w, `{"crashes":[{"instance":"i-1","since":250}]}`)
		default:
			w.WriteHeader(http.StatusNotFound) // an unknown route: no body
		}
	}))
	t.Cleanup(srv.Close)
	k := &cli{env: func(string) string { return "" }, target: srv.URL, hc: srv.Client()}
	cl, err := k.client(false)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.events(t.Context(), cl, "web")
	if err != nil {
		t.Fatal(err)
	}
	want := []client.Event{
		{Time: 100, Type: "app-created"},
		{Time: 200, Type: "app-staged", Description: "droplet d1"},
		{Time: 250, Type: "instance-crashed", Description: "instance i-1"},
		{Time: 300, Type: "app-staged", Description: "droplet d2 (current)"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	if _, err := k.events(t.Context(), cl, "gone"); classify(err) != exitNotFound {
		t.Errorf("events of a missing app: %v", err)
	}
}
