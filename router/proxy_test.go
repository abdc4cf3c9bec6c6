package router

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/internal/syncbuf"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	eachMode(t, nil, func(t *testing.T, h *harness, mode string) {
		seen := make(chan http.Header, 4)
		_, addr := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hdr := r.Header.Clone()
			hdr.Set("Host", r.Host)
			hdr.Set("Uri", r.RequestURI)
			seen <- hdr
			w.Header().Set("Keep-Alive", "timeout=5")
			w.Header().Set("X-App", "yes")
			fmt.Fprint(w, "hello")
		}))
		h.register("app.example.com", addr, "app1", "i1", 0)
		base := h.frontend(mode)
		c := client()
		resp, body := get(t, c, base, "App.Example.com", "/p/a%2Fb?q=1", map[string]string{
			"X-Forwarded-For": "1.2.3.4", "Connection": "X-Secret", "X-Secret": "s", "Proxy-Authorization": "x", "Te": "deflate, trailers",
		})
		if resp.StatusCode != 200 || body != "hello" || resp.Header.Get("X-App") != "yes" || resp.Header.Get("Keep-Alive") != "" {
			t.Fatalf("status %d body %q headers %v", resp.StatusCode, body, resp.Header)
		}
		hdr := <-seen
		got := map[string]string{}
		if !strings.EqualFold(hdr.Get("Host"), "app.example.com") {
			t.Errorf("backend saw Host %q", hdr.Get("Host"))
		}
		for _, k := range []string{"Uri", "X-Forwarded-For", "X-Forwarded-Proto", "X-Secret", "Proxy-Authorization", "Te"} {
			got[k] = hdr.Get(k)
		}
		want := map[string]string{"Uri": "/p/a%2Fb?q=1", "X-Forwarded-For": "1.2.3.4, 127.0.0.1",
			"X-Forwarded-Proto": "http", "X-Secret": "", "Proxy-Authorization": "", "Te": "trailers"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("backend saw (-want +got):\n%s", diff)
		}
		if id := hdr.Get(RequestIDHeader); !uuidRE.MatchString(id) {
			t.Errorf("request id %q is not a UUID v4", id)
		}
		if ms := hdr.Get(RequestStartHeader); len(ms) != 13 {
			t.Errorf("X-Request-Start %q", ms)
		}
		get(t, c, base, "app.example.com", "/", map[string]string{RequestIDHeader: "keep-me", "X-Forwarded-Proto": "https"})
		hdr = <-seen
		if hdr.Get(RequestIDHeader) != "keep-me" || hdr.Get("X-Forwarded-Proto") != "https" {
			t.Errorf("client's id/proto not kept: %v", hdr)
		}
	})
}

func TestClearAnswers(t *testing.T) {
	t.Parallel()
	eachMode(t, nil, func(t *testing.T, h *harness, mode string) {
		base := h.frontend(mode)
		c := client()
		resp, body := get(t, c, base, "nowhere.example.com", "/", nil)
		if resp.StatusCode != 404 || !strings.Contains(body, "nowhere.example.com") {
			t.Errorf("unknown host: %d %q", resp.StatusCode, body)
		}
		// A known route whose only endpoint is gone: 503 during the
		// grace period, then 404.
		h.register("restarting.example.com", "127.0.0.1:1", "a", "i", 0)
		h.publish(protocol.RouterUnregister, protocol.Register{Host: "127.0.0.1", Port: 1, URIs: []string{"restarting.example.com"}})
		eventually(t, "unregister", func() bool { return h.r.Table().Endpoints() == 0 })
		resp, body = get(t, c, base, "restarting.example.com", "/", nil)
		if resp.StatusCode != 503 || !strings.Contains(body, "restarting.example.com") {
			t.Errorf("empty route: %d %q", resp.StatusCode, body)
		}
		h.clock.Advance(h.r.cfg.EmptyRouteGrace)
		if resp, _ = get(t, c, base, "restarting.example.com", "/", nil); resp.StatusCode != 404 {
			t.Errorf("empty past grace: %d", resp.StatusCode)
		}
		// Every backend refuses connections: 502 after MaxAttempts.
		for _, a := range []string{deadAddr(t), deadAddr(t)} {
			h.register("dead.example.com", a, "a", a, -1)
		}
		resp, body = get(t, c, base, "dead.example.com", "/", nil)
		if resp.StatusCode != 502 || !strings.Contains(body, "dead.example.com") {
			t.Errorf("dead backends: %d %q", resp.StatusCode, body)
		}
		m := h.r.metrics
		if m.notFound.Load() != 2 || m.noEndpoint.Load() != 1 || m.badGateway.Load() != 1 || m.backendErrors.Load() != 2 {
			t.Errorf("counters 404=%d 503=%d 502=%d backend=%d", m.notFound.Load(), m.noEndpoint.Load(), m.badGateway.Load(), m.backendErrors.Load())
		}
		if m.classes[4].Load() != 2 || m.classes[5].Load() != 2 {
			t.Errorf("classes %d %d", m.classes[4].Load(), m.classes[5].Load())
		}
	})
}

