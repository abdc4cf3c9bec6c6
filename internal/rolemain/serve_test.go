package rolemain_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/internal/rolemain"
)

func TestAnnounce(t *testing.T) {
	tests := []struct {
		name      string
		eps       []rolemain.Endpoint
		wantLines string // what WriteEndpoints writes
	}{
		{name: "none"},
		{name: "one", eps: []rolemain.Endpoint{{Name: "dea", URL: "http://127.0.0.1:9025"}},
			wantLines: "dea=http://127.0.0.1:9025\n"},
		{name: "in order", eps: []rolemain.Endpoint{{Name: "router", URL: "http://127.0.0.1:8080"},
			{Name: "admin", URL: "http://127.0.0.1:8082"}, {Name: "nats", URL: "nats://127.0.0.1:4222"}},
			wantLines: "router=http://127.0.0.1:8080\nadmin=http://127.0.0.1:8082\nnats=nats://127.0.0.1:4222\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lines, announced countingWriter
			if err := rolemain.WriteEndpoints(&lines, tt.eps...); err != nil {
				t.Fatal(err)
			}
			if err := rolemain.Announce(&announced, tt.eps...); err != nil {
				t.Fatal(err)
			}
			if got := lines.String(); got != tt.wantLines {
				t.Errorf("WriteEndpoints wrote %q, want %q", got, tt.wantLines)
			}
			if got, want := announced.String(), tt.wantLines+"ready\n"; got != want {
				t.Errorf("Announce wrote %q, want %q", got, want)
			}
			// One write each, so that lines of concurrent writers and a
			// reader waiting for "ready" never see half an announcement.
			if lines.writes > 1 || announced.writes != 1 {
				t.Errorf("writes: WriteEndpoints %d, Announce %d; want at most 1 and 1", lines.writes, announced.writes)
			}
		})
	}
}

// countingWriter is a bytes.Buffer that counts its writes.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

func (w *countingWriter) WriteString(s string) (int, error) {
	w.writes++
	return w.Buffer.WriteString(s)
}

func TestAnnounceWriteError(t *testing.T) {
	if err := rolemain.Announce(failWriter{}); !errors.Is(err, errWrite) {
		t.Errorf("Announce error = %v, want %v", err, errWrite)
	}
}

var errWrite = errors.New("write failed")

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestListen(t *testing.T) {
	ls, err := rolemain.Listen("127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ls.Close)
	if len(ls) != 2 || ls[0].Addr().String() == ls[1].Addr().String() {
		t.Fatalf("Listen gave %v, want two listeners on distinct ports", ls)
	}
	ep := rolemain.HTTPEndpoint("admin", ls[1])
	if want := "http://" + ls[1].Addr().String(); ep.URL != want || ep.Name != "admin" {
		t.Errorf("HTTPEndpoint = %+v, want admin at %s", ep, want)
	}

	// The second address is taken: the first listener must be closed again.
	_, err = rolemain.Listen("127.0.0.1:0", ls[0].Addr().String())
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Fatalf("Listen on a taken port: %v, want a *net.OpError", err)
	}
}

func TestListenClosesOnFailure(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	// Find a free port, then ask Listen for it and for the taken one: the
	// free one must be free again afterwards.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := probe.Addr().String()
	probe.Close()
	if _, err := rolemain.Listen(free, taken.Addr().String()); err == nil {
		t.Fatal("Listen succeeded on a taken port")
	}
	again, err := net.Listen("tcp", free)
	if err != nil {
		t.Fatalf("first listener left open: %v", err)
	}
	again.Close()
}

func TestServeHTTP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	inFlight := make(chan struct{})
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(inFlight)
			<-release
		}
		_, _ = io.WriteString(w, "ok "+r.URL.Path)
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	g, gctx := errgroup.WithContext(ctx)
	rolemain.ServeHTTP(gctx, g, ln, h, nil)
	url := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 10 * time.Second}

	if got := get(t, client, url+"/fast"); got != "ok /fast" {
		t.Errorf("GET /fast = %q", got)
	}
	slow := make(chan string, 1)
	go func() { slow <- get(t, client, url+"/slow") }()
	<-inFlight
	cancel() // as SIGTERM would: the request in flight must still finish
	close(release)
	if got := <-slow; got != "ok /slow" {
		t.Errorf("GET /slow across shutdown = %q", got)
	}
	if err := g.Wait(); err != nil {
		t.Errorf("Wait = %v, want nil after a graceful shutdown", err)
	}
	if _, err := client.Get(url + "/fast"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

func TestServeHTTPError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // Serve fails at once
	g, gctx := errgroup.WithContext(context.Background())
	rolemain.ServeHTTP(gctx, g, ln, http.NotFoundHandler(), nil)
	var opErr *net.OpError
	if err := g.Wait(); !errors.As(err, &opErr) {
		t.Errorf("Wait = %v, want the listener's error", err)
	}
}

func get(t *testing.T, c *http.Client, url string) string {
	resp, err := c.Get(url)
	if err != nil {
		t.Error(err)
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Error(err)
	}
	return string(b)
}
