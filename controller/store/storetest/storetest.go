// Package storetest is the conformance suite every store.Store passes: the
// in-memory fake and the SQL stores run the same tests, so a controller tested
// on the fake behaves the same on SQLite or PostgreSQL.
//
// An implementation's test calls Run with a constructor returning a fresh,
// empty store for each subtest (and registering its cleanup on that t).
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kiln-paas/kiln/controller/store"
)

// Run runs the conformance suite as subtests of t. newStore must return a new,
// empty store each time it is called; Run closes it at the end of each subtest
// and newStore may close it again in its own cleanup.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Users", testUsers},
		{"UserPaging", testUserPaging},
		{"Tokens", testTokens},
		{"QuotaUsage", testQuotaUsage},
		{"AppCreateGet", testAppCreateGet},
		{"AppInvalid", testAppInvalid},
		{"AppUniqueness", testAppUniqueness},
		{"AppUpdate", testAppUpdate},
		{"AppUpdateAtomic", testAppUpdateAtomic},
		{"AppConcurrentUpdate", testAppConcurrentUpdate},
		{"AppDeleteCascade", testAppDeleteCascade},
		{"AppListPaging", testAppListPaging},
		{"DesiredStates", testDesiredStates},
		{"Droplets", testDroplets},
		{"Events", testEvents},
		{"Crashes", testCrashes},
		{"Brokers", testBrokers},
		{"ServiceInstances", testServiceInstances},
		{"Bindings", testBindings},
		{"Resources", testResources},
		{"Times", testTimes},
		{"Context", testContext},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// ignoreStamps drops the fields a store stamps itself from comparisons.
var ignoreStamps = cmpopts.IgnoreFields(store.App{}, "CreatedAt", "UpdatedAt")

// get turns a (value, error) result into the value, failing the test on an
// error: get(s.GetApp(ctx, id))(t).
func get[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return v
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want %v", what, err, target)
	}
}

func sampleApp(owner, name string, uris ...string) store.App {
	return store.App{
		Name: name, Owner: owner, State: store.AppStopped, Instances: 1,
		MemoryMB: 256, DiskMB: 1024, FDs: 16384, URIs: uris,
		Env: []string{"A=1", "B=two=2"}, Stack: "cflinuxfs", Buildpack: "go",
		Runtime: "go126", Framework: "standalone", Command: "./app",
		HealthCheckType: "http", HealthCheckEndpoint: "/healthz", HealthCheckTimeout: 60,
		PackageHash: "p1", Version: "v1",
	}
}

func testUsers(t *testing.T, s store.Store) {
	ctx := context.Background()
	u := get(s.CreateUser(ctx, store.User{Email: "a@x", PasswordHash: "$2a$hash", Admin: true}))(t)
	if u.CreatedAt.IsZero() {
		t.Error("CreatedAt not stamped")
	}
	got := get(s.GetUser(ctx, "a@x"))(t)
	if diff := cmp.Diff(u, got); diff != "" {
		t.Errorf("GetUser (-created +got):\n%s", diff)
	}
	_, err := s.CreateUser(ctx, store.User{Email: "a@x"})
	wantErr(t, "duplicate user", err, store.ErrExists)
	_, err = s.CreateUser(ctx, store.User{})
	wantErr(t, "empty email", err, store.ErrInvalid)
	_, err = s.GetUser(ctx, "nobody@x")
	wantErr(t, "missing user", err, store.ErrNotFound)

	upd := get(s.UpdateUser(ctx, store.User{Email: "a@x", PasswordHash: "$2a$new", Admin: false}))(t)
	want := store.User{Email: "a@x", PasswordHash: "$2a$new", CreatedAt: u.CreatedAt}
	if diff := cmp.Diff(want, upd); diff != "" {
		t.Errorf("UpdateUser (-want +got):\n%s", diff)
	}
	_, err = s.UpdateUser(ctx, store.User{Email: "nobody@x"})
	wantErr(t, "update missing user", err, store.ErrNotFound)

	noErr(t, s.SetQuota(ctx, "a@x", store.Quota{MemoryMB: 1}))
	noErr(t, s.DeleteUser(ctx, "a@x"))
	_, err = s.GetUser(ctx, "a@x")
	wantErr(t, "deleted user", err, store.ErrNotFound)
	_, err = s.GetQuota(ctx, "a@x")
	wantErr(t, "quota of deleted user", err, store.ErrNotFound)
	wantErr(t, "delete missing user", s.DeleteUser(ctx, "a@x"), store.ErrNotFound)
}

func testUserPaging(t *testing.T, s store.Store) {
	ctx := context.Background()
	var want []string
	for i := range 7 {
		e := fmt.Sprintf("u%02d@x", 6-i)
		get(s.CreateUser(ctx, store.User{Email: e}))(t)
		want = append(want, e)
	}
	sort.Strings(want)
	var got []string
	opts := store.ListOptions{Limit: 3}
	pages := 0
	for {
		p := get(s.ListUsers(ctx, opts))(t)
		pages++
		if len(p.Items) > 3 {
			t.Fatalf("page of %d items, limit 3", len(p.Items))
		}
		for _, u := range p.Items {
			got = append(got, u.Email)
		}
		if p.Next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		opts.Cursor = p.Next
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paged emails (-want +got):\n%s", diff)
	}
	if pages != 3 {
		t.Errorf("%d pages, want 3", pages)
	}
	all := get(s.ListUsers(ctx, store.ListOptions{}))(t)
	if len(all.Items) != 7 || all.Next != "" {
		t.Errorf("default limit: %d items, next %q", len(all.Items), all.Next)
	}
}

func testTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	noErr(t, s.RevokeToken(ctx, store.TokenRevocation{TokenID: "t1", ExpiresAt: base.Add(10 * time.Minute)}))
	noErr(t, s.RevokeToken(ctx, store.TokenRevocation{TokenID: "t1", ExpiresAt: base.Add(20 * time.Minute)}))
	noErr(t, s.RevokeToken(ctx, store.TokenRevocation{TokenID: "t1", ExpiresAt: base.Add(5 * time.Minute)}))
	noErr(t, s.RevokeToken(ctx, store.TokenRevocation{TokenID: "t2", ExpiresAt: base.Add(time.Minute)}))
	wantErr(t, "empty token id", s.RevokeToken(ctx, store.TokenRevocation{}), store.ErrInvalid)
	for id, want := range map[string]bool{"t1": true, "t2": true, "t3": false} {
		if got := get(s.TokenRevoked(ctx, id))(t); got != want {
			t.Errorf("TokenRevoked(%s) = %v, want %v", id, got, want)
		}
	}
	// t1 kept its latest expiry (20m), so pruning at 15m removes only t2.
	if n := get(s.PruneRevocations(ctx, base.Add(15*time.Minute)))(t); n != 1 {
		t.Errorf("pruned %d, want 1", n)
	}
	if !get(s.TokenRevoked(ctx, "t1"))(t) || get(s.TokenRevoked(ctx, "t2"))(t) {
		t.Error("after prune: want t1 revoked, t2 forgotten")
	}
	if n := get(s.PruneRevocations(ctx, base.Add(20*time.Minute)))(t); n != 1 {
		t.Errorf("pruned %d at expiry, want 1", n)
	}
}

