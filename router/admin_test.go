package router

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestAdminHandler(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	_, addr := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	h.register("app.example.com", addr, "a", "i", 0)
	base := h.frontend("serve")
	get(t, client(), base, "app.example.com", "/", nil)
	get(t, client(), base, "nope.example.com", "/", nil)

	admin := httptest.NewServer(h.r.AdminHandler())
	t.Cleanup(admin.Close)
	resp, body := get(t, client(), admin.URL, "admin", "/healthz", nil)
	if resp.StatusCode != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
	_, body = get(t, client(), admin.URL, "admin", "/varz", nil)
	var v Varz
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	if v.Type != "Router" || v.Requests != 2 || v.URLs != 1 || v.Droplets != 1 || v.Responses["responses_2xx"] != 1 || v.RouterErrors["unknown_route"] != 1 {
		t.Errorf("varz %+v", v)
	}
	_, body = get(t, client(), admin.URL, "admin", "/metrics", nil)
	for _, want := range []string{
		`kiln_router_requests_total{class="2xx"} 1`,
		`kiln_router_router_errors_total{reason="unknown_route"} 1`,
		`kiln_router_routes 1`,
		`kiln_router_endpoints 1`,
		`kiln_router_registrations_total 1`,
		`kiln_router_request_duration_seconds_count 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestRegistererReceivesMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h := newHarness(t, nil)
	if _, err := New(h.r.cfg, Deps{Bus: h.bus, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) < 10 {
		t.Errorf("gathered %d families, err %v", len(mfs), err)
	}
}

func TestServeTLS(t *testing.T) {
	t.Parallel()
	certSrv := httptest.NewTLSServer(http.NotFoundHandler()) // borrow its certificate
	certSrv.Close()
	h := newHarness(t, func(c *Config) {
		c.TLS = &tls.Config{Certificates: certSrv.TLS.Certificates}
	})
	_, addr := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Header.Get("X-Forwarded-Proto"))
	}))
	h.register("secure.example.com", addr, "a", "i", 0)
	base := strings.Replace(h.frontend("serve"), "http://", "https://", 1)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, body := get(t, c, base, "secure.example.com", "/", nil)
	if resp.StatusCode != 200 || body != "https" || resp.TLS == nil {
		t.Errorf("TLS: %d %q", resp.StatusCode, body)
	}
}

func TestKeepAliveAndBodilessResponses(t *testing.T) {
	t.Parallel()
	eachMode(t, nil, func(t *testing.T, h *harness, mode string) {
		var conns atomic.Int64
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/empty":
				w.WriteHeader(http.StatusNoContent)
			case "/notmod":
				w.WriteHeader(http.StatusNotModified)
			default:
				w.Header().Set("Content-Length", "5")
				io.WriteString(w, "hello")
			}
		}))
		s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		}
		s.Start()
		t.Cleanup(s.Close)
		h.register("app.example.com", s.Listener.Addr().String(), "a", "i", 0)
		base := h.frontend(mode)
		c := client()
		for range 50 {
			if resp, body := get(t, c, base, "app.example.com", "/", nil); resp.StatusCode != 200 || body != "hello" {
				t.Fatalf("GET: %d %q", resp.StatusCode, body)
			}
		}
		if n := conns.Load(); n > 2 {
			t.Errorf("backend saw %d connections for 50 sequential requests: no keep-alive", n)
		}
		for _, tt := range []struct {
			method, path string
			status       int
			length       int64
		}{
			{"HEAD", "/", 200, 5},
			{"GET", "/empty", 204, 0},
			{"GET", "/notmod", 304, 0},
		} {
			resp, b := send(t, c, tt.method, base+tt.path, "app.example.com", nil)
			if resp.StatusCode != tt.status || len(b) != 0 || (tt.method == "HEAD" && resp.ContentLength != tt.length) {
				t.Errorf("%s %s: %d, %d bytes, length %d", tt.method, tt.path, resp.StatusCode, len(b), resp.ContentLength)
			}
		}
	})
}
