package controller

import (
	"context"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/natsbus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/client"
)

func natsConn(t *testing.T, url string) bus.Bus {
	t.Helper()
	cfg := natsbus.DefaultConfig()
	cfg.URLs = []string{url}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := natsbus.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestOverNATS runs the push-start path and a health manager request over
// a real NATS server, the controller and the DEA on separate connections.
func TestOverNATS(t *testing.T) {
	t.Parallel()
	srv := natsbus.RunTestServer(t)
	e := newEnvOn(t, nil, natsConn(t, srv.ClientURL()))
	deaBus := natsConn(t, srv.ClientURL())
	dea := newFakeDEA(t, deaBus, "dea-nats")
	ctx := context.Background()
	cl := e.user("nats@x.io")
	pushStaged(t, cl, "n", map[string]string{"a": "b"})
	if err := cl.Start(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	a := waitApp(t, cl, "n", func(a client.App) bool { return a.Running() == 1 })
	rec, _ := e.store.GetAppByName(ctx, "nats@x.io", "n")
	// The HM asks, in queue group "cc", for index 0 again after a crash.
	for id := range dea.Snapshot().Instances {
		dea.Remove(id)
		_ = bus.PublishJSON(deaBus, protocol.DropletExited, protocol.Exited{Droplet: protocol.AppID(rec.ID), Version: a.Version, Instance: id, Index: 0, Reason: protocol.ReasonCrashed})
	}
	waitApp(t, cl, "n", func(a client.App) bool { return a.Running() == 0 })
	hm := natsConn(t, srv.ClientURL())
	if err := bus.PublishJSON(hm, protocol.HMRequests, protocol.HMRequest{Droplet: protocol.AppID(rec.ID), Op: protocol.OpStart, Version: a.Version, Indices: []int{0}}); err != nil {
		t.Fatal(err)
	}
	waitApp(t, cl, "n", func(a client.App) bool { return a.Running() == 1 })
	var creds protocol.BulkCredentials
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := bus.RequestJSON(rctx, hm, protocol.BulkCredentialsSubject, struct{}{}, &creds); err != nil || creds.Password == "" {
		t.Fatalf("bulk credentials: %+v, %v", creds, err)
	}
}