func testQuotaUsage(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, err := s.GetQuota(ctx, "a@x")
	wantErr(t, "unset quota", err, store.ErrNotFound)
	q := store.Quota{MemoryMB: 2048, Apps: 20, URIs: 4, Services: 16}
	noErr(t, s.SetQuota(ctx, "a@x", q))
	q.Apps = 21
	noErr(t, s.SetQuota(ctx, "a@x", q))
	if diff := cmp.Diff(q, get(s.GetQuota(ctx, "a@x"))(t)); diff != "" {
		t.Errorf("GetQuota (-want +got):\n%s", diff)
	}
	wantErr(t, "negative quota", s.SetQuota(ctx, "a@x", store.Quota{Apps: -1}), store.ErrInvalid)
	wantErr(t, "empty owner", s.SetQuota(ctx, "", q), store.ErrInvalid)

	a := sampleApp("a@x", "one")
	a.State, a.Instances, a.MemoryMB = store.AppStarted, 3, 128
	get(s.CreateApp(ctx, a))(t)
	b := sampleApp("a@x", "two") // stopped: counts as an app, not as memory
	get(s.CreateApp(ctx, b))(t)
	get(s.CreateApp(ctx, sampleApp("b@x", "other")))(t)
	get(s.CreateServiceInstance(ctx, store.ServiceInstance{Name: "db", Owner: "a@x", Label: "pg"}))(t)
	want := store.Usage{MemoryMB: 384, Apps: 2, Services: 1}
	if diff := cmp.Diff(want, get(s.Usage(ctx, "a@x"))(t)); diff != "" {
		t.Errorf("Usage (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(store.Usage{}, get(s.Usage(ctx, "nobody@x"))(t)); diff != "" {
		t.Errorf("Usage of nobody (-want +got):\n%s", diff)
	}
}

func testAppCreateGet(t *testing.T, s store.Store) {
	ctx := context.Background()
	in := sampleApp("a@x", "web", "web.example.com", "www.example.com")
	in.StagedAt = time.Date(2026, 1, 2, 3, 4, 5, 6789, time.UTC)
	a := get(s.CreateApp(ctx, in))(t)
	if a.ID == "" || a.Revision != 1 || a.PackageState != store.PackagePending {
		t.Errorf("created app: id %q revision %d package state %q", a.ID, a.Revision, a.PackageState)
	}
	if a.CreatedAt.IsZero() || !a.UpdatedAt.Equal(a.CreatedAt) {
		t.Errorf("stamps: created %v updated %v", a.CreatedAt, a.UpdatedAt)
	}
	want := in
	want.ID, want.Revision, want.PackageState = a.ID, 1, store.PackagePending
	want.StagedAt = time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	if diff := cmp.Diff(want, a, ignoreStamps); diff != "" {
		t.Errorf("CreateApp (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(a, get(s.GetApp(ctx, a.ID))(t)); diff != "" {
		t.Errorf("GetApp (-created +got):\n%s", diff)
	}
	if diff := cmp.Diff(a, get(s.GetAppByName(ctx, "a@x", "web"))(t)); diff != "" {
		t.Errorf("GetAppByName (-created +got):\n%s", diff)
	}
	_, err := s.GetApp(ctx, "missing")
	wantErr(t, "missing app", err, store.ErrNotFound)
	_, err = s.GetAppByName(ctx, "b@x", "web")
	wantErr(t, "app of other owner", err, store.ErrNotFound)

	// The caller's slices are not shared with the store.
	a.URIs[0] = "mutated.example.com"
	if got := get(s.GetApp(ctx, a.ID))(t); got.URIs[0] != "web.example.com" {
		t.Errorf("store shares slices with caller: %v", got.URIs)
	}

	withID := sampleApp("a@x", "fixed")
	withID.ID = "11111111-2222-3333-4444-555555555555"
	withID.URIs, withID.Env = []string{}, []string{}
	got := get(s.CreateApp(ctx, withID))(t)
	if got.ID != withID.ID || got.URIs != nil || got.Env != nil {
		t.Errorf("explicit id %q, uris %#v, env %#v", got.ID, got.URIs, got.Env)
	}
	withID.Name = "fixed2"
	_, err = s.CreateApp(ctx, withID)
	wantErr(t, "duplicate id", err, store.ErrExists)
}

func testAppInvalid(t *testing.T, s store.Store) {
	ctx := context.Background()
	tests := []struct {
		name   string
		mutate func(*store.App)
	}{
		{"empty name", func(a *store.App) { a.Name = "" }},
		{"empty owner", func(a *store.App) { a.Owner = "" }},
		{"bad state", func(a *store.App) { a.State = "RUNNING" }},
		{"negative instances", func(a *store.App) { a.Instances = -1 }},
		{"negative memory", func(a *store.App) { a.MemoryMB = -1 }},
		{"bad package state", func(a *store.App) { a.PackageState = "DONE" }},
		{"empty uri", func(a *store.App) { a.URIs = []string{""} }},
		{"duplicate uri", func(a *store.App) { a.URIs = []string{"x.com", "x.com"} }},
		{"bad env", func(a *store.App) { a.Env = []string{"NOEQUALS"} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := sampleApp("a@x", "app")
			tc.mutate(&a)
			_, err := s.CreateApp(ctx, a)
			wantErr(t, "CreateApp", err, store.ErrInvalid)
		})
	}
	p := get(s.ListApps(ctx, "", store.ListOptions{}))(t)
	if len(p.Items) != 0 {
		t.Errorf("invalid creates left %d apps", len(p.Items))
	}
}

func testAppUniqueness(t *testing.T, s store.Store) {
	ctx := context.Background()
	get(s.CreateApp(ctx, sampleApp("a@x", "web", "web.com")))(t)
	_, err := s.CreateApp(ctx, sampleApp("a@x", "web"))
	wantErr(t, "same name same owner", err, store.ErrExists)
	get(s.CreateApp(ctx, sampleApp("b@x", "web")))(t)
	_, err = s.CreateApp(ctx, sampleApp("b@x", "api", "api.com", "web.com"))
	wantErr(t, "uri of another owner's app", err, store.ErrURITaken)
	// The failed create claimed nothing.
	get(s.CreateApp(ctx, sampleApp("c@x", "api", "api.com")))(t)
	_, err = s.GetAppByName(ctx, "b@x", "api")
	wantErr(t, "failed create left an app", err, store.ErrNotFound)
}

func testAppUpdate(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := get(s.CreateApp(ctx, sampleApp("a@x", "web", "old.com")))(t)
	other := get(s.CreateApp(ctx, sampleApp("a@x", "other", "other.com")))(t)

	a.State, a.Instances, a.URIs = store.AppStarted, 4, []string{"new.com", "new2.com"}
	a.PackageState, a.DropletHash, a.Version = store.PackageStaged, "d1", "v2"
	a.Owner = "thief@x" // Owner is not changed by UpdateApp
	b := get(s.UpdateApp(ctx, a))(t)
	if b.Revision != 2 || b.Owner != "a@x" || !b.CreatedAt.Equal(a.CreatedAt) || b.UpdatedAt.Before(a.UpdatedAt) {
		t.Errorf("updated: revision %d owner %q created %v (was %v) updated %v", b.Revision, b.Owner, b.CreatedAt, a.CreatedAt, b.UpdatedAt)
	}
	want := a
	want.Owner, want.Revision = "a@x", 2
	if diff := cmp.Diff(want, b, ignoreStamps); diff != "" {
		t.Errorf("UpdateApp (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(b, get(s.GetApp(ctx, a.ID))(t)); diff != "" {
		t.Errorf("GetApp after update (-updated +got):\n%s", diff)
	}

	_, err := s.UpdateApp(ctx, a) // revision 1 is stale now
	wantErr(t, "stale revision", err, store.ErrConflict)
	_, err = s.UpdateApp(ctx, store.App{ID: "missing", Name: "x", State: store.AppStopped, Revision: 1})
	wantErr(t, "missing app", err, store.ErrNotFound)

	// The old URI is free again; the new ones are taken.
	get(s.CreateApp(ctx, sampleApp("b@x", "takes-old", "old.com")))(t)
	other.URIs = []string{"new2.com"}
	_, err = s.UpdateApp(ctx, other)
	wantErr(t, "uri of another app", err, store.ErrURITaken)
	other.URIs = []string{"other.com"}
	other.Name = "web"
	_, err = s.UpdateApp(ctx, other)
	wantErr(t, "rename onto another app", err, store.ErrExists)
	other.Name = "renamed"
	other = get(s.UpdateApp(ctx, other))(t)
	if _, err := s.GetAppByName(ctx, "a@x", "other"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old name still resolves: %v", err)
	}
	get(s.CreateApp(ctx, sampleApp("a@x", "other")))(t)
	other.State = "BAD"
	_, err = s.UpdateApp(ctx, other)
	wantErr(t, "invalid update", err, store.ErrInvalid)
	// Keeping one's own URIs is not a conflict.
	b.Instances = 5
	get(s.UpdateApp(ctx, b))(t)
}

func testAppUpdateAtomic(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := get(s.CreateApp(ctx, sampleApp("a@x", "web", "keep.com")))(t)
	get(s.CreateApp(ctx, sampleApp("b@x", "api", "taken.com")))(t)
	changed := a
	changed.Instances = 9
	changed.URIs = []string{"free.com", "taken.com"}
	_, err := s.UpdateApp(ctx, changed)
	wantErr(t, "update with a taken uri", err, store.ErrURITaken)
	if diff := cmp.Diff(a, get(s.GetApp(ctx, a.ID))(t)); diff != "" {
		t.Errorf("failed update changed the app (-before +after):\n%s", diff)
	}
	// free.com was not claimed, keep.com is still held.
	get(s.CreateApp(ctx, sampleApp("c@x", "c", "free.com")))(t)
	_, err = s.CreateApp(ctx, sampleApp("c@x", "d", "keep.com"))
	wantErr(t, "uri kept by failed update", err, store.ErrURITaken)
}

func testAppConcurrentUpdate(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := get(s.CreateApp(ctx, sampleApp("a@x", "web")))(t)
	const writers = 8
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		ok        int
		conflicts int
		others    []error
	)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := a
			mine.Instances = i + 2
			_, err := s.UpdateApp(ctx, mine)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrConflict):
				conflicts++
			default:
				others = append(others, err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 || conflicts != writers-1 || len(others) != 0 {
		t.Errorf("%d succeeded, %d conflicts, other errors %v; want 1 and %d", ok, conflicts, others, writers-1)
	}
	if got := get(s.GetApp(ctx, a.ID))(t); got.Revision != 2 {
		t.Errorf("revision %d after one successful update, want 2", got.Revision)
	}
}

func testAppDeleteCascade(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := get(s.CreateApp(ctx, sampleApp("a@x", "web", "web.com")))(t)
	keep := get(s.CreateApp(ctx, sampleApp("a@x", "keep", "keep.com")))(t)
	si := get(s.CreateServiceInstance(ctx, store.ServiceInstance{Name: "db", Owner: "a@x"}))(t)
	for _, app := range []store.App{a, keep} {
		get(s.CreateBinding(ctx, store.Binding{AppID: app.ID, InstanceID: si.ID}))(t)
		get(s.AddDroplet(ctx, store.Droplet{AppID: app.ID, Hash: "d1"}, 0))(t)
		get(s.AddEvent(ctx, store.AppEvent{AppID: app.ID, Type: "app-created"}))(t)
		get(s.AddCrash(ctx, store.Crash{AppID: app.ID, InstanceID: "i", Reason: "CRASHED"}))(t)
	}
	noErr(t, s.DeleteApp(ctx, a.ID))
	wantErr(t, "delete again", s.DeleteApp(ctx, a.ID), store.ErrNotFound)
	_, err := s.GetApp(ctx, a.ID)
	wantErr(t, "deleted app", err, store.ErrNotFound)
	if bs := get(s.ListBindings(ctx, a.ID, ""))(t); len(bs) != 0 {
		t.Errorf("bindings of deleted app: %v", bs)
	}
	_, err = s.Droplets(ctx, a.ID)
	wantErr(t, "droplets of deleted app", err, store.ErrNotFound)
	if p := get(s.ListEvents(ctx, a.ID, store.ListOptions{}))(t); len(p.Items) != 0 {
		t.Errorf("events of deleted app: %v", p.Items)
	}
	if p := get(s.ListCrashes(ctx, a.ID, time.Time{}, store.ListOptions{}))(t); len(p.Items) != 0 {
		t.Errorf("crashes of deleted app: %v", p.Items)
	}
	// Name, URI and even the ID are free again, and the ID is listed once.
	again := sampleApp("a@x", "web", "web.com")
	again.ID = a.ID
	get(s.CreateApp(ctx, again))(t)
	listed := 0
	for _, x := range get(s.ListApps(ctx, "", store.ListOptions{}))(t).Items {
		if x.ID == a.ID {
			listed++
		}
	}
	if listed != 1 {
		t.Errorf("recreated app listed %d times", listed)
	}
	// The other app's records are untouched.
	if bs := get(s.ListBindings(ctx, keep.ID, ""))(t); len(bs) != 1 {
		t.Errorf("bindings of kept app: %v", bs)
	}
	if ds := get(s.Droplets(ctx, keep.ID))(t); len(ds) != 1 {
		t.Errorf("droplets of kept app: %v", ds)
	}
	if p := get(s.ListEvents(ctx, keep.ID, store.ListOptions{}))(t); len(p.Items) != 1 {
		t.Errorf("events of kept app: %v", p.Items)
	}
}

func testAppListPaging(t *testing.T, s store.Store) {
	ctx := context.Background()
	byOwner := map[string][]string{}
	var all []string
	for i := range 11 {
		owner := []string{"a@x", "b@x"}[i%2]
		a := get(s.CreateApp(ctx, sampleApp(owner, fmt.Sprintf("app%d", i), fmt.Sprintf("app%d.com", i))))(t)
		byOwner[owner] = append(byOwner[owner], a.ID)
		all = append(all, a.ID)
	}
	for owner, want := range map[string][]string{"": all, "a@x": byOwner["a@x"], "b@x": byOwner["b@x"], "c@x": nil} {
		sort.Strings(want)
		var got []string
		opts := store.ListOptions{Limit: 4}
		for range 20 {
			p := get(s.ListApps(ctx, owner, opts))(t)
			for _, a := range p.Items {
				if owner != "" && a.Owner != owner {
					t.Errorf("owner %q listed app of %q", owner, a.Owner)
				}
				if len(a.URIs) != 1 || len(a.Env) != 2 {
					t.Errorf("listed app without uris or env: %+v", a)
				}
				got = append(got, a.ID)
			}
			if opts.Cursor = p.Next; p.Next == "" {
				break
			}
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("ListApps(%q) ids (-want +got):\n%s", owner, diff)
		}
	}
}

func testDesiredStates(t *testing.T, s store.Store) {
	ctx := context.Background()
	var want []store.DesiredState
	for i := range 9 {
		a := sampleApp("a@x", fmt.Sprintf("app%d", i))
		if i%3 != 0 {
			a.State = store.AppStarted
		}
		a.Instances, a.Version, a.DropletHash = i, fmt.Sprintf("v%d", i), fmt.Sprintf("d%d", i)
		a = get(s.CreateApp(ctx, a))(t)
		if a.State == store.AppStarted {
			want = append(want, store.DesiredState{
				AppID: a.ID, Name: a.Name, Owner: a.Owner, State: a.State, Instances: a.Instances,
				MemoryMB: a.MemoryMB, Version: a.Version, PackageState: a.PackageState,
				DropletHash: a.DropletHash, UpdatedAt: a.UpdatedAt,
			})
		}
	}
	sort.Slice(want, func(i, j int) bool { return want[i].AppID < want[j].AppID })
	var got []store.DesiredState
	opts := store.ListOptions{Limit: 4}
	for range 10 {
		p := get(s.DesiredStates(ctx, opts))(t)
		got = append(got, p.Items...)
		if opts.Cursor = p.Next; p.Next == "" {
			break
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DesiredStates (-want +got):\n%s", diff)
	}
}

func hashes(ds []store.Droplet) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Hash)
	}
	return out
}

