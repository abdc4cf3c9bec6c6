package fake_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/internal/syncbuf"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/fake"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// get polls url until it answers or ctx ends.
func get(ctx context.Context, url string) (*http.Response, []byte, error) {
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp, body, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("%s never answered: %w", url, err)
		case <-time.After(10 * time.Millisecond): // polling a listener, not synchronising
		}
	}
}

func mapped(t *testing.T, b *fake.Backend, handle string) (warden.Container, warden.PortMapping) {
	t.Helper()
	c, err := b.Create(testCtx(t), warden.ContainerSpec{Handle: handle, Env: []string{"INSTANCE_INDEX=3"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.NetIn(testCtx(t), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return c, m
}

func TestAppAnswersHTTP(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	c, m := mapped(t, b, "web-3")
	p, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "/home/vcap/app/start", Env: []string{"PORT=" + strconv.Itoa(int(m.ContainerPort))}}, warden.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://127.0.0.1:" + strconv.Itoa(int(m.HostPort)) + "/some/path"
	resp, body, err := get(testCtx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	want := map[string]string{"handle": "web-3", "instance_index": "3", "path": "/some/path"}
	if resp.StatusCode != 200 || !cmp.Equal(want, got) {
		t.Errorf("got %d %v, want 200 %v", resp.StatusCode, got, want)
	}
	if h := resp.Header.Get("X-Kiln-Handle"); h != "web-3" {
		t.Errorf("X-Kiln-Handle = %q", h)
	}
	if err := c.Stop(testCtx(t), time.Second); err != nil {
		t.Fatal(err)
	}
	if st, _ := p.Wait(testCtx(t)); st != 143 {
		t.Errorf("status = %d, want 143", st)
	}
	if conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(int(m.HostPort)), time.Second); err == nil {
		conn.Close()
		t.Error("port still accepts connections after Stop")
	}
}

func TestScriptedBehaviors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		behavior   fake.Behavior
		wantStatus int
		wantBound  bool
		stop       bool
	}{
		{"crash", fake.Behavior{Exit: true, ExitStatus: 3, ExitAfter: 10 * time.Millisecond}, 3, false, false},
		{"clean exit", fake.Behavior{Exit: true}, 0, false, false},
		{"never binds", fake.Behavior{NoBind: true}, 143, false, true},
		{"slow bind", fake.Behavior{BindAfter: 30 * time.Millisecond}, 143, true, true},
		{"ignores term", fake.Behavior{IgnoreTerm: true}, 137, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t)
			b.Script(fake.ForProgram("app", tc.behavior))
			c, m := mapped(t, b, "h")
			p, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "app"}, warden.ProcessIO{})
			if err != nil {
				t.Fatal(err)
			}
			addr := "127.0.0.1:" + strconv.Itoa(int(m.HostPort))
			if tc.wantBound {
				if _, _, err := get(testCtx(t), "http://"+addr+"/"); err != nil {
					t.Error(err)
				}
			}
			if tc.stop {
				if !tc.wantBound {
					if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
						conn.Close()
						t.Error("unbound app accepts connections")
					}
				}
				if err := c.Stop(testCtx(t), 50*time.Millisecond); err != nil {
					t.Fatal(err)
				}
			}
			st, err := p.Wait(testCtx(t))
			if err != nil || st != tc.wantStatus {
				t.Errorf("Wait = %d, %v; want %d", st, err, tc.wantStatus)
			}
		})
	}
}

func TestCustomHandlerAndOutput(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	b.Script(fake.ForHandle("h", fake.Behavior{
		Stdout:  "listening\n",
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }),
	}))
	c, m := mapped(t, b, "h")
	var out syncbuf.Buffer
	if _, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "anything", StdoutPath: "logs/out"}, warden.ProcessIO{Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	resp, _, err := get(testCtx(t), "http://127.0.0.1:"+strconv.Itoa(int(m.HostPort)))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTeapot {
		t.Errorf("status %d, want 418", resp.StatusCode)
	}
	if out.String() != "listening\n" {
		t.Errorf("stdout %q", out.String())
	}
}

