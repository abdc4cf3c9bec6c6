package dea_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/natsbus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/staging/droplet"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/process"
)

// tinyApp is the source of the app the integration tests run: an HTTP
// server on $PORT that reports its instance index (from VCAP_APPLICATION),
// logs a line per request and exits cleanly on SIGTERM.
const tinyApp = `package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	var app struct {
		InstanceIndex int    ` + "`json:\"instance_index\"`" + `
		Name          string ` + "`json:\"application_name\"`" + `
	}
	_ = json.Unmarshal([]byte(os.Getenv("VCAP_APPLICATION")), &app)
	fmt.Println("tinyapp starting on port", os.Getenv("PORT"))
	srv := &http.Server{Addr: ":" + os.Getenv("PORT"), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("request", r.URL.Path)
		fmt.Fprintf(w, "%s/%d\n", app.Name, app.InstanceIndex)
	})}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("tinyapp stopped")
}
`

var (
	tinyOnce    sync.Once
	tinyDroplet testDroplet
	tinyErr     error
)

// buildTinyApp builds tinyApp with go build and packs it as a droplet,
// once per test binary.
func buildTinyApp(t testing.TB) testDroplet {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a Go program")
	}
	tinyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kiln-tinyapp-")
		if err != nil {
			tinyErr = err
			return
		}
		defer os.RemoveAll(dir)
		src, app := filepath.Join(dir, "src"), filepath.Join(dir, "app")
		_ = os.MkdirAll(src, 0o755)
		_ = os.MkdirAll(app, 0o755)
		_ = os.WriteFile(filepath.Join(src, "go.mod"), []byte("module tinyapp\n\ngo 1.22\n"), 0o644)
		_ = os.WriteFile(filepath.Join(src, "main.go"), []byte(tinyApp), 0o644)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(app, "tinyapp"), ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			tinyErr = err
			tinyDroplet.data = out
			return
		}
		var buf bytes.Buffer
		sum, err := droplet.PackDir(&buf, droplet.Info{DetectedBuildpack: "go", StartCommand: "./tinyapp", Stack: "linux"}, app)
		tinyDroplet, tinyErr = testDroplet{data: buf.Bytes(), sha1: sum.SHA1}, err
	})
	if tinyErr != nil {
		t.Fatalf("build tiny app: %v\n%s", tinyErr, tinyDroplet.data)
	}
	return tinyDroplet
}

// realWorld is one DEA on an embedded NATS server and warden/process,
// fetching the tiny app's droplet over HTTP.
type realWorld struct {
	bus        bus.Bus
	root       string
	backend    *process.Backend
	node       *node
	cfg        dea.Config
	dr         testDroplet
	uri        string
	heartbeats *recorder
	registers  *recorder
	unregs     *recorder
	exits      *recorder
	logs       *recorder
}

func newBackend(t testing.TB, root string) *process.Backend {
	t.Helper()
	cfg := process.DefaultConfig()
	cfg.Root = root
	cfg.ExitPollInterval = 50 * time.Millisecond
	b, err := process.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newRealWorld(t *testing.T) *realWorld {
	t.Helper()
	dr := buildTinyApp(t)
	srv := natsbus.RunTestServer(t)
	ncfg := natsbus.DefaultConfig()
	ncfg.URLs = []string{srv.ClientURL()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := natsbus.Connect(ctx, ncfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	blobs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/staged_droplets/tiny/"+dr.sha1 {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(dr.data)
	}))
	t.Cleanup(blobs.Close)
	w := &realWorld{bus: b, root: t.TempDir(), dr: dr, uri: blobs.URL + "/staged_droplets/tiny/" + dr.sha1}
	w.backend = newBackend(t, w.root)
	t.Cleanup(func() {
		// Leave nothing running: destroy every container, then close.
		cs, _ := w.backend.Containers(context.Background(), nil)
		for _, c := range cs {
			_ = w.backend.Destroy(context.Background(), c.Handle())
		}
		_ = w.backend.Close()
	})
	w.heartbeats = record(t, b, protocol.DEAHeartbeat)
	w.registers = record(t, b, protocol.RouterRegister)
	w.unregs = record(t, b, protocol.RouterUnregister)
	w.exits = record(t, b, protocol.DropletExited)
	w.logs = record(t, b, "logs.>")
	w.cfg = testConfig(t)
	w.cfg.StopGrace = 5 * time.Second
	w.node = runDEA(t, b, w.cfg, dea.Deps{Backend: w.backend})
	return w
}

