package controller

import (
	"context"
	"testing"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/client"
)

// TestInstanceViews checks /instances, /stats and /crashes when the DEAs
// report some indices, the health manager knows a flapping one, and one is
// nowhere: DOWN.
func TestInstanceViews(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	dea := newFakeDEA(t, e.bus, "dea-views")
	cl := e.user("views@x.io")
	pushStaged(t, cl, "v", map[string]string{"a": "b"})
	if err := cl.Start(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	waitApp(t, cl, "v", func(a client.App) bool { return a.Running() == 1 })
	// Scale to 3 while the DEA stays silent: indices 1 and 2 cannot start.
	dea.SetSilent(true)
	apiErr(t, cl.Scale(ctx, "v", 3), 404, 302)
	// A health manager answers: index 2 is flapping; one instance crashed.
	sub, err := e.bus.Subscribe(protocol.HealthManagerStatus, func(m *bus.Msg) {
		req, err := protocol.Decode[protocol.HMStatusRequest](m.Data)
		if err != nil {
			return
		}
		if req.State == protocol.StateFlapping {
			_ = bus.RespondJSON(e.bus, m, protocol.HMStatusReply{Indices: []protocol.IndexSince{{Index: 2, Since: 1234}}})
		} else {
			_ = bus.RespondJSON(e.bus, m, protocol.HMStatusReply{Instances: []protocol.InstanceSince{{Instance: "dead-1", Since: 99}}})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	insts, err := cl.Instances(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]string{}
	for _, i := range insts {
		got[i.Index] = i.State
	}
	if len(insts) != 3 || got[0] != "RUNNING" || got[1] != "DOWN" || got[2] != "FLAPPING" {
		t.Fatalf("instances = %+v", insts)
	}
	stats, err := cl.Stats(ctx, "v")
	if err != nil || len(stats) != 3 || stats["0"].State != "RUNNING" || stats["1"].State != "DOWN" || stats["1"].Since == 0 {
		t.Fatalf("stats = %+v, %v", stats, err)
	}
	crashes, err := cl.Crashes(ctx, "v")
	if err != nil || len(crashes) != 1 || crashes[0].Instance != "dead-1" || crashes[0].Since != 99 {
		t.Fatalf("crashes = %+v, %v", crashes, err)
	}
}
