package membroker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/services"
	"github.com/kiln-paas/kiln/services/membroker"
)

const (
	svc  = "kiln-memory-service"
	plan = "kiln-memory-free"
)

func newBroker(t *testing.T, cfg membroker.Config) *membroker.Broker {
	t.Helper()
	b, err := membroker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  membroker.Config
		ok   bool
	}{
		{"default", membroker.DefaultConfig(), true},
		{"negative polls", membroker.Config{AsyncPolls: -1}, false},
		{"nameless service", membroker.Config{Catalog: services.Catalog{Services: []services.Service{{ID: "x"}}}}, false},
		{"duplicate plan", membroker.Config{Catalog: services.Catalog{Services: []services.Service{
			{ID: "a", Name: "a", Plans: []services.Plan{{ID: "p", Name: "p"}}},
			{ID: "b", Name: "b", Plans: []services.Plan{{ID: "p", Name: "p"}}},
		}}}, false},
	}
	for _, tt := range tests {
		_, err := membroker.New(tt.cfg)
		if (err == nil) != tt.ok {
			t.Errorf("%s: New() = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestCatalogIsACopy(t *testing.T) {
	t.Parallel()
	b := newBroker(t, membroker.Config{})
	cat, _ := b.Catalog(context.Background())
	cat.Services[0].Plans[0].Name = "changed"
	cat.Services[0].Tags[0] = "changed"
	again, _ := b.Catalog(context.Background())
	if diff := cmp.Diff(membroker.DefaultCatalog(), again); diff != "" {
		t.Errorf("catalog changed through a returned copy (-want +got):\n%s", diff)
	}
}

func TestAsyncDeprovisionAndRepeats(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBroker(t, membroker.Config{Async: true, AsyncPolls: 1})
	preq := services.ProvisionRequest{InstanceID: "i", ServiceID: svc, PlanID: plan, AcceptsIncomplete: true}
	first, err := b.Provision(ctx, preq)
	if err != nil {
		t.Fatal(err)
	}
	// A repeat while provisioning returns the same operation.
	again, err := b.Provision(ctx, preq)
	if err != nil || !again.Async || again.Operation != first.Operation {
		t.Errorf("repeat while provisioning = %+v, %v; want operation %q", again, err, first.Operation)
	}
	if _, err := b.Deprovision(ctx, services.DeprovisionRequest{InstanceID: "i", AcceptsIncomplete: true}); !errors.Is(err, services.ErrConcurrency) {
		t.Errorf("deprovision while provisioning: %v", err)
	}
	// Poll without an operation id: the instance's latest operation.
	for _, want := range []string{services.StateInProgress, services.StateSucceeded, services.StateSucceeded} {
		op, err := b.LastOperation(ctx, services.LastOperationRequest{InstanceID: "i"})
		if err != nil || op.State != want {
			t.Fatalf("poll = %+v, %v; want %s", op, err, want)
		}
	}
	if _, err := b.LastOperation(ctx, services.LastOperationRequest{InstanceID: "i", Operation: "made-up"}); !errors.Is(err, services.ErrBadRequest) {
		t.Errorf("unknown operation: %v, want ErrBadRequest", err)
	}
	if _, err := b.Deprovision(ctx, services.DeprovisionRequest{InstanceID: "i", ServiceID: "other", AcceptsIncomplete: true}); !errors.Is(err, services.ErrBadRequest) {
		t.Errorf("deprovision with the wrong service: %v", err)
	}
	if _, err := b.Deprovision(ctx, services.DeprovisionRequest{InstanceID: "i"}); !errors.Is(err, services.ErrAsyncRequired) {
		t.Errorf("sync deprovision of an async broker: %v", err)
	}
	d, err := b.Deprovision(ctx, services.DeprovisionRequest{InstanceID: "i", AcceptsIncomplete: true})
	if err != nil || !d.Async {
		t.Fatalf("deprovision = %+v, %v", d, err)
	}
	if _, err := b.Provision(ctx, preq); !errors.Is(err, services.ErrConcurrency) {
		t.Errorf("provision while deprovisioning: %v", err)
	}
	lreq := services.LastOperationRequest{InstanceID: "i", Operation: d.Operation}
	for _, want := range []string{services.StateInProgress, services.StateSucceeded, services.StateSucceeded} {
		op, err := b.LastOperation(ctx, lreq)
		if err != nil || op.State != want {
			t.Fatalf("deprovision poll = %+v, %v; want %s", op, err, want)
		}
	}
	if ids := b.Instances(); len(ids) != 0 {
		t.Errorf("instances after deprovision: %v", ids)
	}
}

func TestBindRules(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cat := membroker.DefaultCatalog()
	cat.Services = append(cat.Services, services.Service{ID: "nb", Name: "unbindable", Plans: []services.Plan{{ID: "nb-p", Name: "p"}}})
	b := newBroker(t, membroker.Config{Catalog: cat})
	for _, p := range []services.ProvisionRequest{
		{InstanceID: "i1", ServiceID: svc, PlanID: plan},
		{InstanceID: "i2", ServiceID: svc, PlanID: plan},
		{InstanceID: "nb", ServiceID: "nb", PlanID: "nb-p"},
	} {
		if _, err := b.Provision(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Bind(ctx, services.BindRequest{InstanceID: "i1", BindingID: "b", ServiceID: svc, PlanID: plan}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  services.BindRequest
		want error
	}{
		{"binding id taken by another instance", services.BindRequest{InstanceID: "i2", BindingID: "b", ServiceID: svc, PlanID: plan}, services.ErrBindingExists},
		{"not bindable", services.BindRequest{InstanceID: "nb", BindingID: "x", ServiceID: "nb", PlanID: "nb-p"}, services.ErrBadRequest},
		{"plan mismatch", services.BindRequest{InstanceID: "i1", BindingID: "y", ServiceID: "nb", PlanID: "nb-p"}, services.ErrBadRequest},
		{"no binding id", services.BindRequest{InstanceID: "i1", ServiceID: svc, PlanID: plan}, services.ErrBadRequest},
		{"different parameters", services.BindRequest{InstanceID: "i1", BindingID: "b", ServiceID: svc, PlanID: plan, Parameters: map[string]any{"a": 1}}, services.ErrBindingExists},
	}
	for _, tt := range tests {
		if _, err := b.Bind(ctx, tt.req); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	// Deprovision takes the instance's bindings with it.
	if _, err := b.Deprovision(ctx, services.DeprovisionRequest{InstanceID: "i1"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Unbind(ctx, services.UnbindRequest{InstanceID: "i1", BindingID: "b"}); !errors.Is(err, services.ErrBindingNotFound) {
		t.Errorf("unbind after deprovision: %v", err)
	}
}

func TestFailHookAndCalls(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	b := newBroker(t, membroker.Config{Fail: func(c membroker.Call) error {
		if c.Op == membroker.OpBind {
			return boom
		}
		return nil
	}})
	ctx := context.Background()
	if _, err := b.Provision(ctx, services.ProvisionRequest{InstanceID: "i", ServiceID: svc, PlanID: plan}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Bind(ctx, services.BindRequest{InstanceID: "i", BindingID: "b", ServiceID: svc, PlanID: plan, AppID: "a"}); !errors.Is(err, boom) {
		t.Errorf("bind: %v, want the injected error", err)
	}
	want := []membroker.Call{
		{Op: membroker.OpProvision, InstanceID: "i", ServiceID: svc, PlanID: plan},
		{Op: membroker.OpBind, InstanceID: "i", BindingID: "b", ServiceID: svc, PlanID: plan, AppID: "a"},
	}
	if diff := cmp.Diff(want, b.Calls()); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBroker(t, membroker.Config{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint("i", i%4) // four instances, four clients each
			if _, err := b.Provision(ctx, services.ProvisionRequest{InstanceID: id, ServiceID: svc, PlanID: plan}); err != nil {
				errs <- err
				return
			}
			if _, err := b.Bind(ctx, services.BindRequest{InstanceID: id, BindingID: fmt.Sprint("b", i), ServiceID: svc, PlanID: plan}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if diff := cmp.Diff([]string{"i0", "i1", "i2", "i3"}, b.Instances()); diff != "" {
		t.Errorf("instances (-want +got):\n%s", diff)
	}
	if n := len(b.Calls()); n != 32 {
		t.Errorf("%d calls recorded, want 32", n)
	}
}