// appPIDs returns the host pids of instance id's container.
func appPIDs(t testing.TB, b warden.Backend, id string) []int {
	t.Helper()
	cs, err := b.Containers(context.Background(), warden.Properties{dea.PropertyInstance: id})
	if err != nil || len(cs) != 1 {
		t.Fatalf("container of %s: %d, %v", id, len(cs), err)
	}
	info, err := cs[0].Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.PIDs
}

func killAll(t testing.TB, pids []int) {
	t.Helper()
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			t.Fatal(err)
		}
	}
}

func httpGet(t testing.TB, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestRealAppLifecycle(t *testing.T) {
	t.Parallel()
	w := newRealWorld(t)
	d := w.node.dea.ID()
	publish(t, w.bus, protocol.DEAStartSubject(d), startMsg("tiny", 0, w.dr, w.uri, "tiny.kiln.test"))
	publish(t, w.bus, protocol.DEAStartSubject(d), startMsg("tiny", 1, w.dr, w.uri, "tiny.kiln.test"))
	id0 := instanceOf(t, w.heartbeats, "tiny", 0)
	id1 := instanceOf(t, w.heartbeats, "tiny", 1)

	// start → RUNNING → route registered, and the route reaches the app.
	reg := decodeAs[protocol.Register](t, w.registers.wait("register of index 0", 5*time.Second, func(m *bus.Msg) bool {
		return decodeAs[protocol.Register](t, m).PrivateInstanceID == id0
	}))
	if got := httpGet(t, "http://"+reg.Addr()+"/hello"); got != "tiny/0\n" {
		t.Errorf("app answered %q", got)
	}
	w.logs.wait("app log line", 5*time.Second, func(m *bus.Msg) bool {
		l := decodeAs[protocol.LogLine](t, m)
		return l.Instance == id0 && l.Source == protocol.SourceApp && l.Line == "request /hello"
	})

	// kill -9 → droplet.exited CRASHED + unregister.
	killAll(t, appPIDs(t, w.backend, id1))
	w.unregs.wait("unregister of the killed instance", 5*time.Second, func(m *bus.Msg) bool {
		return decodeAs[protocol.Register](t, m).PrivateInstanceID == id1
	})
	ex := w.exitFor(t, id1)
	if ex.Reason != protocol.ReasonCrashed || !strings.Contains(ex.ExitDescription, "SIGKILL") {
		t.Errorf("exit = %+v", ex)
	}

	// stop drains: unregister first, then the process tree gets TERM (the
	// app shuts down cleanly; the shell above it may report 143), not
	// KILL (137).
	publish(t, w.bus, protocol.DEAStop, protocol.Stop{Droplet: "tiny", Indices: []int{0}})
	ex = w.exitFor(t, id0)
	if ex.Reason != protocol.ReasonStopped || (ex.ExitStatus != 0 && ex.ExitStatus != 143) {
		t.Errorf("stop exit = %+v", ex)
	}
	found := false
	for _, m := range w.unregs.all() {
		found = found || decodeAs[protocol.Register](t, m).PrivateInstanceID == id0
	}
	if !found {
		t.Error("stop did not unregister")
	}
}

func (w *realWorld) exitFor(t *testing.T, id string) protocol.Exited {
	t.Helper()
	m := w.exits.wait("droplet.exited of "+id, 20*time.Second, func(m *bus.Msg) bool {
		return decodeAs[protocol.Exited](t, m).Instance == id
	})
	return decodeAs[protocol.Exited](t, m)
}

func TestRealAppSurvivesDEARestart(t *testing.T) {
	t.Parallel()
	w := newRealWorld(t)
	// Stop the first DEA leaving its instances running.
	w.node.stop(t)
	cfg := w.cfg
	cfg.LeaveRunning = true
	n1 := runDEA(t, w.bus, cfg, dea.Deps{Backend: w.backend})
	publish(t, w.bus, protocol.DEAStartSubject(n1.dea.ID()), startMsg("keep", 0, w.dr, w.uri, "keep.kiln.test"))
	id := instanceOf(t, w.heartbeats, "keep", 0)
	reg := decodeAs[protocol.Register](t, w.registers.wait("register", 5*time.Second, func(m *bus.Msg) bool {
		return decodeAs[protocol.Register](t, m).PrivateInstanceID == id
	}))
	pids := appPIDs(t, w.backend, id)
	n1.stop(t)

	// A new backend on the same root, a new DEA on the same base dir.
	if err := w.backend.Close(); err != nil {
		t.Fatal(err)
	}
	w.backend = newBackend(t, w.root)
	hbCursor := w.heartbeats.len()
	cfg.LeaveRunning = false
	n2 := runDEA(t, w.bus, cfg, dea.Deps{Backend: w.backend})
	if n2.dea.ID() != n1.dea.ID() {
		t.Fatalf("id changed across restart")
	}
	publish(t, w.bus, protocol.HealthManagerStart, map[string]any{})
	w.heartbeats.waitFrom(hbCursor, "recovered heartbeat", 10*time.Second, heartbeatState(t, "keep", 0, protocol.StateRunning))
	if got := appPIDs(t, w.backend, id); !slices.Equal(got, pids) {
		t.Errorf("pids %v after restart, want %v (not restarted)", got, pids)
	}
	if got := httpGet(t, "http://"+reg.Addr()+"/"); got != "keep/0\n" {
		t.Errorf("app answered %q after the DEA restart", got)
	}
	// Still supervised: a crash is noticed.
	killAll(t, pids)
	w.exitFor(t, id)
}

// TestFigures measures, on natsbus and warden/process with the real tiny
// app, the droplet-cached start-to-RUNNING latency (median of 20) and the
// crash-to-unregister latency (median of 10), and logs them.
func TestFigures(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures latencies (not under -race or -short)")
	}
	w := newRealWorld(t)
	d := w.node.dea.ID()
	// Warm the cache.
	publish(t, w.bus, protocol.DEAStartSubject(d), startMsg("fig", 0, w.dr, w.uri, "fig.kiln.test"))
	instanceOf(t, w.heartbeats, "fig", 0)
	var starts, crashes []time.Duration
	for i := 1; i <= 20; i++ {
		cursor := w.registers.len()
		t0 := time.Now()
		publish(t, w.bus, protocol.DEAStartSubject(d), startMsg("fig", i, w.dr, w.uri, "fig.kiln.test"))
		m := w.registers.waitFrom(cursor, "register", 20*time.Second, func(m *bus.Msg) bool {
			return decodeAs[protocol.Register](t, m).PrivateInstanceIndex == itoa(i)
		})
		starts = append(starts, time.Since(t0))
		reg := decodeAs[protocol.Register](t, m)
		if i > 10 {
			continue
		}
		ucursor := w.unregs.len()
		pids := appPIDs(t, w.backend, reg.PrivateInstanceID)
		t1 := time.Now()
		killAll(t, pids)
		w.unregs.waitFrom(ucursor, "unregister", 10*time.Second, func(m *bus.Msg) bool {
			return decodeAs[protocol.Register](t, m).PrivateInstanceID == reg.PrivateInstanceID
		})
		crashes = append(crashes, time.Since(t1))
	}
	t.Logf("cached start to RUNNING (router.register received), tiny Go app, natsbus + warden/process: median %v of %d (min %v, max %v)",
		median(starts), len(starts), slices.Min(starts), slices.Max(starts))
	t.Logf("kill -9 to router.unregister received: median %v of %d (min %v, max %v)",
		median(crashes), len(crashes), slices.Min(crashes), slices.Max(crashes))
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func itoa(i int) string { return strconv.Itoa(i) }
