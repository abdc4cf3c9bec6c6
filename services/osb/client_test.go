package osb_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/services/osb"
)

// fixed answers every request with one status and body and records the
// last request.
func fixed(t *testing.T, status int, body string) (*osb.Client, *http.Request) {
	t.Helper()
	var last http.Request
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		last = *r.Clone(context.Background())
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(ts.Close)
	cl, err := osb.NewClient(osb.Config{URL: ts.URL + "/broker/", Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	return cl, &last
}

func TestClientStatusMapping(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	provision := func(cl *osb.Client) error {
		_, err := cl.Provision(ctx, services.ProvisionRequest{InstanceID: "i", ServiceID: "s", PlanID: "p"})
		return err
	}
	bind := func(cl *osb.Client) error {
		_, err := cl.Bind(ctx, services.BindRequest{InstanceID: "i", BindingID: "b", ServiceID: "s", PlanID: "p"})
		return err
	}
	unbind := func(cl *osb.Client) error {
		return cl.Unbind(ctx, services.UnbindRequest{InstanceID: "i", BindingID: "b"})
	}
	deprovision := func(cl *osb.Client) error {
		_, err := cl.Deprovision(ctx, services.DeprovisionRequest{InstanceID: "i"})
		return err
	}
	poll := func(cl *osb.Client) error {
		_, err := cl.LastOperation(ctx, services.LastOperationRequest{InstanceID: "i"})
		return err
	}
	tests := []struct {
		name   string
		status int
		body   string
		call   func(*osb.Client) error
		want   error
		desc   string
	}{
		{"400", 400, `{"description":"bad plan"}`, provision, services.ErrBadRequest, "bad plan"},
		{"401", 401, `{}`, provision, osb.ErrUnauthorized, ""},
		{"409 provision", 409, `{"description":"taken"}`, provision, services.ErrInstanceExists, "taken"},
		{"409 bind", 409, `{}`, bind, services.ErrBindingExists, ""},
		{"404 bind", 404, `{}`, bind, services.ErrInstanceNotFound, ""},
		{"410 deprovision", 410, `{}`, deprovision, services.ErrInstanceNotFound, ""},
		{"410 unbind", 410, `{}`, unbind, services.ErrBindingNotFound, ""},
		{"410 last operation", 410, `{}`, poll, services.ErrInstanceNotFound, ""},
		{"412", 412, `{"description":"too old"}`, provision, osb.ErrAPIVersion, "too old"},
		{"422 async", 422, `{"error":"AsyncRequired","description":"async only"}`, provision, services.ErrAsyncRequired, "async only"},
		{"422 concurrency", 422, `{"error":"ConcurrencyError"}`, deprovision, services.ErrConcurrency, ""},
		{"422 requires app", 422, `{"error":"RequiresApp"}`, bind, services.ErrBadRequest, ""},
		{"500 html", 500, `<html>oops</html>`, provision, services.ErrUnavailable, "<html>oops</html>"},
		{"503", 503, `{"description":"maintenance"}`, poll, services.ErrUnavailable, "maintenance"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cl, _ := fixed(t, tt.status, tt.body)
			err := tt.call(cl)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want errors.Is %v", err, tt.want)
			}
			var oe *osb.Error
			if !errors.As(err, &oe) || oe.StatusCode != tt.status || oe.Description != tt.desc {
				t.Errorf("err = %#v, want status %d description %q", oe, tt.status, tt.desc)
			}
		})
	}
}

func TestClientRequestShape(t *testing.T) {
	t.Parallel()
	cl, last := fixed(t, 202, `{"operation":"op 1"}`)
	res, err := cl.Deprovision(context.Background(), services.DeprovisionRequest{InstanceID: "i/1", ServiceID: "s", PlanID: "p", AcceptsIncomplete: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Async || res.Operation != "op 1" {
		t.Errorf("deprovision = %+v", res)
	}
	if got := last.Header.Get(osb.HeaderAPIVersion); got != osb.APIVersion {
		t.Errorf("version header %q", got)
	}
	if last.Header.Get(osb.HeaderRequestIdentity) == "" {
		t.Error("no request identity")
	}
	if u, p, ok := last.BasicAuth(); !ok || u != "u" || p != "p" {
		t.Errorf("basic auth %q %q %v", u, p, ok)
	}
	if got, want := last.URL.EscapedPath(), "/broker/v2/service_instances/i%2F1"; got != want {
		t.Errorf("path %q, want %q", got, want)
	}
	q := last.URL.Query()
	if q.Get("accepts_incomplete") != "true" || q.Get("service_id") != "s" || q.Get("plan_id") != "p" {
		t.Errorf("query %v", q)
	}
}

func TestClientBadAnswers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl, _ := fixed(t, 200, `{"state":"pondering"}`)
	if _, err := cl.LastOperation(ctx, services.LastOperationRequest{InstanceID: "i"}); err == nil {
		t.Error("unknown state accepted")
	}
	cl, _ = fixed(t, 200, `not json`)
	if _, err := cl.Catalog(ctx); err == nil {
		t.Error("non-JSON catalog accepted")
	}
	// A broker that is not listening is unavailable.
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL
	ts.Close()
	down, err := osb.NewClient(osb.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.Catalog(ctx); !errors.Is(err, services.ErrUnavailable) {
		t.Errorf("closed broker: %v, want ErrUnavailable", err)
	}
	// A cancelled context reports the cancellation, not unavailability.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := down.Catalog(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  osb.Config
		ok   bool
	}{
		{"defaults", osb.DefaultConfig(), true},
		{"zero", osb.Config{}, true},
		{"url", osb.Config{URL: "https://broker.example.com/x"}, true},
		{"relative url", osb.Config{URL: "/v2"}, false},
		{"ftp url", osb.Config{URL: "ftp://x"}, false},
		{"user only", osb.Config{Username: "u"}, false},
		{"bad version", osb.Config{APIVersion: "2"}, false},
		{"version 1", osb.Config{APIVersion: "1.9"}, false},
		{"bad min version", osb.Config{MinAPIVersion: "x.y"}, false},
		{"negative body", osb.Config{MaxBodyBytes: -1}, false},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	if _, err := osb.NewClient(osb.Config{}); err == nil {
		t.Error("NewClient without URL succeeded")
	}
	if _, err := osb.NewServer(nil, osb.Config{}); err == nil {
		t.Error("NewServer with nil broker succeeded")
	}
}

func TestClientCatalogDefaults(t *testing.T) {
	t.Parallel()
	cl, _ := fixed(t, 200, `{"services":[{"id":"s","name":"redis","description":"d","bindable":true,"plan_updateable":true,
		"metadata":{"x":1},"plans":[{"id":"p1","name":"small","description":"d"},{"id":"p2","name":"big","description":"d","free":false}]}]}`)
	cat, err := cl.Catalog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := services.Catalog{Services: []services.Service{{ID: "s", Name: "redis", Description: "d", Bindable: true, Plans: []services.Plan{
		{ID: "p1", Name: "small", Description: "d", Free: true},
		{ID: "p2", Name: "big", Description: "d", Free: false},
	}}}}
	if diff := cmp.Diff(want, cat); diff != "" {
		t.Errorf("catalog (-want +got):\n%s", diff)
	}
}