func testDroplets(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := get(s.CreateApp(ctx, sampleApp("a@x", "web")))(t)
	for _, h := range []string{"d1", "d2", "d3"} {
		if pruned := get(s.AddDroplet(ctx, store.Droplet{AppID: a.ID, Hash: h}, 3))(t); len(pruned) != 0 {
			t.Errorf("pruned %v while under keep", pruned)
		}
	}
	// Re-adding d1 moves it to the head.
	get(s.AddDroplet(ctx, store.Droplet{AppID: a.ID, Hash: "d1"}, 3))(t)
	if diff := cmp.Diff([]string{"d1", "d3", "d2"}, hashes(get(s.Droplets(ctx, a.ID))(t))); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	pruned := get(s.AddDroplet(ctx, store.Droplet{AppID: a.ID, Hash: "d4"}, 2))(t)
	if diff := cmp.Diff([]string{"d3", "d2"}, hashes(pruned)); diff != "" {
		t.Errorf("pruned (-want +got):\n%s", diff)
	}
	got := get(s.Droplets(ctx, a.ID))(t)
	if diff := cmp.Diff([]string{"d4", "d1"}, hashes(got)); diff != "" {
		t.Errorf("history after prune (-want +got):\n%s", diff)
	}
	for _, d := range got {
		if d.AppID != a.ID || d.CreatedAt.IsZero() {
			t.Errorf("droplet %+v: want app id and stamp", d)
		}
	}
	_, err := s.AddDroplet(ctx, store.Droplet{AppID: "missing", Hash: "d"}, 0)
	wantErr(t, "droplet of missing app", err, store.ErrNotFound)
	_, err = s.AddDroplet(ctx, store.Droplet{AppID: a.ID}, 0)
	wantErr(t, "empty hash", err, store.ErrInvalid)
	empty := get(s.CreateApp(ctx, sampleApp("a@x", "empty")))(t)
	if ds := get(s.Droplets(ctx, empty.ID))(t); ds != nil {
		t.Errorf("history of new app: %v, want nil", ds)
	}
}

func testEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := get(s.CreateApp(ctx, sampleApp("a@x", "web")))(t)
	b := get(s.CreateApp(ctx, sampleApp("a@x", "other")))(t)
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	var want []store.AppEvent
	for i := range 5 {
		e := get(s.AddEvent(ctx, store.AppEvent{AppID: a.ID, Time: at.Add(time.Duration(i) * time.Second), Type: "app-updated", Description: fmt.Sprint(i)}))(t)
		get(s.AddEvent(ctx, store.AppEvent{AppID: b.ID, Type: "noise"}))(t)
		if i > 0 && e.Seq <= want[i-1].Seq {
			t.Errorf("seq %d not after %d", e.Seq, want[i-1].Seq)
		}
		want = append(want, e)
	}
	stamped := get(s.AddEvent(ctx, store.AppEvent{AppID: b.ID, Type: "stamped"}))(t)
	if stamped.Time.IsZero() {
		t.Error("zero event time not stamped")
	}
	var got []store.AppEvent
	opts := store.ListOptions{Limit: 2}
	for range 10 {
		p := get(s.ListEvents(ctx, a.ID, opts))(t)
		got = append(got, p.Items...)
		if opts.Cursor = p.Next; p.Next == "" {
			break
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ListEvents (-want +got):\n%s", diff)
	}
	_, err := s.AddEvent(ctx, store.AppEvent{AppID: "missing", Type: "x"})
	wantErr(t, "event of missing app", err, store.ErrNotFound)
	_, err = s.ListEvents(ctx, a.ID, store.ListOptions{Cursor: "not-a-cursor"})
	wantErr(t, "bad cursor", err, store.ErrInvalid)
}

