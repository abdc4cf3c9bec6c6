package controller

import (
	"context"
	"slices"
	"testing"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/controller/controllertest"
)

func TestHMRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	dea := newFakeDEA(t, e.bus, "dea-hm")
	cl := e.user("hm@x.io")
	pushStaged(t, cl, "hmapp", map[string]string{"a": "b"})
	if err := cl.UpdateApp(ctx, "hmapp", client.AppUpdate{Instances: client.Ptr(2), State: client.Ptr("STARTED")}); err != nil {
		t.Fatal(err)
	}
	a := waitApp(t, cl, "hmapp", func(a client.App) bool { return a.Running() == 2 })
	rec, err := e.store.GetAppByName(ctx, "hm@x.io", "hmapp")
	if err != nil {
		t.Fatal(err)
	}
	id := protocol.AppID(rec.ID)
	send := func(r protocol.HMRequest) {
		t.Helper()
		if err := bus.PublishJSON(e.bus, protocol.HMRequests, r); err != nil {
			t.Fatal(err)
		}
	}

	// Index 1 is RUNNING: a START for it is ignored; a START of another
	// version is ignored; a START for index 0 after its instance crashed runs.
	send(protocol.HMRequest{Droplet: id, Op: protocol.OpStart, Version: a.Version, Indices: []int{1}, LastUpdated: rec.UpdatedAt.Unix()})
	send(protocol.HMRequest{Droplet: id, Op: protocol.OpStart, Version: "old-0", Indices: []int{0}, LastUpdated: rec.UpdatedAt.Unix()})
	send(protocol.HMRequest{Droplet: id, Op: protocol.OpStart, Version: a.Version, Indices: []int{9}, LastUpdated: rec.UpdatedAt.Unix()})
	// Crash index 0 as its DEA would report it.
	var victim controllertest.Instance
	for _, i := range dea.Snapshot().Instances {
		if i.Index == 0 {
			victim = i
		}
	}
	if !dea.Remove(victim.ID) {
		t.Fatalf("no instance of index 0 to crash")
	}
	_ = bus.PublishJSON(e.bus, protocol.DropletExited, protocol.Exited{Droplet: id, Version: a.Version, Instance: victim.ID, Index: 0, Reason: protocol.ReasonCrashed})
	waitApp(t, cl, "hmapp", func(a client.App) bool { return a.Running() == 1 })
	send(protocol.HMRequest{Droplet: id, Op: protocol.OpStart, Version: a.Version, Indices: []int{0}, Flapping: true, LastUpdated: rec.UpdatedAt.Unix()})
	if snap, ok := waitDEA(dea, func(d controllertest.Snapshot) bool {
		return len(d.Starts) == 3 && d.Starts[2].Flapping && d.Starts[2].Index == 0
	}); !ok {
		t.Fatalf("starts = %+v", snap.Starts)
	}
	// The crash was recorded.
	crashes, err := cl.Crashes(ctx, "hmapp")
	if err != nil || len(crashes) != 1 || crashes[0].Instance != victim.ID {
		t.Fatalf("crashes = %+v, %v", crashes, err)
	}

	// STOP with a stale last_updated is ignored; with the right one it runs.
	var target string
	for _, i := range dea.Snapshot().Instances {
		target = i.ID
	}
	rec, _ = e.store.GetApp(ctx, rec.ID)
	send(protocol.HMRequest{Droplet: id, Op: protocol.OpStop, Instances: []string{target}, LastUpdated: 12345})
	send(protocol.HMRequest{Droplet: id, Op: protocol.OpStop, Instances: []string{target}, LastUpdated: rec.UpdatedAt.Unix()})
	if _, ok := waitDEA(dea, func(d controllertest.Snapshot) bool {
		return slices.ContainsFunc(d.Stops, func(s protocol.Stop) bool { return slices.Equal(s.Instances, []string{target}) })
	}); !ok {
		t.Fatal("no stop for the HM's STOP")
	}
	snap := dea.Snapshot()
	if n := len(snap.Stops); n != 1 {
		t.Fatalf("stops = %d, want 1 (the stale STOP must be ignored)", n)
	}
	if n := len(snap.Starts); n != 3 {
		t.Fatalf("starts = %d, want 3 (duplicate/other-version STARTs must be ignored)", n)
	}

	// A STOP for a STOPPED app runs whatever its last_updated.
	if err := cl.Stop(ctx, "hmapp"); err != nil {
		t.Fatal(err)
	}
	send(protocol.HMRequest{Droplet: id, Op: protocol.OpStop, Instances: []string{"orphan"}, LastUpdated: 1})
	if _, ok := waitDEA(dea, func(d controllertest.Snapshot) bool {
		return slices.ContainsFunc(d.Stops, func(s protocol.Stop) bool { return slices.Equal(s.Instances, []string{"orphan"}) })
	}); !ok {
		t.Fatal("no stop for an orphan of a stopped app")
	}

	// A STOP for a deleted app stops everything of it.
	send(protocol.HMRequest{Droplet: "gone", Op: protocol.OpStop, Instances: []string{"x"}, LastUpdated: 1})
	if _, ok := waitDEA(dea, func(d controllertest.Snapshot) bool {
		return slices.ContainsFunc(d.Stops, func(s protocol.Stop) bool { return s.Droplet == "gone" && len(s.Instances) == 0 })
	}); !ok {
		t.Fatal("no stop for a deleted app")
	}
}

func TestBulkAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	newFakeDEA(t, e.bus, "dea-bulk")
	cl := e.user("bulk@x.io")
	for _, n := range []string{"b1", "b2", "b3"} {
		pushStaged(t, cl, n, map[string]string{"f": n})
		if err := cl.Start(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.CreateApp(ctx, client.AppRequest{Name: "stopped"}); err != nil {
		t.Fatal(err)
	}
	var creds protocol.BulkCredentials
	if err := bus.RequestJSON(ctx, e.bus, protocol.BulkCredentialsSubject, struct{}{}, &creds); err != nil {
		t.Fatal(err)
	}
	if creds.User != "bulk_api" || creds.Password == "" {
		t.Fatalf("creds = %+v", creds)
	}
	_, err := e.client().BulkApps(ctx, creds.User, "wrong", 2, nil)
	apiErr(t, err, 401, 200)
	var all []protocol.BulkApp
	var token map[string]any
	pages := 0
	for {
		page, err := e.client().BulkApps(ctx, creds.User, creds.Password, 2, token)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, a := range page.Results {
			all = append(all, a)
		}
		if len(page.BulkToken) == 0 {
			break
		}
		token = page.BulkToken
	}
	if len(all) != 3 || pages != 2 {
		t.Fatalf("bulk: %d apps in %d pages", len(all), pages)
	}
	for _, a := range all {
		if a.State != "STARTED" || a.PackageState != "STAGED" || a.Instances != 1 || a.Version == "" || a.UpdatedAt == 0 {
			t.Fatalf("bulk app = %+v", a)
		}
	}
	status, _, _ := e.raw("GET", "/bulk/apps?batch_size=x", "", "", map[string]string{"Authorization": "Basic " + basic(creds.User, creds.Password)})
	if status != 400 {
		t.Fatalf("bad batch_size: %d", status)
	}
}

// TestHMCrashStartBeatsExited: the health manager's START for a crashed
// index may arrive before the DEA's droplet.exited reaches the controller;
// it must be acted on although heartbeats still say the index runs.
func TestHMCrashStartBeatsExited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	dea := newFakeDEA(t, e.bus, "dea-race")
	cl := e.user("race@x.io")
	pushStaged(t, cl, "raceapp", map[string]string{"a": "b"})
	if err := cl.UpdateApp(ctx, "raceapp", client.AppUpdate{Instances: client.Ptr(1), State: client.Ptr("STARTED")}); err != nil {
		t.Fatal(err)
	}
	a := waitApp(t, cl, "raceapp", func(a client.App) bool { return a.Running() == 1 })
	rec, err := e.store.GetAppByName(ctx, "race@x.io", "raceapp")
	if err != nil {
		t.Fatal(err)
	}
	req := protocol.HMRequest{Droplet: protocol.AppID(rec.ID), Op: protocol.OpStart, Version: a.Version,
		Indices: []int{0}, LastUpdated: rec.UpdatedAt.Unix(), Reason: hmReasonCrashed}
	if err := bus.PublishJSON(e.bus, protocol.HMRequests, req); err != nil {
		t.Fatal(err)
	}
	if snap, ok := waitDEA(dea, func(d controllertest.Snapshot) bool { return len(d.Starts) == 2 && d.Starts[1].Index == 0 }); !ok {
		t.Fatalf("starts = %d, want the crash restart", len(snap.Starts))
	}
}
