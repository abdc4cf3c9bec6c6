package controller

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/controller/controllertest"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/warden/fake"
)

// TestPushToRealDEA pushes an app through the controller to a real DEA
// running on the fake container backend, on one membus, and sees it RUNNING.
func TestPushToRealDEA(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	backend, err := fake.New(fake.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Close() })
	files := httptest.NewUnstartedServer(nil)
	cfg := dea.DefaultConfig()
	cfg.BaseDir = t.TempDir()
	cfg.HealthCheckInterval = 10 * time.Millisecond
	cfg.HealthCheckTimeout = 10 * time.Second
	cfg.DrainTimeout = 50 * time.Millisecond
	cfg.StopGrace = time.Second
	cfg.GreetTimeout = 100 * time.Millisecond
	cfg.FileServerURL = "http://" + files.Listener.Addr().String()
	d, err := dea.New(cfg, dea.Deps{Bus: e.bus, Backend: backend})
	if err != nil {
		t.Fatal(err)
	}
	files.Config.Handler = d.Handler()
	files.Start()
	t.Cleanup(files.Close)
	controllertest.Run(t, d)

	cl := e.user("e2e@x.io")
	pushStaged(t, cl, "real", map[string]string{"run": "#!/bin/sh\nexec sleep 1000\n"})
	// The DEA may take a moment to subscribe: retry the start until placed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cl.Start(ctx, "real")
		if err == nil {
			break
		}
		if !client.IsCode(err, 302) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		_ = cl.Stop(ctx, "real")
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	a, err := cl.WaitRunning(wctx, "real", 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if a.Running() != 1 {
		t.Fatalf("app = %+v", a)
	}
	insts, err := cl.Instances(ctx, "real")
	if err != nil || len(insts) != 1 || insts[0].State != "RUNNING" {
		t.Fatalf("instances = %+v, %v", insts, err)
	}
	if _, err := cl.File(ctx, "real", "0", "/"); err != nil {
		t.Fatalf("files: %v", err)
	}
	// Scale to two on the same DEA, then stop.
	if err := cl.Scale(ctx, "real", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.WaitRunning(wctx, "real", 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := cl.Stop(ctx, "real"); err != nil {
		t.Fatal(err)
	}
}