func testCrashes(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := get(s.CreateApp(ctx, sampleApp("a@x", "web")))(t)
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	var all []store.Crash
	for i := range 4 {
		c := get(s.AddCrash(ctx, store.Crash{AppID: a.ID, InstanceID: fmt.Sprint("inst", i), Index: i, Time: at.Add(time.Duration(i) * time.Minute), ExitStatus: 137, Reason: "OOM"}))(t)
		all = append(all, c)
	}
	p := get(s.ListCrashes(ctx, a.ID, at.Add(2*time.Minute), store.ListOptions{Limit: 1}))(t)
	if diff := cmp.Diff(all[2:3], p.Items); diff != "" || p.Next == "" {
		t.Errorf("first page since 2m (-want +got), next %q:\n%s", p.Next, diff)
	}
	p = get(s.ListCrashes(ctx, a.ID, at.Add(2*time.Minute), store.ListOptions{Limit: 1, Cursor: p.Next}))(t)
	if diff := cmp.Diff(all[3:], p.Items); diff != "" {
		t.Errorf("second page since 2m (-want +got):\n%s", diff)
	}
	if p.Next != "" {
		p = get(s.ListCrashes(ctx, a.ID, at.Add(2*time.Minute), store.ListOptions{Limit: 1, Cursor: p.Next}))(t)
		if len(p.Items) != 0 || p.Next != "" {
			t.Errorf("page past the end: %v next %q", p.Items, p.Next)
		}
	}
	p = get(s.ListCrashes(ctx, a.ID, time.Time{}, store.ListOptions{}))(t)
	if diff := cmp.Diff(all, p.Items); diff != "" {
		t.Errorf("all crashes (-want +got):\n%s", diff)
	}
	_, err := s.AddCrash(ctx, store.Crash{AppID: "missing"})
	wantErr(t, "crash of missing app", err, store.ErrNotFound)
}

func testBrokers(t *testing.T, s store.Store) {
	ctx := context.Background()
	cat := json.RawMessage(`{"services":[{"name":"pg","plans":[{"name":"small"}]}]}`)
	b := get(s.CreateBroker(ctx, store.ServiceBroker{Name: "pg", URL: "http://127.0.0.1:1", Username: "u", Password: "p", Catalog: cat}))(t)
	if diff := cmp.Diff(b, get(s.GetBroker(ctx, "pg"))(t)); diff != "" {
		t.Errorf("GetBroker (-created +got):\n%s", diff)
	}
	if string(b.Catalog) != string(cat) {
		t.Errorf("catalog %s, want %s", b.Catalog, cat)
	}
	_, err := s.CreateBroker(ctx, store.ServiceBroker{Name: "pg", URL: "http://x"})
	wantErr(t, "duplicate broker", err, store.ErrExists)
	_, err = s.CreateBroker(ctx, store.ServiceBroker{Name: "nourl"})
	wantErr(t, "broker without url", err, store.ErrInvalid)
	get(s.CreateBroker(ctx, store.ServiceBroker{Name: "aaa", URL: "http://a"}))(t)
	b.URL, b.Catalog = "http://127.0.0.1:2", nil
	upd := get(s.UpdateBroker(ctx, b))(t)
	if upd.URL != b.URL || upd.Catalog != nil || !upd.CreatedAt.Equal(b.CreatedAt) {
		t.Errorf("UpdateBroker: %+v", upd)
	}
	_, err = s.UpdateBroker(ctx, store.ServiceBroker{Name: "missing", URL: "http://x"})
	wantErr(t, "update missing broker", err, store.ErrNotFound)
	names := []string{}
	for _, b := range get(s.ListBrokers(ctx))(t) {
		names = append(names, b.Name)
	}
	if diff := cmp.Diff([]string{"aaa", "pg"}, names); diff != "" {
		t.Errorf("ListBrokers (-want +got):\n%s", diff)
	}
	si := get(s.CreateServiceInstance(ctx, store.ServiceInstance{Name: "db", Owner: "a@x", BrokerName: "pg"}))(t)
	wantErr(t, "delete broker in use", s.DeleteBroker(ctx, "pg"), store.ErrInUse)
	noErr(t, s.DeleteServiceInstance(ctx, si.ID))
	noErr(t, s.DeleteBroker(ctx, "pg"))
	wantErr(t, "delete missing broker", s.DeleteBroker(ctx, "pg"), store.ErrNotFound)
}

