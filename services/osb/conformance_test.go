package osb_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/services/membroker"
	"github.com/kiln-paas/kiln/services/osb"
)

// pair is a membroker served by kiln's OSB server and consumed by kiln's
// OSB client over real HTTP on loopback.
type pair struct {
	mem    *membroker.Broker
	client *osb.Client
	url    string
}

func newPair(t *testing.T, cfg membroker.Config) pair {
	t.Helper()
	mem, err := membroker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := osb.NewServer(mem, osb.Config{Username: "broker", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	hc := ts.Client()
	hc.Timeout = 10 * time.Second
	cl, err := osb.NewClient(osb.Config{URL: ts.URL, Username: "broker", Password: "s3cret", HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	return pair{mem: mem, client: cl, url: ts.URL}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const (
	svcID  = "kiln-memory-service"
	planID = "kiln-memory-free"
)

func TestConformanceCatalog(t *testing.T) {
	t.Parallel()
	p := newPair(t, membroker.DefaultConfig())
	got, err := p.client.Catalog(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(membroker.DefaultCatalog(), got); diff != "" {
		t.Errorf("catalog over OSB (-want +got):\n%s", diff)
	}
}

func TestConformanceSyncLifecycle(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	p := newPair(t, membroker.DefaultConfig())
	preq := services.ProvisionRequest{InstanceID: "inst-1", ServiceID: svcID, PlanID: planID, SpaceID: "space-1",
		Parameters: map[string]any{"size": "small"}}

	res, err := p.client.Provision(ctx, preq)
	if err != nil {
		t.Fatal(err)
	}
	if res.Async || res.AlreadyExists || res.DashboardURL == "" {
		t.Errorf("first provision = %+v, want sync, new, with dashboard", res)
	}
	res, err = p.client.Provision(ctx, preq)
	if err != nil || !res.AlreadyExists {
		t.Errorf("repeated provision = %+v, %v; want AlreadyExists", res, err)
	}
	other := preq
	other.Parameters = map[string]any{"size": "large"}
	if _, err := p.client.Provision(ctx, other); !errors.Is(err, services.ErrInstanceExists) {
		t.Errorf("conflicting provision: %v, want ErrInstanceExists", err)
	}

	op, err := p.client.LastOperation(ctx, services.LastOperationRequest{InstanceID: "inst-1", ServiceID: svcID, PlanID: planID})
	if err != nil || op.State != services.StateSucceeded {
		t.Errorf("last operation of a sync instance = %+v, %v", op, err)
	}

	breq := services.BindRequest{InstanceID: "inst-1", BindingID: "bind-1", ServiceID: svcID, PlanID: planID, AppID: "app-1"}
	b, err := p.client.Bind(ctx, breq)
	if err != nil {
		t.Fatal(err)
	}
	if b.AlreadyExists || !strings.HasPrefix(b.Credentials["uri"].(string), "memory://bind-1:") {
		t.Errorf("bind = %+v", b)
	}
	again, err := p.client.Bind(ctx, breq)
	if err != nil || !again.AlreadyExists {
		t.Fatalf("repeated bind = %+v, %v", again, err)
	}
	if diff := cmp.Diff(b.Credentials, again.Credentials); diff != "" {
		t.Errorf("repeated bind credentials differ (-first +again):\n%s", diff)
	}
	otherApp := breq
	otherApp.AppID = "app-2"
	if _, err := p.client.Bind(ctx, otherApp); !errors.Is(err, services.ErrBindingExists) {
		t.Errorf("conflicting bind: %v, want ErrBindingExists", err)
	}

	ureq := services.UnbindRequest{InstanceID: "inst-1", BindingID: "bind-1", ServiceID: svcID, PlanID: planID}
	if err := p.client.Unbind(ctx, ureq); err != nil {
		t.Fatal(err)
	}
	if err := p.client.Unbind(ctx, ureq); !errors.Is(err, services.ErrBindingNotFound) {
		t.Errorf("second unbind: %v, want ErrBindingNotFound", err)
	}

	dreq := services.DeprovisionRequest{InstanceID: "inst-1", ServiceID: svcID, PlanID: planID}
	dres, err := p.client.Deprovision(ctx, dreq)
	if err != nil || dres.Async {
		t.Fatalf("deprovision = %+v, %v", dres, err)
	}
	if _, err := p.client.Deprovision(ctx, dreq); !errors.Is(err, services.ErrInstanceNotFound) {
		t.Errorf("second deprovision: %v, want ErrInstanceNotFound", err)
	}

	// What the broker saw is what the client sent.
	calls := p.mem.Calls()
	if diff := cmp.Diff(membroker.Call{Op: membroker.OpProvision, InstanceID: "inst-1", ServiceID: svcID, PlanID: planID,
		Parameters: map[string]any{"size": "small"}}, calls[0]); diff != "" {
		t.Errorf("first recorded call (-want +got):\n%s", diff)
	}
	want := membroker.Call{Op: membroker.OpBind, InstanceID: "inst-1", BindingID: "bind-1", ServiceID: svcID, PlanID: planID, AppID: "app-1"}
	var found bool
	for _, c := range calls {
		if c.Op == membroker.OpBind {
			found = cmp.Equal(c, want)
			break
		}
	}
	if !found {
		t.Errorf("first recorded bind is not %+v; calls: %+v", want, calls)
	}
}

func TestConformanceAsyncLifecycle(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	p := newPair(t, membroker.Config{Async: true, AsyncPolls: 2})
	preq := services.ProvisionRequest{InstanceID: "inst-a", ServiceID: svcID, PlanID: planID}

	if _, err := p.client.Provision(ctx, preq); !errors.Is(err, services.ErrAsyncRequired) {
		t.Fatalf("provision without accepts_incomplete: %v, want ErrAsyncRequired", err)
	}
	preq.AcceptsIncomplete = true
	res, err := p.client.Provision(ctx, preq)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Async || res.Operation == "" {
		t.Fatalf("async provision = %+v, want Async with an operation", res)
	}
	// While provisioning, binding and deprovisioning are refused.
	if _, err := p.client.Bind(ctx, services.BindRequest{InstanceID: "inst-a", BindingID: "b", ServiceID: svcID, PlanID: planID}); !errors.Is(err, services.ErrConcurrency) {
		t.Errorf("bind while provisioning: %v, want ErrConcurrency", err)
	}
	lreq := services.LastOperationRequest{InstanceID: "inst-a", ServiceID: svcID, PlanID: planID, Operation: res.Operation}
	var states []string
	for range 3 {
		op, err := p.client.LastOperation(ctx, lreq)
		if err != nil {
			t.Fatal(err)
		}
		states = append(states, op.State)
	}
	want := []string{services.StateInProgress, services.StateInProgress, services.StateSucceeded}
	if diff := cmp.Diff(want, states); diff != "" {
		t.Errorf("polled states (-want +got):\n%s", diff)
	}

	dres, err := p.client.Deprovision(ctx, services.DeprovisionRequest{InstanceID: "inst-a", ServiceID: svcID, PlanID: planID, AcceptsIncomplete: true})
	if err != nil || !dres.Async {
		t.Fatalf("async deprovision = %+v, %v", dres, err)
	}
	op, err := services.WaitForOperation(ctx, p.client, services.LastOperationRequest{InstanceID: "inst-a", ServiceID: svcID,
		PlanID: planID, Operation: dres.Operation}, time.Millisecond)
	if err != nil || op.State != services.StateSucceeded {
		t.Fatalf("WaitForOperation(deprovision) = %+v, %v", op, err)
	}
	// The instance is gone: a poll without an operation is 410 Gone.
	if _, err := p.client.LastOperation(ctx, services.LastOperationRequest{InstanceID: "inst-a"}); !errors.Is(err, services.ErrInstanceNotFound) {
		t.Errorf("poll of a deleted instance: %v, want ErrInstanceNotFound", err)
	}
}

func TestConformanceErrors(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	p := newPair(t, membroker.Config{Fail: func(c membroker.Call) error {
		if c.InstanceID == "broken" {
			return errors.New("disk on fire")
		}
		if c.InstanceID == "down" {
			return services.ErrUnavailable
		}
		return nil
	}})
	tests := []struct {
		name string
		call func() error
		want error
		desc string // a substring the description must keep
	}{
		{"unknown plan", func() error {
			_, err := p.client.Provision(ctx, services.ProvisionRequest{InstanceID: "x", ServiceID: svcID, PlanID: "nope"})
			return err
		}, services.ErrBadRequest, `no plan "nope"`},
		{"unknown service", func() error {
			_, err := p.client.Provision(ctx, services.ProvisionRequest{InstanceID: "x", ServiceID: "nope", PlanID: planID})
			return err
		}, services.ErrBadRequest, "unknown service"},
		{"bind to missing instance", func() error {
			_, err := p.client.Bind(ctx, services.BindRequest{InstanceID: "missing", BindingID: "b", ServiceID: svcID, PlanID: planID})
			return err
		}, services.ErrInstanceNotFound, "missing"},
		{"deprovision missing instance", func() error {
			_, err := p.client.Deprovision(ctx, services.DeprovisionRequest{InstanceID: "missing", ServiceID: svcID, PlanID: planID})
			return err
		}, services.ErrInstanceNotFound, "instance not found"},
		{"unbind missing binding", func() error {
			return p.client.Unbind(ctx, services.UnbindRequest{InstanceID: "missing", BindingID: "b"})
		}, services.ErrBindingNotFound, "binding not found"},
		{"broker internal error", func() error {
			_, err := p.client.Provision(ctx, services.ProvisionRequest{InstanceID: "broken", ServiceID: svcID, PlanID: planID})
			return err
		}, nil, "disk on fire"},
		{"backing service down", func() error {
			_, err := p.client.Provision(ctx, services.ProvisionRequest{InstanceID: "down", ServiceID: svcID, PlanID: planID})
			return err
		}, services.ErrUnavailable, "broker unavailable"},
		{"ids needing escapes", func() error {
			_, err := p.client.Provision(ctx, services.ProvisionRequest{InstanceID: "a/b?c#d e", ServiceID: svcID, PlanID: planID})
			return err
		}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if tt.want == nil && tt.desc == "" {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("err = nil")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.want)
			}
			var oe *osb.Error
			if !errors.As(err, &oe) {
				t.Fatalf("err %v is not an *osb.Error", err)
			}
			if !strings.Contains(oe.Description, tt.desc) {
				t.Errorf("description %q does not contain %q", oe.Description, tt.desc)
			}
		})
	}
	if ids := p.mem.Instances(); !cmp.Equal(ids, []string{"a/b?c#d e"}) {
		t.Errorf("instances = %q, want the escaped id intact", ids)
	}
}
