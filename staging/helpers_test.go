package staging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/internal/syncbuf"
	"github.com/kiln-paas/kiln/staging"
	"github.com/kiln-paas/kiln/staging/droplet"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/process"
)

var figures = flag.Bool("kiln.figures", false, "measure staging times of the sample apps (slow: cold Go builds)")

// hostCacheDir is shared by every test's stager so the static file server
// is built once per test binary.
var hostCacheDir string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "kiln-staging-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hostCacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// hostGoCache returns the host's GOCACHE, warm on a developer machine, for
// GoBuildpack.SharedBuildCache: without it every test run would compile
// the standard library (a minute on a busy 2-core machine).
var hostGoCache = sync.OnceValue(func() string {
	out, err := exec.Command(goTool(), "env", "GOCACHE").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
})

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

// newBackend returns a warden/process backend rooted in a temp dir.
func newBackend(t testing.TB) warden.Backend {
	t.Helper()
	cfg := process.DefaultConfig()
	cfg.Root = t.TempDir()
	b, err := process.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cs, _ := b.Containers(ctx, nil)
		for _, c := range cs {
			_ = b.Destroy(ctx, c.Handle())
		}
		b.Close()
	})
	return b
}

// testConfig is DefaultConfig with the host's tools on PATH, a package
// index that refuses connections at once, and shorter limits.
func testConfig(t testing.TB, shareGoCache bool) staging.Config {
	t.Helper()
	cfg := staging.DefaultConfig()
	cfg.Path = os.Getenv("PATH") + ":/usr/local/go/bin"
	cfg.CacheDir = hostCacheDir
	cfg.TempDir = t.TempDir()
	cfg.Env = []string{"PIP_INDEX_URL=http://127.0.0.1:9/simple"}
	if p := os.Getenv("GOPROXY"); p != "" {
		cfg.Env = append(cfg.Env, "GOPROXY="+p)
	}
	cfg.Limits.Timeout = 3 * time.Minute
	cfg.MaxConcurrent = 4
	if shareGoCache {
		bps := staging.Builtins()
		bps[0] = staging.GoBuildpack{SharedBuildCache: hostGoCache()}
		cfg.Buildpacks = bps
	}
	return cfg
}

// sampleZip zips examples/apps/<name>.
func sampleZip(t testing.TB, name string) []byte {
	t.Helper()
	return zipDir(t, filepath.Join("..", "examples", "apps", name))
}

// stage runs one staging of z and returns the droplet and the result.
func stage(t testing.TB, s *staging.Stager, req staging.Request, z []byte) ([]byte, staging.Result, error) {
	t.Helper()
	var drop bytes.Buffer
	req.Package, req.PackageSize = bytes.NewReader(z), int64(len(z))
	req.Droplet = &drop
	if req.AppID == "" {
		req.AppID = "app-1"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := s.Stage(ctx, req)
	return drop.Bytes(), res, err
}

// runDroplet starts the droplet in a warden/process container as a DEA
// would (droplet.StreamIn, NetIn, droplet.Launch with PORT and the VCAP
// variables) and returns the body of an HTTP 200 from it.
func runDroplet(t testing.TB, b warden.Backend, drop []byte) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := b.Create(ctx, warden.ContainerSpec{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Destroy(context.Background(), c.Handle()) })
	info, err := droplet.StreamIn(ctx, c, "/", bytes.NewReader(drop))
	if err != nil {
		t.Fatalf("droplet.StreamIn: %v", err)
	}
	pm, err := c.NetIn(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	path, args := droplet.Launch(info)
	vcapApp, _ := json.Marshal(map[string]any{"instance_index": 1, "name": "sample"})
	vcapSvc, _ := json.Marshal(map[string]any{"postgresql": []map[string]any{{"name": "mydb"}}})
	var out syncbuf.Buffer
	proc, err := c.Run(ctx, warden.ProcessSpec{
		Path: path,
		Args: args,
		Env: []string{
			fmt.Sprintf("PORT=%d", pm.ContainerPort),
			"VCAP_APPLICATION=" + string(vcapApp),
			"VCAP_SERVICES=" + string(vcapSvc),
		},
	}, warden.ProcessIO{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan int, 1)
	go func() {
		st, _ := proc.Wait(context.Background())
		exited <- st
	}()
	t.Cleanup(func() {
		_ = c.Stop(context.Background(), 0)
		<-exited
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/", pm.HostPort)
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case st := <-exited:
			exited <- st
			t.Fatalf("app exited with status %d before answering:\n%s", st, out.String())
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
			}
			return string(body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("app did not answer on %s: %v\noutput:\n%s", url, err, out.String())
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline, not synchronisation
	}
}

// lineRecorder records every Write call, to check the log arrives line by
// line.
type lineRecorder struct {
	mu     sync.Mutex
	writes []string
}

func (l *lineRecorder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes = append(l.writes, string(p))
	return len(p), nil
}

func (l *lineRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.writes, "")
}

func (l *lineRecorder) Writes() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.writes...)
}

func runIn(dir, path string, args ...string) (string, error) {
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}