func testServiceInstances(t *testing.T, s store.Store) {
	ctx := context.Background()
	get(s.CreateBroker(ctx, store.ServiceBroker{Name: "pg", URL: "http://x"}))(t)
	in := store.ServiceInstance{Name: "db", Owner: "a@x", Label: "postgresql", Plan: "small", BrokerName: "pg",
		Credentials: json.RawMessage(`{"uri":"postgres://x"}`), DashboardURL: "http://dash", State: "ready"}
	si := get(s.CreateServiceInstance(ctx, in))(t)
	want := in
	want.ID = si.ID
	if diff := cmp.Diff(want, si, cmpopts.IgnoreFields(store.ServiceInstance{}, "CreatedAt", "UpdatedAt")); diff != "" || si.ID == "" || si.CreatedAt.IsZero() {
		t.Errorf("CreateServiceInstance (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(si, get(s.GetServiceInstance(ctx, si.ID))(t)); diff != "" {
		t.Errorf("GetServiceInstance (-created +got):\n%s", diff)
	}
	if diff := cmp.Diff(si, get(s.GetServiceInstanceByName(ctx, "a@x", "db"))(t)); diff != "" {
		t.Errorf("GetServiceInstanceByName (-created +got):\n%s", diff)
	}
	_, err := s.CreateServiceInstance(ctx, store.ServiceInstance{Name: "db", Owner: "a@x"})
	wantErr(t, "duplicate name", err, store.ErrExists)
	_, err = s.CreateServiceInstance(ctx, store.ServiceInstance{ID: si.ID, Name: "db2", Owner: "a@x"})
	wantErr(t, "duplicate id", err, store.ErrExists)
	_, err = s.CreateServiceInstance(ctx, store.ServiceInstance{Name: "db", Owner: "b@x", BrokerName: "nope"})
	wantErr(t, "missing broker", err, store.ErrNotFound)
	_, err = s.CreateServiceInstance(ctx, store.ServiceInstance{Name: "db"})
	wantErr(t, "empty owner", err, store.ErrInvalid)
	other := get(s.CreateServiceInstance(ctx, store.ServiceInstance{Name: "db", Owner: "b@x"}))(t)
	_, err = s.GetServiceInstance(ctx, "missing")
	wantErr(t, "missing instance", err, store.ErrNotFound)

	si.Plan, si.State, si.Credentials, si.Label = "large", "updating", nil, "ignored"
	upd := get(s.UpdateServiceInstance(ctx, si))(t)
	if upd.Plan != "large" || upd.State != "updating" || upd.Credentials != nil || upd.Label != "postgresql" {
		t.Errorf("UpdateServiceInstance: %+v", upd)
	}
	_, err = s.UpdateServiceInstance(ctx, store.ServiceInstance{ID: "missing"})
	wantErr(t, "update missing instance", err, store.ErrNotFound)

	ids := []string{si.ID, other.ID}
	sort.Strings(ids)
	p := get(s.ListServiceInstances(ctx, "", store.ListOptions{Limit: 1}))(t)
	if len(p.Items) != 1 || p.Items[0].ID != ids[0] || p.Next == "" {
		t.Fatalf("first page: %+v", p)
	}
	p = get(s.ListServiceInstances(ctx, "", store.ListOptions{Limit: 1, Cursor: p.Next}))(t)
	if len(p.Items) != 1 || p.Items[0].ID != ids[1] {
		t.Errorf("second page: %+v", p)
	}
	p = get(s.ListServiceInstances(ctx, "b@x", store.ListOptions{}))(t)
	if len(p.Items) != 1 || p.Items[0].ID != other.ID || p.Next != "" {
		t.Errorf("instances of b@x: %+v", p)
	}
	noErr(t, s.DeleteServiceInstance(ctx, other.ID))
	wantErr(t, "delete again", s.DeleteServiceInstance(ctx, other.ID), store.ErrNotFound)
	get(s.CreateServiceInstance(ctx, store.ServiceInstance{Name: "db", Owner: "b@x"}))(t)
}

func testBindings(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := get(s.CreateApp(ctx, sampleApp("a@x", "web")))(t)
	b := get(s.CreateApp(ctx, sampleApp("a@x", "worker")))(t)
	db := get(s.CreateServiceInstance(ctx, store.ServiceInstance{Name: "db", Owner: "a@x"}))(t)
	mq := get(s.CreateServiceInstance(ctx, store.ServiceInstance{Name: "mq", Owner: "a@x"}))(t)
	creds := json.RawMessage(`{"password":"s3cret"}`)
	ab := get(s.CreateBinding(ctx, store.Binding{AppID: a.ID, InstanceID: db.ID, Credentials: creds}))(t)
	if ab.ID == "" || ab.CreatedAt.IsZero() || string(ab.Credentials) != string(creds) {
		t.Errorf("CreateBinding: %+v", ab)
	}
	if diff := cmp.Diff(ab, get(s.GetBinding(ctx, ab.ID))(t)); diff != "" {
		t.Errorf("GetBinding (-created +got):\n%s", diff)
	}
	am := get(s.CreateBinding(ctx, store.Binding{AppID: a.ID, InstanceID: mq.ID}))(t)
	bb := get(s.CreateBinding(ctx, store.Binding{AppID: b.ID, InstanceID: db.ID}))(t)
	_, err := s.CreateBinding(ctx, store.Binding{AppID: a.ID, InstanceID: db.ID})
	wantErr(t, "duplicate pair", err, store.ErrExists)
	_, err = s.CreateBinding(ctx, store.Binding{AppID: "missing", InstanceID: db.ID})
	wantErr(t, "missing app", err, store.ErrNotFound)
	_, err = s.CreateBinding(ctx, store.Binding{AppID: a.ID, InstanceID: "missing"})
	wantErr(t, "missing instance", err, store.ErrNotFound)
	_, err = s.CreateBinding(ctx, store.Binding{AppID: a.ID})
	wantErr(t, "empty instance", err, store.ErrInvalid)

	ids := func(bs []store.Binding) []string {
		var out []string
		for _, b := range bs {
			out = append(out, b.ID)
		}
		return out
	}
	sorted := func(xs ...string) []string { sort.Strings(xs); return xs }
	for _, tc := range []struct {
		app, inst string
		want      []string
	}{
		{a.ID, "", sorted(ab.ID, am.ID)},
		{"", db.ID, sorted(ab.ID, bb.ID)},
		{a.ID, mq.ID, []string{am.ID}},
		{"", "", sorted(ab.ID, am.ID, bb.ID)},
		{b.ID, mq.ID, nil},
	} {
		if diff := cmp.Diff(tc.want, ids(get(s.ListBindings(ctx, tc.app, tc.inst))(t))); diff != "" {
			t.Errorf("ListBindings(%q, %q) (-want +got):\n%s", tc.app, tc.inst, diff)
		}
	}
	wantErr(t, "delete bound instance", s.DeleteServiceInstance(ctx, mq.ID), store.ErrInUse)
	noErr(t, s.DeleteBinding(ctx, am.ID))
	wantErr(t, "delete binding again", s.DeleteBinding(ctx, am.ID), store.ErrNotFound)
	_, err = s.GetBinding(ctx, am.ID)
	wantErr(t, "deleted binding", err, store.ErrNotFound)
	noErr(t, s.DeleteServiceInstance(ctx, mq.ID))
}

func sha(i int) string { return fmt.Sprintf("%040x", i) }

func testResources(t *testing.T, s store.Store) {
	ctx := context.Background()
	noErr(t, s.PutResources(ctx, []store.Resource{{SHA1: sha(1), Size: 10}, {SHA1: sha(2), Size: 20}, {SHA1: sha(3), Size: 30}}))
	noErr(t, s.PutResources(ctx, []store.Resource{{SHA1: sha(2), Size: 21}}))
	noErr(t, s.PutResources(ctx, nil))
	got := get(s.HaveResources(ctx, []string{sha(3), sha(9), sha(2), sha(3)}))(t)
	want := []store.Resource{{SHA1: sha(3), Size: 30}, {SHA1: sha(2), Size: 21}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("HaveResources (-want +got):\n%s", diff)
	}
	if got := get(s.HaveResources(ctx, nil))(t); got != nil {
		t.Errorf("HaveResources(nil) = %v", got)
	}
	noErr(t, s.DeleteResources(ctx, []string{sha(3), sha(9)}))
	got = get(s.HaveResources(ctx, []string{sha(1), sha(2), sha(3)}))(t)
	if diff := cmp.Diff([]store.Resource{{SHA1: sha(1), Size: 10}, {SHA1: sha(2), Size: 21}}, got); diff != "" {
		t.Errorf("after delete (-want +got):\n%s", diff)
	}
	wantErr(t, "bad sha1", s.PutResources(ctx, []store.Resource{{SHA1: sha(4), Size: 1}, {SHA1: "xyz", Size: 1}}), store.ErrInvalid)
	if got := get(s.HaveResources(ctx, []string{sha(4)}))(t); got != nil {
		t.Errorf("invalid batch stored %v", got)
	}
	// A large batch exercises any chunking of the look-up.
	var big []store.Resource
	var keys []string
	for i := range 2500 {
		big = append(big, store.Resource{SHA1: sha(1000 + i), Size: int64(i)})
		keys = append(keys, sha(1000+i))
	}
	noErr(t, s.PutResources(ctx, big))
	if diff := cmp.Diff(big, get(s.HaveResources(ctx, keys))(t)); diff != "" {
		t.Errorf("large batch (-want +got):\n%s", diff)
	}
}

func testTimes(t *testing.T, s store.Store) {
	ctx := context.Background()
	local := time.FixedZone("X", 3600)
	staged := time.Date(2026, 3, 4, 5, 6, 7, 123456789, local)
	a := sampleApp("a@x", "web")
	a.StagedAt = staged
	a = get(s.CreateApp(ctx, a))(t)
	got := get(s.GetApp(ctx, a.ID))(t)
	for name, ts := range map[string]time.Time{"CreatedAt": got.CreatedAt, "UpdatedAt": got.UpdatedAt, "StagedAt": got.StagedAt} {
		if ts.Location() != time.UTC || ts.Nanosecond()%1000 != 0 {
			t.Errorf("%s = %v: want UTC, whole microseconds", name, ts)
		}
	}
	if !got.StagedAt.Equal(staged.Truncate(time.Microsecond)) {
		t.Errorf("StagedAt = %v, want %v", got.StagedAt, staged.Truncate(time.Microsecond))
	}
	if since := time.Since(got.CreatedAt); since < -time.Minute || since > time.Hour {
		t.Errorf("CreatedAt %v is not now", got.CreatedAt)
	}
	b := get(s.CreateApp(ctx, sampleApp("a@x", "nostage")))(t)
	if !b.StagedAt.IsZero() || !get(s.GetApp(ctx, b.ID))(t).StagedAt.IsZero() {
		t.Error("zero StagedAt did not stay zero")
	}
}

func testContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	a := get(s.CreateApp(ctx, sampleApp("a@x", "web")))(t)
	cancel()
	_, err := s.GetApp(ctx, a.ID)
	wantErr(t, "GetApp on cancelled context", err, context.Canceled)
	a.Instances = 7
	_, err = s.UpdateApp(ctx, a)
	wantErr(t, "UpdateApp on cancelled context", err, context.Canceled)
	if got := get(s.GetApp(context.Background(), a.ID))(t); got.Instances == 7 {
		t.Error("update on a cancelled context was applied")
	}
}

