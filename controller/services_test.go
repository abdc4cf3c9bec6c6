package controller

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/controller/controllertest"
)

func TestServices(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	dea := newFakeDEA(t, e.bus, "dea-svc")
	cl := e.user("svc@x.io")

	offs, err := cl.ServiceOfferings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	redis := offs["key-value"]["redis"]["2.2"]
	if redis.Vendor != "redis" || redis.Type != "key-value" || len(redis.Tiers) != 2 {
		t.Fatalf("offerings = %+v", offs)
	}
	tests := []struct {
		name                   string
		svc, vendor, ver, tier string
		status, code           int
	}{
		{"unknown vendor", "x", "oracle", "", "free", 404, 500},
		{"unknown plan", "x", "redis", "", "gold", 404, 500},
		{"wrong version", "x", "redis", "9.9", "free", 404, 500},
		{"no name", "", "redis", "", "free", 400, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apiErr(t, cl.CreateService(ctx, tt.svc, tt.vendor, tt.ver, tt.tier), tt.status, tt.code)
		})
	}
	if err := cl.CreateService(ctx, "cache", "redis", "2.2", "big"); err != nil {
		t.Fatal(err)
	}
	apiErr(t, cl.CreateService(ctx, "cache", "redis", "", "free"), 400, 100)
	list, err := cl.Services(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "cache" || list[0].Tier != "big" || list[0].Vendor != "redis" {
		t.Fatalf("services = %+v, %v", list, err)
	}
	if _, err := cl.Service(ctx, "nope"); err == nil {
		t.Fatal("unknown service found")
	}

	// Bind through an app update; the start message carries the binding.
	pushStaged(t, cl, "svcapp", map[string]string{"a": "b"})
	apiErr(t, cl.BindService(ctx, "svcapp", "nope"), 404, 500)
	if err := cl.BindService(ctx, "svcapp", "cache"); err != nil {
		t.Fatal(err)
	}
	a, _ := cl.App(ctx, "svcapp")
	if !slices.Equal(a.Services, []string{"cache"}) {
		t.Fatalf("services of app = %v", a.Services)
	}
	if err := cl.Start(ctx, "svcapp"); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitDEA(dea, func(d controllertest.Snapshot) bool { return len(d.Starts) == 1 }); !ok {
		t.Fatal("no start")
	}
	svcs := dea.Snapshot().Starts[0].Services
	if len(svcs) != 1 || svcs[0].Name != "cache" || svcs[0].Label != "redis" || svcs[0].Plan != "big" || svcs[0].Credentials["uri"] == nil {
		t.Fatalf("start services = %+v", svcs)
	}
	// A bound instance cannot be deleted.
	apiErr(t, cl.DeleteService(ctx, "cache"), 400, 506)
	if err := cl.UnbindService(ctx, "svcapp", "cache"); err != nil {
		t.Fatal(err)
	}
	e.broker.mu.Lock()
	nb := len(e.broker.bindings)
	e.broker.mu.Unlock()
	if nb != 0 {
		t.Fatalf("broker still has %d bindings", nb)
	}
	if err := cl.DeleteService(ctx, "cache"); err != nil {
		t.Fatal(err)
	}
	e.broker.mu.Lock()
	ni := len(e.broker.instances)
	e.broker.mu.Unlock()
	if ni != 0 {
		t.Fatalf("broker still has %d instances", ni)
	}

	// Broker registration is admin only.
	apiErr(t, cl.RegisterBroker(ctx, "ext", "http://127.0.0.1:1", "u", "p"), 403, 200)
	admin := e.user("admin@x.io")
	if err := admin.RegisterBroker(ctx, "ext", "http://127.0.0.1:1", "u", "p"); err != nil {
		t.Fatal(err)
	}
	apiErr(t, admin.RegisterBroker(ctx, "bad", "ftp://x", "u", "p"), 400, 100)
	// Deleting a user deletes its apps and services.
	if err := cl.CreateService(ctx, "c2", "redis", "", "free"); err != nil {
		t.Fatal(err)
	}
	if err := cl.BindService(ctx, "svcapp", "c2"); err != nil {
		t.Fatal(err)
	}
	if err := admin.DeleteUser(ctx, "svc@x.io"); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitDEA(dea, func(d controllertest.Snapshot) bool {
		return slices.ContainsFunc(d.Stops, func(s protocol.Stop) bool { return len(s.Indices) == 0 && len(s.Instances) == 0 && s.Version == "" })
	}); !ok {
		t.Fatal("deleted user's app not stopped")
	}
	e.broker.mu.Lock()
	ni, nb = len(e.broker.instances), len(e.broker.bindings)
	e.broker.mu.Unlock()
	if ni != 0 || nb != 0 {
		t.Fatalf("broker keeps %d instances, %d bindings", ni, nb)
	}
}

func TestAsyncProvisioning(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.broker.async = true
	ctx := context.Background()
	cl := e.user("async@x.io")
	if err := cl.CreateService(ctx, "slow", "redis", "", "free"); err != nil {
		t.Fatal(err)
	}
	if err := cl.CreateApp(ctx, client.AppRequest{Name: "user"}); err != nil {
		t.Fatal(err)
	}
	// Binding is refused until the broker says the instance is ready.
	deadline := time.Now().Add(5 * time.Second)
	refused := 0
	for {
		err := cl.BindService(ctx, "user", "slow")
		if err == nil {
			break
		}
		apiErr(t, err, 400, 100)
		refused++
		if time.Now().After(deadline) {
			t.Fatal("instance never became ready")
		}
		time.Sleep(2 * time.Millisecond)
	}
	si, err := e.store.GetServiceInstanceByName(ctx, "async@x.io", "slow")
	if err != nil || si.State != "ready" || refused == 0 {
		t.Fatalf("instance %+v (refused %d), %v", si, refused, err)
	}
}
