package controller

import (
	"context"
	"strings"
	"testing"

	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/controller/controllertest"
)

func TestRolloutAndRollback(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	dea := newFakeDEA(t, e.bus, "dea-roll")
	cl := e.user("roll@x.io")
	pushStaged(t, cl, "roll", map[string]string{"v": "1"})
	if err := cl.UpdateApp(ctx, "roll", client.AppUpdate{Instances: client.Ptr(2), State: client.Ptr("STARTED")}); err != nil {
		t.Fatal(err)
	}
	v1 := waitApp(t, cl, "roll", func(a client.App) bool { return a.Running() == 2 })
	rec, _ := e.store.GetAppByName(ctx, "roll@x.io", "roll")
	id := protocol.AppID(rec.ID)

	// Restart: index by index, the old version is replaced.
	if err := cl.Restart(ctx, "roll"); err != nil {
		t.Fatal(err)
	}
	v2 := waitApp(t, cl, "roll", func(a client.App) bool { return a.Version != v1.Version })
	if _, ok := waitDEA(dea, func(d controllertest.Snapshot) bool {
		return d.Running(id, v2.Version) == 2 && d.Running(id, v1.Version) == 0
	}); !ok {
		t.Fatal("restart did not replace the instances")
	}
	st := waitStatus(t, cl, "roll", RolloutSucceeded)
	if st.State != RolloutSucceeded {
		t.Fatalf("status = %+v", st)
	}

	// An env change whose instances crash: the rollout stops, the old
	// version keeps serving and the app goes back to it.
	if err := cl.UpdateApp(ctx, "roll", client.AppUpdate{Env: &[]string{"CRASH=1"}}); err != nil {
		t.Fatal(err)
	}
	st = waitStatus(t, cl, "roll", RolloutFailed)
	if !strings.Contains(st.Message, "crashed") {
		t.Fatalf("status = %+v", st)
	}
	a := waitApp(t, cl, "roll", func(a client.App) bool { return a.Version == v2.Version })
	if a.Running() != 2 {
		t.Fatalf("running after failed rollout = %d", a.Running())
	}
	if n := dea.Snapshot().Running(id, v2.Version); n != 2 {
		t.Fatalf("old instances running = %d", n)
	}
	if err := cl.UpdateApp(ctx, "roll", client.AppUpdate{Env: &[]string{}}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, cl, "roll", RolloutSucceeded)

	// A new upload on a STARTED app rolls out the new droplet; the old one
	// is kept and can be rolled back to.
	if _, err := cl.Push(ctx, "roll", controllertest.AppDir(t, map[string]string{"v": "2"})); err != nil {
		t.Fatal(err)
	}
	var ds []client.Droplet
	waitApp(t, cl, "roll", func(a client.App) bool {
		ds, _ = cl.Droplets(ctx, "roll")
		return len(ds) == 2 && ds[0].Current && strings.HasPrefix(a.Version, ds[0].Hash)
	})
	waitStatus(t, cl, "roll", RolloutSucceeded)
	cur, _ := cl.App(ctx, "roll")
	if _, ok := waitDEA(dea, func(d controllertest.Snapshot) bool { return d.Running(id, cur.Version) == 2 && len(d.Instances) == 2 }); !ok {
		t.Fatal("new droplet not rolled out")
	}
	if err := cl.Rollback(ctx, "roll", ds[1].Hash); err != nil {
		t.Fatal(err)
	}
	back := waitApp(t, cl, "roll", func(a client.App) bool { return strings.HasPrefix(a.Version, ds[1].Hash) && a.Running() == 2 })
	if _, ok := waitDEA(dea, func(d controllertest.Snapshot) bool { return d.Running(id, back.Version) == 2 && len(d.Instances) == 2 }); !ok {
		t.Fatal("rollback not rolled out")
	}
	snap := dea.Snapshot()
	for _, s := range snap.Starts {
		if !snap.Fetched[s.SHA1] {
			t.Errorf("droplet %s not downloadable", s.SHA1)
		}
	}
}

func waitStatus(t *testing.T, cl *client.Client, name, state string) client.RolloutStatus {
	t.Helper()
	var st client.RolloutStatus
	waitApp(t, cl, name, func(client.App) bool {
		st, _ = cl.UpdateStatus(context.Background(), name)
		return st.State == state
	})
	return st
}
