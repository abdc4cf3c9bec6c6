package osb_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/services/membroker"
	"github.com/kiln-paas/kiln/services/osb"
)

// raw sends one request to h and returns the status and decoded JSON body.
func raw(t *testing.T, h http.Handler, method, target, body string, hdr map[string]string) (int, map[string]any, http.Header) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	req.SetBasicAuth("u", "p")
	req.Header.Set(osb.HeaderAPIVersion, "2.17")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, target, ct)
	}
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object: %v", method, target, rec.Body.String(), err)
	}
	return rec.Code, out, rec.Header()
}

func newServer(t *testing.T, mcfg membroker.Config, reg prometheus.Registerer) http.Handler {
	t.Helper()
	mem, err := membroker.New(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := osb.NewServer(mem, osb.Config{Username: "u", Password: "p", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const provBody = `{"service_id":"kiln-memory-service","plan_id":"kiln-memory-free","context":{"platform":"x","space_guid":"s"}}`
const bindBody = `{"service_id":"kiln-memory-service","plan_id":"kiln-memory-free","bind_resource":{"app_guid":"app"}}`

func TestServerWire(t *testing.T) {
	t.Parallel()
	h := newServer(t, membroker.DefaultConfig(), nil)
	asyncH := newServer(t, membroker.Config{Async: true}, nil)
	tests := []struct {
		name         string
		h            http.Handler
		method, path string
		body         string
		hdr          map[string]string
		status       int
		want         map[string]any // expected body (nil: not checked)
	}{
		{"no credentials", h, "GET", "/v2/catalog", "", map[string]string{"Authorization": ""}, 401, nil},
		{"wrong password", h, "GET", "/v2/catalog", "", map[string]string{"Authorization": "Basic dTp4"}, 401, nil},
		{"no version", h, "GET", "/v2/catalog", "", map[string]string{osb.HeaderAPIVersion: ""}, 412, nil},
		{"old version", h, "GET", "/v2/catalog", "", map[string]string{osb.HeaderAPIVersion: "2.12"}, 412, nil},
		{"version 3", h, "GET", "/v2/catalog", "", map[string]string{osb.HeaderAPIVersion: "3.0"}, 412, nil},
		{"garbage version", h, "GET", "/v2/catalog", "", map[string]string{osb.HeaderAPIVersion: "two"}, 412, nil},
		{"newer minor", h, "GET", "/v2/catalog", "", map[string]string{osb.HeaderAPIVersion: "2.99"}, 200, nil},
		{"unknown route", h, "GET", "/v2/nope", "", nil, 404, nil},
		{"provision", h, "PUT", "/v2/service_instances/i1", provBody, nil, 201,
			map[string]any{"dashboard_url": "memory://dashboard/i1"}},
		{"provision again", h, "PUT", "/v2/service_instances/i1", provBody, nil, 200,
			map[string]any{"dashboard_url": "memory://dashboard/i1"}},
		{"provision conflict", h, "PUT", "/v2/service_instances/i1", strings.Replace(provBody, `"s"`, `"t"`, 1), nil, 409, nil},
		{"provision malformed", h, "PUT", "/v2/service_instances/i2", `{"service_id":`, nil, 400, nil},
		{"provision trailing data", h, "PUT", "/v2/service_instances/i2", provBody + `{}`, nil, 400, nil},
		{"provision no plan", h, "PUT", "/v2/service_instances/i2", `{"service_id":"kiln-memory-service"}`, nil, 400, nil},
		{"provision too big", h, "PUT", "/v2/service_instances/i2", `{"parameters":{"x":"` + strings.Repeat("a", 2<<20) + `"}}`, nil, 400, nil},
		{"bad accepts_incomplete", h, "PUT", "/v2/service_instances/i2?accepts_incomplete=maybe", provBody, nil, 400, nil},
		{"bind", h, "PUT", "/v2/service_instances/i1/service_bindings/b1", bindBody, nil, 201, nil},
		{"bind again", h, "PUT", "/v2/service_instances/i1/service_bindings/b1", bindBody, nil, 200, nil},
		{"bind missing instance", h, "PUT", "/v2/service_instances/zz/service_bindings/b1", bindBody, nil, 404, nil},
		{"unbind", h, "DELETE", "/v2/service_instances/i1/service_bindings/b1?service_id=kiln-memory-service&plan_id=kiln-memory-free", "", nil, 200, map[string]any{}},
		{"unbind gone", h, "DELETE", "/v2/service_instances/i1/service_bindings/b1", "", nil, 410, nil},
		{"last operation", h, "GET", "/v2/service_instances/i1/last_operation", "", nil, 200,
			map[string]any{"state": "succeeded", "description": "provisioned"}},
		{"deprovision", h, "DELETE", "/v2/service_instances/i1?service_id=kiln-memory-service&plan_id=kiln-memory-free", "", nil, 200, map[string]any{}},
		{"deprovision gone", h, "DELETE", "/v2/service_instances/i1", "", nil, 410, nil},
		{"last operation gone", h, "GET", "/v2/service_instances/i1/last_operation", "", nil, 410, nil},
		{"async required", asyncH, "PUT", "/v2/service_instances/a1", provBody, nil, 422,
			map[string]any{"error": "AsyncRequired", "description": "membroker: provision a1: services: broker requires accepts_incomplete"}},
		{"async accepted", asyncH, "PUT", "/v2/service_instances/a1?accepts_incomplete=true", provBody, nil, 202,
			map[string]any{"operation": "provision-1", "dashboard_url": "memory://dashboard/a1"}},
		{"concurrency", asyncH, "DELETE", "/v2/service_instances/a1?accepts_incomplete=true", "", nil, 422, nil},
	}
	for _, tt := range tests { // sequential: later cases depend on earlier ones
		status, body, hdr := raw(t, tt.h, tt.method, tt.path, tt.body, tt.hdr)
		if status != tt.status {
			t.Errorf("%s: status %d, want %d (body %v)", tt.name, status, tt.status, body)
			continue
		}
		if tt.want != nil {
			if diff := cmp.Diff(tt.want, body); diff != "" {
				t.Errorf("%s: body (-want +got):\n%s", tt.name, diff)
			}
		}
		if status >= 400 {
			if d, _ := body["description"].(string); d == "" {
				t.Errorf("%s: error body %v has no description", tt.name, body)
			}
		}
		if status == 401 && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tt.name)
		}
	}
}

func TestServerRequestIdentityAndMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	h := newServer(t, membroker.DefaultConfig(), reg)
	_, _, hdr := raw(t, h, "GET", "/v2/catalog", "", map[string]string{osb.HeaderRequestIdentity: "req-42"})
	if got := hdr.Get(osb.HeaderRequestIdentity); got != "req-42" {
		t.Errorf("request identity echoed as %q", got)
	}
	raw(t, h, "GET", "/v2/catalog", "", map[string]string{osb.HeaderAPIVersion: ""})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "kiln_osb_server_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var key string
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + " "
			}
			got[strings.TrimSpace(key)] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"code=200 route=catalog": 1, "code=412 route=catalog": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request counters (-want +got):\n%s", diff)
	}
	// A second server on the same registry must fail, not panic.
	mem, _ := membroker.New(membroker.DefaultConfig())
	if _, err := osb.NewServer(mem, osb.Config{Registerer: reg}); err == nil {
		t.Error("second NewServer on one registry succeeded")
	}
}

func TestServerWithoutAuth(t *testing.T) {
	t.Parallel()
	mem, _ := membroker.New(membroker.DefaultConfig())
	s, err := osb.NewServer(mem, osb.Config{})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/v2/catalog", nil)
	req.Header.Set(osb.HeaderAPIVersion, osb.APIVersion)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("status %d without configured credentials", rec.Code)
	}
}