// deadAddr returns a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

func TestRetryAndMarkFailed(t *testing.T) {
	t.Parallel()
	eachMode(t, nil, func(t *testing.T, h *harness, mode string) {
		_, live := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "got %s", b)
		}))
		dead := deadAddr(t)
		h.register("app.example.com", live, "a", "live", 0)
		h.register("app.example.com", dead, "a", "dead", 1)
		base := h.frontend(mode)
		c := client()
		for i := range 20 {
			resp, b := send(t, c, "POST", base+"/", "app.example.com", strings.NewReader(fmt.Sprint(i)))
			if resp.StatusCode != 200 || string(b) != fmt.Sprintf("got %d", i) {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
			}
		}
		// The dead endpoint is marked: at most one failed attempt
		// until the backoff passes.
		if n := h.r.metrics.backendErrors.Load(); n != 1 {
			t.Errorf("backend errors %d, want exactly 1 (then avoided)", n)
		}
	})
}

func TestSpreadAndStickiness(t *testing.T) {
	t.Parallel()
	eachMode(t, nil, func(t *testing.T, h *harness, mode string) {
		for i := range 3 {
			id := fmt.Sprint("inst-", i)
			_, addr := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/login" {
					http.SetCookie(w, &http.Cookie{Name: "JSESSIONID", Value: "s" + id, Path: "/app", HttpOnly: true})
				}
				fmt.Fprint(w, id)
			}))
			h.register("app.example.com", addr, "a", id, i)
		}
		base := h.frontend(mode)
		c := client()
		counts := map[string]int{}
		for range 300 {
			_, body := get(t, c, base, "app.example.com", "/", nil)
			counts[body]++
		}
		for id, n := range counts {
			if n < 60 { // expected 100 each
				t.Errorf("%s got %d of 300 requests", id, n)
			}
		}
		if len(counts) != 3 {
			t.Errorf("spread over %v", counts)
		}
		resp, inst := get(t, c, base, "app.example.com", "/login", nil)
		var vcap *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == VCAPCookie {
				vcap = ck
			}
		}
		if vcap == nil || vcap.Value != inst || vcap.Path != "/app" || !vcap.HttpOnly {
			t.Fatalf("sticky cookie %+v for instance %s (cookies %v)", vcap, inst, resp.Header["Set-Cookie"])
		}
		for range 30 {
			if _, body := get(t, c, base, "app.example.com", "/", map[string]string{"Cookie": "JSESSIONID=x; __VCAP_ID__=" + inst}); body != inst {
				t.Fatalf("sticky request went to %s, want %s", body, inst)
			}
		}
		// A gone instance falls back to the others.
		if resp, _ := get(t, c, base, "app.example.com", "/", map[string]string{"Cookie": "__VCAP_ID__=gone"}); resp.StatusCode != 200 {
			t.Errorf("stale sticky cookie: %d", resp.StatusCode)
		}
	})
}

func TestInstanceHeader(t *testing.T) {
	t.Parallel()
	eachMode(t, nil, func(t *testing.T, h *harness, mode string) {
		for i := range 3 {
			id := fmt.Sprint("inst-", i)
			_, addr := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, id) }))
			h.register("app.example.com", addr, "app1", id, i)
		}
		base := h.frontend(mode)
		c := client()
		tests := []struct {
			header string
			status int
			body   string
		}{
			{"app1:2", 200, "inst-2"},
			{"app1:0", 200, "inst-0"},
			{"app1:7", 404, ""},
			{"other:0", 404, ""},
			{"app1", 400, ""},
			{"app1:x", 400, ""},
			{":1", 400, ""},
		}
		for _, tt := range tests {
			for range 5 {
				resp, body := get(t, c, base, "app.example.com", "/", map[string]string{InstanceHeader: tt.header})
				if resp.StatusCode != tt.status || (tt.body != "" && body != tt.body) {
					t.Errorf("%s: %d %q, want %d %q", tt.header, resp.StatusCode, body, tt.status, tt.body)
				}
			}
		}
	})
}

