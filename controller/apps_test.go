package controller

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/controller/controllertest"
	"github.com/kiln-paas/kiln/controller/store"
)

// raw sends a request with a token and returns status and body.
func (e *env) raw(method, path, token, body string, hdr map[string]string) (int, string, http.Header) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	hc := e.srv.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestAppsCRUD(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	cl := e.user("ann@x.io")
	tok := cl.Token()

	// Create answers 302 with Location and the legacy body.
	status, body, hdr := e.raw("POST", "/apps", tok, `{"name":"foo","staging":{"framework":"sinatra","runtime":"ruby18"},"uris":["HTTP://Foo.vcap.me/"],"instances":1,"resources":{"memory":128},"x-unknown":true}`, nil)
	if status != 302 || !strings.HasSuffix(hdr.Get("Location"), "/apps/foo") || !strings.Contains(body, `"result":"success"`) {
		t.Fatalf("create: %d %s %v", status, body, hdr)
	}
	a, err := cl.App(ctx, "foo")
	if err != nil {
		t.Fatal(err)
	}
	if a.Staging.Model != "sinatra" || a.Staging.Stack != "ruby18" || a.State != "STOPPED" || a.Resources.Memory != 128 ||
		a.Resources.Disk != 2048 || a.Resources.FDs != 256 || !slices.Equal(a.URIs, []string{"foo.vcap.me"}) || a.Running() != 0 || a.Meta.Version != 1 {
		t.Fatalf("app = %+v", a)
	}
	// Legacy framework strings are normalized; legacy model/stack accepted.
	if err := cl.CreateApp(ctx, client.AppRequest{Name: "legacy", Framework: "nodejs/1.0"}); err != nil {
		t.Fatal(err)
	}
	if l, _ := cl.App(ctx, "legacy"); l.Staging.Model != "node" || l.Staging.Stack != "node" {
		t.Fatalf("legacy = %+v", l.Staging)
	}
	status, _, _ = e.raw("POST", "/apps", tok, `{"name":"modelstack","staging":{"model":"rails3","stack":"ruby19"}}`, nil)
	if status != 302 {
		t.Fatalf("model/stack create: %d", status)
	}

	tests := []struct {
		name, method, path, body string
		status, code             int
	}{
		{"duplicate", "POST", "/apps", `{"name":"foo"}`, 400, 300},
		{"bad name", "POST", "/apps", `{"name":"a b"}`, 400, 300},
		{"no name", "POST", "/apps", `{}`, 400, 300},
		{"bad json", "POST", "/apps", `{"name":`, 400, 100},
		{"wrong type", "POST", "/apps", `{"name":"x","instances":"two"}`, 400, 100},
		{"bad framework", "POST", "/apps", `{"name":"x","staging":{"framework":"cobol"}}`, 400, 308},
		{"bad runtime", "POST", "/apps", `{"name":"x","staging":{"framework":"sinatra","runtime":"java"}}`, 400, 307},
		{"too many uris", "POST", "/apps", `{"name":"x","uris":["a.me","b.me","c.me","d.me","e.me"]}`, 403, 602},
		{"bad uri", "POST", "/apps", `{"name":"x","uris":["a b.me"]}`, 400, 700},
		{"taken uri", "POST", "/apps", `{"name":"x","uris":["foo.vcap.me"]}`, 400, 701},
		{"missing app", "GET", "/apps/nope", ``, 404, 301},
		{"stale meta.version", "PUT", "/apps/foo", `{"instances":2,"meta":{"version":99}}`, 400, 102},
		{"bad state", "PUT", "/apps/foo", `{"state":"RUNNING"}`, 400, 300},
		{"vcap env", "PUT", "/apps/foo", `{"env":["VCAP_X=1"]}`, 403, 200},
		{"bad env", "PUT", "/apps/foo", `{"env":["NOEQUALS"]}`, 400, 300},
		{"negative instances", "PUT", "/apps/foo", `{"instances":-1}`, 400, 300},
		{"start without bits", "PUT", "/apps/foo", `{"state":"STARTED"}`, 400, 300},
		{"rename", "PUT", "/apps/foo", `{"name":"bar"}`, 400, 300},
		{"memory over quota", "POST", "/apps", `{"name":"big","resources":{"memory":-5}}`, 400, 300},
		{"delete missing", "DELETE", "/apps/nope", ``, 404, 301},
		{"upload not multipart", "PUT", "/apps/foo/application", `hello`, 400, 400},
		{"download before upload", "GET", "/apps/foo/application", ``, 404, 303},
		{"stopped app files", "GET", "/apps/foo/instances/0/files/logs", ``, 400, 305},
		{"restart stopped", "POST", "/apps/foo/restart", ``, 400, 305},
		{"rollback unknown droplet", "POST", "/apps/foo/rollback", `{"droplet":"abc"}`, 404, 311},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, _ := e.raw(tt.method, tt.path, tok, tt.body, nil)
			var got struct {
				Code        int    `json:"code"`
				Description string `json:"description"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil || status != tt.status || got.Code != tt.code || got.Description == "" {
				t.Fatalf("%s %s = %d %s, want %d/%d", tt.method, tt.path, status, body, tt.status, tt.code)
			}
		})
	}

	// Updates: env, uris, instances, memory; meta.version is the lock.
	a, _ = cl.App(ctx, "foo")
	if err := cl.UpdateApp(ctx, "foo", client.AppUpdate{Env: &[]string{"A=1", "B=x=y", "A=1"}, URIs: &[]string{"foo.vcap.me", "www.foo.vcap.me"}, Instances: client.Ptr(3), MetaVersion: &a.Meta.Version}); err != nil {
		t.Fatal(err)
	}
	a, _ = cl.App(ctx, "foo")
	if !slices.Equal(a.Env, []string{"A=1", "B=x=y"}) || len(a.URIs) != 2 || a.Instances != 3 {
		t.Fatalf("updated = %+v", a)
	}
	// A client sending back the whole app it read (as the original CLI
	// does) changes nothing but the lock counter.
	status, body, _ = e.raw("GET", "/apps/foo", tok, "", nil)
	if status != 200 {
		t.Fatalf("get: %d", status)
	}
	if status, resp, _ := e.raw("PUT", "/apps/foo", tok, body, nil); status != 200 {
		t.Fatalf("round trip PUT: %d %s", status, resp)
	}
	same, _ := cl.App(ctx, "foo")
	a.Meta = same.Meta
	if diff := cmp.Diff(a, same); diff != "" {
		t.Fatalf("round trip changed the app (-before +after):\n%s", diff)
	}
	apiErr(t, cl.UpdateApp(ctx, "foo", client.AppUpdate{MetaVersion: client.Ptr(same.Meta.Version - 1)}), 400, 102)
	status, _, _ = e.raw("PUT", "/apps/foo", tok, `{"debug":"run","state":"STARTED"}`, nil)
	if status != 400 {
		t.Fatalf("debug start: %d", status)
	}
	apps, err := cl.Apps(ctx)
	if err != nil || len(apps) != 3 {
		t.Fatalf("apps = %v, %v", len(apps), err)
	}
	// Percent-encoded names reach the right app.
	if status, _, _ := e.raw("GET", "/apps/f%6Fo", tok, "", nil); status != 200 {
		t.Fatalf("escaped name: %d", status)
	}
	if err := cl.DeleteApp(ctx, "foo"); err != nil {
		t.Fatal(err)
	}
	_, err = cl.App(ctx, "foo")
	apiErr(t, err, 404, 301)
	// Unknown routes: 404 with an empty body.
	if status, body, _ := e.raw("GET", "/nope/at/all", tok, "", nil); status != 404 || body != "" {
		t.Fatalf("unknown route: %d %q", status, body)
	}
}

func TestHTTPSRequired(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.HTTPSRequired = true })
	ctx := context.Background()
	cl := e.client()
	if err := cl.Register(ctx, "s@x.io", "pw"); err == nil {
		t.Fatal("registration over plain HTTP accepted")
	} else {
		apiErr(t, err, 403, 202)
	}
	status, _, _ := e.raw("POST", "/users", "", `{"email":"s@x.io","password":"pw"}`, map[string]string{"X-Forwarded-Proto": "https"})
	if status != 204 {
		t.Fatalf("register over https: %d", status)
	}
	// Only routes that need no user at all stay reachable over HTTP.
	if status, _, _ := e.raw("GET", "/info/runtimes", "", "", nil); status != 200 {
		t.Fatalf("runtimes over http: %d", status)
	}
	if status, _, _ := e.raw("GET", "/info", "", "", nil); status != 403 {
		t.Fatalf("info over http: %d", status)
	}
}

func TestQuotas(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.UserQuota = store.Quota{MemoryMB: 256, Apps: 2, URIs: 1, Services: 1} })
	ctx := context.Background()
	cl := e.user("q@x.io")
	newDEA := newFakeDEA(t, e.bus, "dea-q")
	_ = newDEA
	pushStaged(t, cl, "one", map[string]string{"a.txt": "a"})
	if err := cl.CreateApp(ctx, client.AppRequest{Name: "two"}); err != nil {
		t.Fatal(err)
	}
	apiErr(t, cl.CreateApp(ctx, client.AppRequest{Name: "three"}), 403, 601)
	if err := cl.UpdateApp(ctx, "one", client.AppUpdate{Instances: client.Ptr(5)}); err != nil {
		t.Fatal(err)
	}
	// 5 × 64 MB > 256 MB.
	apiErr(t, cl.Start(ctx, "one"), 403, 600)
	if err := cl.UpdateApp(ctx, "one", client.AppUpdate{Instances: client.Ptr(2)}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Start(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	apiErr(t, cl.UpdateApp(ctx, "one", client.SetMemory(200)), 403, 600)
	apiErr(t, cl.Scale(ctx, "one", 5), 403, 600)
	info, _ := cl.Info(ctx)
	if info.Usage.Memory != 128 || info.Usage.Apps != 2 {
		t.Fatalf("usage = %+v", info.Usage)
	}
	if err := cl.CreateService(ctx, "cache", "redis", "", "free"); err != nil {
		t.Fatal(err)
	}
	apiErr(t, cl.CreateService(ctx, "cache2", "redis", "", "free"), 403, 504)
}

func TestPushStageRunScaleStop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	dea := newFakeDEA(t, e.bus, "dea-1")
	cl := e.user("pat@x.io")
	files := map[string]string{"run": "#!/bin/sh\necho hi\n", "lib/big.txt": strings.Repeat("x", 100_000)}
	a := pushStaged(t, cl, "web", files)
	if a.State != "STOPPED" || e.stager.Stagings() != 1 {
		t.Fatalf("after push: %+v (stagings %d)", a, e.stager.Stagings())
	}
	var log bytes.Buffer
	if err := cl.StagingLog(ctx, "web", true, &log); err != nil || !strings.Contains(log.String(), "test buildpack: 2 files") {
		t.Fatalf("staging log = %q, %v", log.String(), err)
	}
	// The package downloads as the zip of both files.
	var pkg bytes.Buffer
	if err := cl.DownloadApp(ctx, "web", &pkg); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(pkg.Bytes()), int64(pkg.Len()))
	if err != nil || len(zr.File) != 2 {
		t.Fatalf("package: %v, %d files", err, len(zr.File))
	}

	if err := cl.UpdateApp(ctx, "web", client.AppUpdate{Env: &[]string{"GREETING=hi"}}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	a = waitApp(t, cl, "web", func(a client.App) bool { return a.Running() == 1 })
	snap := dea.Snapshot()
	start := snap.Starts[0]
	fetched := snap.Fetched[start.SHA1]
	if !fetched {
		t.Fatal("the DEA could not download the droplet from its signed URL")
	}
	want := protocol.Start{Droplet: start.Droplet, Index: 0, Name: "web", URIs: []string{"web.vcap.me"}, SHA1: start.SHA1, ExecutableURI: start.ExecutableURI,
		Version: a.Version, Services: []protocol.ServiceBinding{}, Limits: protocol.Limits{Mem: 64, Disk: 2048, FDs: 256}, Env: []string{"GREETING=hi"}, Users: []string{"pat@x.io"}}
	if diff := cmp.Diff(want, start); diff != "" {
		t.Fatalf("start message (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(a.Version, start.SHA1+"-") {
		t.Fatalf("version %q does not start with the droplet hash", a.Version)
	}

	// Scale up: two more starts; scale down: a stop of indices 1 and 2.
	if err := cl.Scale(ctx, "web", 3); err != nil {
		t.Fatal(err)
	}
	waitApp(t, cl, "web", func(a client.App) bool { return a.Running() == 3 })
	if err := cl.Scale(ctx, "web", 1); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitDEA(dea, func(d controllertest.Snapshot) bool {
		return slices.ContainsFunc(d.Stops, func(s protocol.Stop) bool { return slices.Equal(s.Indices, []int{1, 2}) })
	}); !ok {
		t.Fatal("no scale-down stop")
	}
	// URI change: dea.update.
	if err := cl.UpdateApp(ctx, "web", client.AppUpdate{URIs: &[]string{"web.vcap.me", "alt.vcap.me"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitDEA(dea, func(d controllertest.Snapshot) bool {
		return len(d.Updates) == 1 && slices.Equal(d.Updates[0].URIs, []string{"alt.vcap.me", "web.vcap.me"})
	}); !ok {
		t.Fatal("no dea.update")
	}
	// Instances and stats come from dea.find.droplet.
	insts, err := cl.Instances(ctx, "web")
	if err != nil || len(insts) != 1 || insts[0].State != "RUNNING" {
		t.Fatalf("instances = %+v, %v", insts, err)
	}
	stats, err := cl.Stats(ctx, "web")
	if err != nil || stats["0"].State != "RUNNING" || stats["0"].Stats == nil {
		t.Fatalf("stats = %+v, %v", stats, err)
	}
	// Files are proxied to the DEA's file server.
	b, err := cl.File(ctx, "web", "0", "logs/stdout.log")
	if err != nil || !strings.HasSuffix(string(b), "/logs/stdout.log") {
		t.Fatalf("file = %q, %v", b, err)
	}
	_, err = cl.File(ctx, "web", "0", "missing")
	apiErr(t, err, 404, 303)
	_, err = cl.File(ctx, "web", "7", "x")
	apiErr(t, err, 400, 304)
	_, err = cl.File(ctx, "web", "no-such-instance", "x")
	apiErr(t, err, 400, 304)

	// Stop: dea.stop {droplet}; instances become [].
	if err := cl.Stop(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitDEA(dea, func(d controllertest.Snapshot) bool { return len(d.Instances) == 0 }); !ok {
		t.Fatal("instances still running after stop")
	}
	if insts, _ := cl.Instances(ctx, "web"); len(insts) != 0 {
		t.Fatalf("stopped app instances = %+v", insts)
	}
	// A restart makes a new version.
	if err := cl.Start(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	b2 := waitApp(t, cl, "web", func(x client.App) bool { return x.Running() == 1 })
	if b2.Version == a.Version {
		t.Fatalf("version unchanged across stop/start: %s", a.Version)
	}
}

func TestUploadForms(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	cl := e.user("up@x.io")
	if err := cl.CreateApp(ctx, client.AppRequest{Name: "up"}); err != nil {
		t.Fatal(err)
	}
	// A raw zip with PUT.
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	hdr := &zip.FileHeader{Name: "hello.txt"}
	hdr.SetMode(0o644)
	w, _ := zw.CreateHeader(hdr)
	io.WriteString(w, "hello")
	zw.Close()
	status, body, _ := e.raw("PUT", "/apps/up/application", cl.Token(), zb.String(), map[string]string{"Content-Type": "application/zip"})
	if status != 200 {
		t.Fatalf("raw zip upload: %d %s", status, body)
	}
	waitApp(t, cl, "up", func(a client.App) bool { return a.PackageState == "STAGED" })
	// The pool now has hello.txt: match it and upload nothing but the list.
	fp, _ := client.Fingerprint(controllertest.AppDir(t, map[string]string{"hello.txt": "hello"}))
	have, err := cl.MatchResources(ctx, fp)
	if err != nil || len(have) != 1 {
		t.Fatalf("match = %v, %v", have, err)
	}
	if _, err := cl.Upload(ctx, "up", nil, have); err != nil {
		t.Fatal(err)
	}
	// Same content, same package: no second staging.
	a, _ := cl.App(ctx, "up")
	if a.PackageState != "STAGED" || e.stager.Stagings() != 1 {
		t.Fatalf("stagings = %d, want 1 (%+v)", e.stager.Stagings(), a)
	}
	// A resource the pool lacks is 400/401; a climbing path is refused.
	_, err = cl.Upload(ctx, "up", nil, []client.Resource{{SHA1: strings.Repeat("a", 40), Size: 3, Fn: "x"}})
	apiErr(t, err, 400, 401)
	_, err = cl.Upload(ctx, "up", nil, []client.Resource{{SHA1: have[0].SHA1, Size: 5, Fn: "../x"}})
	apiErr(t, err, 400, 100)
	_, err = cl.Upload(ctx, "up", strings.NewReader("not a zip"), nil)
	apiErr(t, err, 500, 402)
	// A non-array body matches nothing.
	if status, body, _ := e.raw("POST", "/resources", cl.Token(), `{"sha1":"x"}`, nil); status != 200 || body != "[]" {
		t.Fatalf("non-array match: %d %s", status, body)
	}
}

func TestUploadTooLarge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.MaxUploadBytes = 1000 })
	ctx := context.Background()
	cl := e.user("big@x.io")
	if err := cl.CreateApp(ctx, client.AppRequest{Name: "big"}); err != nil {
		t.Fatal(err)
	}
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	w, _ := zw.Create("big.txt")
	io.WriteString(w, strings.Repeat("z", 5000)) // compresses below the cap
	zw.Close()
	_, err := cl.Upload(ctx, "big", &zb, nil)
	apiErr(t, err, 500, 402)
}

func TestStagingFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	cl := e.user("f@x.io")
	if err := cl.CreateApp(ctx, client.AppRequest{Name: "bad"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Push(ctx, "bad", controllertest.AppDir(t, map[string]string{"FAIL": "x"})); err != nil {
		t.Fatal(err)
	}
	a := waitApp(t, cl, "bad", func(a client.App) bool { return a.PackageState == "FAILED" })
	if !strings.Contains(a.StagingError, "FAIL file") {
		t.Fatalf("staging error = %q", a.StagingError)
	}
	var log bytes.Buffer
	if err := cl.StagingLog(ctx, "bad", true, &log); err != nil || !strings.Contains(log.String(), "staging failed") {
		t.Fatalf("log = %q, %v", log.String(), err)
	}
}

func TestNoDEA(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	cl := e.user("n@x.io")
	pushStaged(t, cl, "lonely", map[string]string{"a": "b"})
	err := cl.Start(ctx, "lonely")
	apiErr(t, err, 404, 302)
	if !strings.Contains(err.Error(), "no DEA can run") {
		t.Fatalf("error %v does not say why", err)
	}
}

// TestResumeStaging stages a package a previous run left PENDING.
func TestResumeStaging(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	w, _ := zw.Create("app.txt")
	io.WriteString(w, "left over")
	zw.Close()
	info, err := e.blobs.Add(ctx, blobstore.KindPackage, bytes.NewReader(zb.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.CreateUser(ctx, "old@x.io", "pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.CreateApp(ctx, store.App{Name: "old", Owner: "old@x.io", State: store.AppStopped, Instances: 1, MemoryMB: 64, PackageHash: info.Key, PackageState: store.PackagePending}); err != nil {
		t.Fatal(err)
	}
	if err := e.c.resumeStaging(ctx); err != nil {
		t.Fatal(err)
	}
	cl := e.client()
	if _, err := cl.Login(ctx, "old@x.io", "pw"); err != nil {
		t.Fatal(err)
	}
	waitApp(t, cl, "old", func(a client.App) bool { return a.PackageState == store.PackageStaged })
}
