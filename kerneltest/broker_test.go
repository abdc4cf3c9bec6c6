package kerneltest_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/kerneltest"
	"github.com/kiln-paas/kiln/services/membroker"
)

// TestWithBroker checks that a broker given with WithBroker is offered by
// the controller and receives the provision, bind, unbind and deprovision
// of an instance made through the kernel's client.
func TestWithBroker(t *testing.T) {
	t.Parallel()
	mb, err := membroker.New(membroker.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	k := kerneltest.Start(t, kerneltest.WithBroker("memory", mb))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	offers, err := k.Client.ServiceOfferings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := offers["generic"]["memory"]; !ok {
		t.Fatalf("offerings %v lack the broker's service \"memory\"", offers)
	}
	if err := k.Client.CreateService(ctx, "db", "memory", "", "free"); err != nil {
		t.Fatal(err)
	}
	if err := k.Client.CreateApp(ctx, client.AppRequest{Name: "app", URIs: []string{k.AppHost("app")}, Instances: 1, Memory: 64}); err != nil {
		t.Fatal(err)
	}
	if err := k.Client.BindService(ctx, "app", "db"); err != nil {
		t.Fatal(err)
	}
	if err := k.Client.UnbindService(ctx, "app", "db"); err != nil {
		t.Fatal(err)
	}
	if err := k.Client.DeleteService(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, c := range mb.Calls() {
		if c.Op != membroker.OpCatalog {
			ops = append(ops, c.Op)
		}
	}
	if diff := cmp.Diff([]string{membroker.OpProvision, membroker.OpBind, membroker.OpUnbind, membroker.OpDeprovision}, ops); diff != "" {
		t.Errorf("broker calls (-want +got):\n%s", diff)
	}
	if ids := mb.Instances(); len(ids) != 0 {
		t.Errorf("instances left at the broker: %v", ids)
	}
}