func TestWebSocket(t *testing.T) {
	t.Parallel()
	eachMode(t, nil, func(t *testing.T, h *harness, mode string) {
		_, addr := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, msg, err := c.Read(r.Context())
				if err != nil {
					return
				}
				if err := c.Write(r.Context(), typ, append([]byte("echo "), msg...)); err != nil {
					return
				}
			}
		}))
		h.register("ws.example.com", addr, "a", "i", 0)
		base := h.frontend(mode)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/sock", &websocket.DialOptions{Host: "ws.example.com"})
		if err != nil {
			t.Fatalf("dial: %v (%v)", err, resp)
		}
		defer c.CloseNow()
		for i := range 10 {
			msg := strings.Repeat("x", i*1000)
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_, got, err := c.Read(ctx)
			if err != nil || string(got) != "echo "+msg {
				t.Fatalf("echo %d: %v %d bytes", i, err, len(got))
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	})
}

// gatedReader yields size bytes in 32 KB chunks; after the first chunk it
// blocks until gate is closed.
type gatedReader struct {
	size, sent int64
	gate       chan struct{}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.sent >= g.size {
		return 0, io.EOF
	}
	if g.sent > 0 {
		<-g.gate
	}
	n := int64(min(len(p), 32<<10))
	n = min(n, g.size-g.sent)
	copy(p[:n], pattern[g.sent%(32<<10):]) // pattern has 32 KB to spare
	g.sent += n
	return int(n), nil
}

func TestStreamingUpload(t *testing.T) {
	t.Parallel()
	const size = 64 << 20
	eachMode(t, nil, func(t *testing.T, h *harness, mode string) {
		gate := make(chan struct{})
		var once sync.Once
		_, addr := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hash := sha256.New()
			var n int64
			buf := make([]byte, 32<<10)
			for {
				m, err := r.Body.Read(buf)
				hash.Write(buf[:m])
				n += int64(m)
				if n > 0 {
					// The backend has bytes while the client is still
					// blocked sending: the router streams.
					once.Do(func() { close(gate) })
				}
				if err != nil {
					break
				}
			}
			fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(hash.Sum(nil)))
		}))
		h.register("up.example.com", addr, "a", "i", 0)
		base := h.frontend(mode)
		want := sha256.New()
		io.Copy(want, &gatedReader{size: size, gate: closedChan()})
		req, _ := http.NewRequest("PUT", base+"/upload", &gatedReader{size: size, gate: gate})
		req.Host = "up.example.com"
		req.ContentLength = size
		resp, err := streamClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if exp := fmt.Sprintf("%d %s", size, hex.EncodeToString(want.Sum(nil))); string(b) != exp {
			t.Errorf("backend got %q, want %q", b, exp)
		}

		// Chunked (no Content-Length), smaller: the framing differs.
		const small = 4 << 20
		want.Reset()
		io.Copy(want, &gatedReader{size: small, gate: closedChan()})
		gate, once = make(chan struct{}), sync.Once{}
		req, _ = http.NewRequest("POST", base+"/upload", io.MultiReader(&gatedReader{size: small, gate: gate}))
		req.Host = "up.example.com"
		resp, err = streamClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if exp := fmt.Sprintf("%d %s", small, hex.EncodeToString(want.Sum(nil))); string(b) != exp {
			t.Errorf("chunked: backend got %q, want %q", b, exp)
		}
	})
}

// pattern is what gatedReader repeats with a period of 32 KB.
var pattern = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i + i>>15)
	}
	return b
}()

// streamClient allows for 64 MB transfers on a loaded machine under -race.
func streamClient() *http.Client { return &http.Client{Timeout: 60 * time.Second} }

func closedChan() chan struct{} { c := make(chan struct{}); close(c); return c }