func testClosed(t *testing.T, s store.Store) {
	ctx := context.Background()
	get(s.CreateUser(ctx, store.User{Email: "a@x"}))(t)
	noErr(t, s.Close())
	noErr(t, s.Close())
	_, err := s.GetUser(ctx, "a@x")
	wantErr(t, "GetUser after Close", err, store.ErrClosed)
	_, err = s.CreateApp(ctx, sampleApp("a@x", "web"))
	wantErr(t, "CreateApp after Close", err, store.ErrClosed)
}

// CheckCursor lists every paged collection of s with a client-supplied
// cursor and fails t unless each call succeeds or fails with ErrInvalid. Fuzz
// targets of implementations call it.
func CheckCursor(t *testing.T, s store.Store, cursor string) {
	t.Helper()
	ctx := context.Background()
	a, err := s.CreateApp(ctx, sampleApp("a@x", "web", "web.com"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.AddEvent(ctx, store.AppEvent{AppID: a.ID, Type: fmt.Sprint("e", i)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddCrash(ctx, store.Crash{AppID: a.ID, Index: i}); err != nil {
			t.Fatal(err)
		}
	}
	opts := store.ListOptions{Limit: 2, Cursor: cursor}
	check := func(what string, err error) {
		if err != nil && !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s with cursor %q: %v", what, cursor, err)
		}
	}
	_, err = s.ListUsers(ctx, opts)
	check("ListUsers", err)
	_, err = s.ListApps(ctx, "", opts)
	check("ListApps", err)
	_, err = s.DesiredStates(ctx, opts)
	check("DesiredStates", err)
	_, err = s.ListEvents(ctx, a.ID, opts)
	check("ListEvents", err)
	_, err = s.ListCrashes(ctx, a.ID, time.Time{}, opts)
	check("ListCrashes", err)
	_, err = s.ListServiceInstances(ctx, "", opts)
	check("ListServiceInstances", err)
}
