package store_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kiln-paas/kiln/controller/store"
)

func TestEffectiveLimit(t *testing.T) {
	tests := []struct{ in, want int }{
		{0, store.DefaultLimit},
		{-5, store.DefaultLimit},
		{1, 1},
		{store.MaxLimit, store.MaxLimit},
		{store.MaxLimit + 1, store.MaxLimit},
	}
	for _, tc := range tests {
		if got := (store.ListOptions{Limit: tc.in}).EffectiveLimit(); got != tc.want {
			t.Errorf("EffectiveLimit(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func validApp() store.App {
	return store.App{Name: "web", Owner: "a@x", State: store.AppStarted, Instances: 1,
		URIs: []string{"a.com", "b.com"}, Env: []string{"K=V", "EMPTY="}}
}

func TestAppValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*store.App)
		ok     bool
	}{
		{"valid", func(*store.App) {}, true},
		{"stopped, staged", func(a *store.App) { a.State, a.PackageState = store.AppStopped, store.PackageStaged }, true},
		{"empty name", func(a *store.App) { a.Name = "" }, false},
		{"empty owner", func(a *store.App) { a.Owner = "" }, false},
		{"lower-case state", func(a *store.App) { a.State = "started" }, false},
		{"negative disk", func(a *store.App) { a.DiskMB = -1 }, false},
		{"negative fds", func(a *store.App) { a.FDs = -1 }, false},
		{"negative timeout", func(a *store.App) { a.HealthCheckTimeout = -1 }, false},
		{"unknown package state", func(a *store.App) { a.PackageState = "staged" }, false},
		{"duplicate uri", func(a *store.App) { a.URIs = []string{"a.com", "a.com"} }, false},
		{"env without key", func(a *store.App) { a.Env = []string{"=V"} }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := validApp()
			tc.mutate(&a)
			err := a.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, store.ErrInvalid) {
				t.Errorf("%v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestOtherValidate(t *testing.T) {
	sha := strings.Repeat("ab", 20)
	tests := []struct {
		name string
		err  error
		ok   bool
	}{
		{"user", store.User{Email: "a@x"}.Validate(), true},
		{"user without email", store.User{}.Validate(), false},
		{"quota", store.Quota{MemoryMB: 1}.Validate(), true},
		{"negative quota", store.Quota{Services: -1}.Validate(), false},
		{"broker", store.ServiceBroker{Name: "b", URL: "http://x"}.Validate(), true},
		{"broker without url", store.ServiceBroker{Name: "b"}.Validate(), false},
		{"instance", store.ServiceInstance{Name: "db", Owner: "a@x"}.Validate(), true},
		{"instance without owner", store.ServiceInstance{Name: "db"}.Validate(), false},
		{"binding", store.Binding{AppID: "a", InstanceID: "i"}.Validate(), true},
		{"binding without app", store.Binding{InstanceID: "i"}.Validate(), false},
		{"resource", store.Resource{SHA1: sha, Size: 0}.Validate(), true},
		{"upper-case sha1", store.Resource{SHA1: strings.ToUpper(sha)}.Validate(), false},
		{"short sha1", store.Resource{SHA1: sha[:39]}.Validate(), false},
		{"negative size", store.Resource{SHA1: sha, Size: -1}.Validate(), false},
	}
	for _, tc := range tests {
		if (tc.err == nil) != tc.ok || (tc.err != nil && !errors.Is(tc.err, store.ErrInvalid)) {
			t.Errorf("%s: Validate() = %v, want ok=%v", tc.name, tc.err, tc.ok)
		}
	}
}

// FuzzAppValidate feeds API-supplied app fields to Validate: it never panics,
// and what it accepts meets the store's invariants.
func FuzzAppValidate(f *testing.F) {
	f.Add("web", "a@x", "STARTED", 1, "a.com,b.com", "K=V")
	f.Add("", "", "RUNNING", -1, ",", "=")
	f.Fuzz(func(t *testing.T, name, owner, state string, instances int, uris, env string) {
		a := store.App{Name: name, Owner: owner, State: state, Instances: instances,
			URIs: strings.Split(uris, ","), Env: strings.Split(env, ",")}
		err := a.Validate()
		if err != nil {
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, u := range a.URIs {
			if u == "" || seen[u] {
				t.Fatalf("accepted uris %q", a.URIs)
			}
			seen[u] = true
		}
		for _, e := range a.Env {
			if i := strings.IndexByte(e, '='); i <= 0 {
				t.Fatalf("accepted env %q", e)
			}
		}
		if a.Name == "" || a.Owner == "" || a.Instances < 0 || (a.State != store.AppStarted && a.State != store.AppStopped) {
			t.Fatalf("accepted %+v", a)
		}
	})
}