func TestStreamingDownload(t *testing.T) {
	t.Parallel()
	const size, chunkedSize = 64 << 20, 8 << 20
	eachMode(t, nil, func(t *testing.T, h *harness, mode string) {
		gate := make(chan struct{})
		_, addr := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := int64(size)
			if r.URL.Query().Get("chunked") == "" {
				w.Header().Set("Content-Length", fmt.Sprint(size))
			} else {
				n = chunkedSize // smaller: only the framing differs
			}
			first := make([]byte, 32<<10)
			w.Write(first)
			w.(http.Flusher).Flush()
			<-gate
			io.CopyN(w, &gatedReader{size: n, gate: closedChan()}, n-int64(len(first)))
		}))
		h.register("down.example.com", addr, "a", "i", 0)
		base := h.frontend(mode)
		for _, q := range []string{"", "?chunked=1"} {
			gate = make(chan struct{})
			req, _ := http.NewRequest("GET", base+"/file"+q, nil)
			req.Host = "down.example.com"
			resp, err := streamClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			// Headers and the first bytes arrive while the backend is
			// still blocked: the router does not buffer the response.
			first := make([]byte, 1024)
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatal(err)
			}
			close(gate)
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if want := map[string]int64{"": size, "?chunked=1": chunkedSize}[q]; err != nil || n+1024 != want {
				t.Errorf("%s: read %d, err %v", q, n+1024, err)
			}
		}
	})
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var buf syncbuf.Buffer
			h := newHarness(t, func(c *Config) { c.AccessLog = &buf })
			_, addr := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "12345") }))
			h.register("log.example.com", addr, "app-42", "i", 0)
			base := h.frontend(mode)
			get(t, client(), base, "log.example.com", "/x?y=1", map[string]string{"User-Agent": "tester", "Referer": "http://ref/", RequestIDHeader: "rid-1"})
			get(t, client(), base, "nope.example.com", "/", nil)
			eventually(t, "two log lines", func() bool { return strings.Count(buf.String(), "\n") == 2 })
			lines := strings.Split(buf.String(), "\n")
			want := regexp.MustCompile(`^log\.example\.com - \[[^]]+\] "GET /x\?y=1 HTTP/1\.1" 200 5 "http://ref/" "tester" "127\.0\.0\.1:\d+" "` +
				regexp.QuoteMeta(addr) + `" x_forwarded_for:"127\.0\.0\.1" vcap_request_id:"rid-1" response_time:\d+\.\d{9} app_id:"app-42"$`)
			if !want.MatchString(lines[0]) {
				t.Errorf("line %q", lines[0])
			}
			if !strings.Contains(lines[1], `" 404 `) {
				t.Errorf("404 line %q", lines[1])
			}
		})
	}
}

func TestConcurrentRegisterAndRoute(t *testing.T) {
	t.Parallel()
	eachMode(t, func(c *Config) { c.Strategy = 1 }, func(t *testing.T, h *harness, mode string) {
		var hits atomic.Int64
		_, addr := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
		h.register("app.example.com", addr, "a", "i", 0)
		base := h.frontend(mode)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000 && ctx.Err() == nil; i++ {
				m := protocol.Register{Host: "127.0.0.1", Port: 20000 + i%50, URIs: []string{fmt.Sprintf("h%d.example.com", i%20), "app.example.com/x"}}
				h.publish(protocol.RouterRegister, m)
				if i%2 == 0 {
					h.publish(protocol.RouterUnregister, m)
				}
			}
		}()
		c := client()
		var clients sync.WaitGroup
		for range 4 {
			clients.Add(1)
			go func() {
				defer clients.Done()
				for range 50 {
					req, _ := http.NewRequest("GET", base+"/", nil)
					req.Host = "app.example.com"
					resp, err := c.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						t.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			}()
		}
		clients.Wait()
		cancel()
		wg.Wait()
		if hits.Load() != 200 {
			t.Errorf("backend saw %d requests, want 200", hits.Load())
		}
	})
}

// A backend that delimits a large body by closing the connection (no
// Content-Length, not chunked) must still be relayed in full.
func TestCloseDelimitedBody(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	body := strings.Repeat("x", 300<<10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				if _, err := c.Read(buf); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"+body)
			}()
		}
	}()
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, nil)
			h.register("old.example.com", ln.Addr().String(), "a", "i", 0)
			req, _ := http.NewRequest("GET", h.frontend(mode)+"/", nil)
			req.Host = "old.example.com"
			resp, err := client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || err != nil || string(got) != body {
				t.Errorf("status %d, %d bytes, err %v", resp.StatusCode, len(got), err)
			}
		})
	}
}