func TestExitOnDemand(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	c, _ := mapped(t, b, "h")
	p, err := c.Run(testCtx(t), warden.ProcessSpec{ID: "web", Path: "server"}, warden.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Exit("h", "web", 9); err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(testCtx(t)); st != 9 || err != nil {
		t.Errorf("Wait = %d, %v; want 9", st, err)
	}
	if err := b.Exit("h", "web", 1); !errors.Is(err, warden.ErrProcessDone) {
		t.Errorf("Exit of exited process = %v", err)
	}
	if err := b.Exit("h", "nope", 1); !errors.Is(err, warden.ErrNotFound) {
		t.Errorf("Exit of unknown process = %v", err)
	}
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	boom := errors.New("boom")
	b.FailNext(fake.OpCreate, "", boom)
	if _, err := b.Create(testCtx(t), warden.ContainerSpec{}); !errors.Is(err, boom) {
		t.Errorf("Create = %v, want boom", err)
	}
	c, err := b.Create(testCtx(t), warden.ContainerSpec{Handle: "h"})
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	b.FailNext(fake.OpRun, "other", boom)
	b.FailNext(fake.OpRun, "h", boom)
	if _, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "x"}, warden.ProcessIO{}); !errors.Is(err, boom) {
		t.Errorf("Run = %v, want boom", err)
	}
	if _, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "sh", Args: []string{"-c", "exit 0"}}, warden.ProcessIO{}); err != nil {
		t.Errorf("Run after the injected failure: %v (the failure for another handle must stay queued)", err)
	}
}

func TestRunsRecordsEnv(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	c, err := b.Create(testCtx(t), warden.ContainerSpec{Handle: "h", Env: []string{"A=1", "B=2"}})
	if err != nil {
		t.Fatal(err)
	}
	specs := []warden.ProcessSpec{
		{ID: "one", Path: "sh", Args: []string{"-c", "exit 0"}, Env: []string{"B=3"}},
		{ID: "two", Path: "sh", Args: []string{"-c", "cd app && ./start"}},
	}
	for _, s := range specs {
		if _, err := c.Run(testCtx(t), s, warden.ProcessIO{}); err != nil {
			t.Fatal(err)
		}
	}
	want := []fake.RunRecord{
		{Handle: "h", ID: "one", Spec: specs[0], Env: []string{"A=1", "B=3"}, Interpreted: true},
		{Handle: "h", ID: "two", Spec: specs[1], Env: []string{"A=1", "B=2"}, Interpreted: false},
	}
	if diff := cmp.Diff(want, b.Runs(), cmpopts.IgnoreFields(fake.RunRecord{}, "Started")); diff != "" {
		t.Errorf("Runs (-want +got):\n%s", diff)
	}
}

func TestScriptPrecedence(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	b.Script(fake.ForProgram("app", fake.Behavior{Exit: true, ExitStatus: 1}))
	b.Script(fake.ForProgram("app", fake.Behavior{Exit: true, ExitStatus: 2}))
	c, err := b.Create(testCtx(t), warden.ContainerSpec{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "app"}, warden.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := p.Wait(testCtx(t)); st != 2 {
		t.Errorf("status %d, want 2 (the later script)", st)
	}
}

func TestOutOfMemoryAndUsage(t *testing.T) {
	t.Parallel()
	b := newBackend(t)
	c, err := b.Create(testCtx(t), warden.ContainerSpec{Handle: "h"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Run(testCtx(t), warden.ProcessSpec{Path: "app"}, warden.ProcessIO{})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := c.Info(testCtx(t))
	if info.Usage.MemoryBytes != fake.DefaultConfig().TaskMemoryBytes {
		t.Errorf("memory %d, want one task's", info.Usage.MemoryBytes)
	}
	if err := b.SetUsage("h", warden.Usage{MemoryBytes: 5 << 20, CPU: time.Second}); err != nil {
		t.Fatal(err)
	}
	info, _ = c.Info(testCtx(t))
	if info.Usage.MemoryBytes != 5<<20 || info.Usage.CPU != time.Second {
		t.Errorf("usage %+v after SetUsage", info.Usage)
	}
	if err := b.OutOfMemory("h"); err != nil {
		t.Fatal(err)
	}
	if st, _ := p.Wait(testCtx(t)); st != 137 {
		t.Errorf("status %d after OOM, want 137", st)
	}
	info, _ = c.Info(testCtx(t))
	if !slices.Equal(info.Events, []warden.Event{warden.EventOutOfMemory}) {
		t.Errorf("events %v", info.Events)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*fake.Config)
		ok     bool
	}{
		{"default", func(*fake.Config) {}, true},
		{"bad ip", func(c *fake.Config) { c.HostIP = "localhost" }, false},
		{"negative max", func(c *fake.Config) { c.Capacity.MaxContainers = -1 }, false},
	}
	for _, tc := range tests {
		cfg := fake.DefaultConfig()
		tc.mutate(&cfg)
		if err := cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v", tc.name, err)
		}
		if _, err := fake.New(cfg); (err == nil) != tc.ok {
			t.Errorf("%s: New = %v", tc.name, err)
		}
	}
}

func TestMaxContainers(t *testing.T) {
	t.Parallel()
	cfg := fake.DefaultConfig()
	cfg.Capacity.MaxContainers = 1
	b, err := fake.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if _, err := b.Create(testCtx(t), warden.ContainerSpec{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(testCtx(t), warden.ContainerSpec{}); !errors.Is(err, warden.ErrLimitExceeded) {
		t.Errorf("Create beyond capacity = %v", err)
	}
}
