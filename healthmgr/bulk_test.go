package healthmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
)

// fakeBulk is a controller's bulk API over apps, paged by an id cursor
// as the original (rows with id > bulk_token.id, in id order).
type fakeBulk struct {
	t    *testing.T
	apps []protocol.BulkApp // ordered by ID

	mu       sync.Mutex
	password string
	pages    int
	sizes    []string
	// misbehave, when set, answers instead of the normal page.
	misbehave func(w http.ResponseWriter, token map[string]any) bool
}

func (f *fakeBulk) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/bulk/apps" {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	password := f.password
	f.pages++
	f.sizes = append(f.sizes, r.URL.Query().Get("batch_size"))
	misbehave := f.misbehave
	f.mu.Unlock()
	if u, p, ok := r.BasicAuth(); !ok || u != "bulk_api" || p != password {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	var token map[string]any
	if err := json.Unmarshal([]byte(r.URL.Query().Get("bulk_token")), &token); err != nil {
		http.Error(w, "bad token", http.StatusBadRequest)
		return
	}
	if misbehave != nil && misbehave(w, token) {
		return
	}
	size, _ := strconv.Atoi(r.URL.Query().Get("batch_size"))
	after, _ := token["id"].(string)
	page := protocol.BulkAppsPage{Results: map[string]protocol.BulkApp{}, BulkToken: map[string]any{}}
	for _, a := range f.apps {
		if string(a.ID) > after && len(page.Results) < size {
			page.Results[string(a.ID)] = a
			page.BulkToken["id"] = string(a.ID)
		}
	}
	_ = json.NewEncoder(w).Encode(page)
}

func (f *fakeBulk) setPassword(p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.password = p
}

// bulkFixture is a fake controller: bulk API over HTTP and credentials on
// the bus.
func bulkFixture(t *testing.T, napps int) (*fakeBulk, *httptest.Server, *membus.Conn) {
	t.Helper()
	f := &fakeBulk{t: t, password: "s3cret"}
	for i := range napps {
		f.apps = append(f.apps, protocol.BulkApp{
			ID: protocol.AppID(fmt.Sprintf("app-%03d", i)), Version: "v1", Instances: i % 4,
			State: "STARTED", PackageState: "STAGED", UpdatedAt: int64(1700000000 + i),
		})
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	ms := membus.NewServer(membus.DefaultConfig())
	t.Cleanup(ms.Close)
	cc := ms.Connect()
	sub, err := cc.Subscribe(protocol.BulkCredentialsSubject, func(m *bus.Msg) {
		f.mu.Lock()
		creds := protocol.BulkCredentials{User: "bulk_api", Password: f.password}
		f.mu.Unlock()
		_ = bus.RespondJSON(cc, m, creds)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return f, srv, ms.Connect()
}

func TestBulkSourcePages(t *testing.T) {
	t.Parallel()
	f, srv, conn := bulkFixture(t, 23)
	src, err := NewBulkSource(srv.URL+"/", conn, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	src.BatchSize = 5
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	got, err := src.Desired(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f.apps, got); diff != "" {
		t.Fatalf("apps (-want +got):\n%s", diff)
	}
	// 23 apps in pages of 5: 5 full pages and an empty one ending it.
	if f.pages != 6 || f.sizes[0] != "5" {
		t.Errorf("pages = %d with batch_size %q, want 6 with 5", f.pages, f.sizes[0])
	}

	// The controller restarts with a new password: asked again, once.
	f.setPassword("rotated")
	if got, err := src.Desired(ctx); err != nil || len(got) != 23 {
		t.Fatalf("after password change: %d apps, %v", len(got), err)
	}
}

func TestBulkSourceErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		misbehave func(w http.ResponseWriter, token map[string]any) bool
		noCreds   bool
		want      error
	}{{
		name: "server error",
		misbehave: func(w http.ResponseWriter, _ map[string]any) bool {
			http.Error(w, "db down", http.StatusInternalServerError)
			return true
		},
		want: ErrDesiredUnavailable,
	}, {
		name: "bad json",
		misbehave: func(w http.ResponseWriter, _ map[string]any) bool {
			_, _ = w.Write([]byte(`{"results": [`))
			return true
		},
		want: ErrBadPage,
	}, {
		name: "token does not advance",
		misbehave: func(w http.ResponseWriter, _ map[string]any) bool {
			_, _ = w.Write([]byte(`{"results": {"a": {"id": "a", "version": "v", "instances": 1, "state": "STARTED"}}, "bulk_token": {"id": "a"}}`))
			return true
		},
		want: ErrBadPage,
	}, {
		name:    "no credentials",
		noCreds: true,
		want:    ErrDesiredUnavailable,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, srv, conn := bulkFixture(t, 3)
			f.misbehave = tt.misbehave
			b := bus.Bus(conn)
			if tt.noCreds {
				b = membus.New() // nobody answers credentials there
				t.Cleanup(func() { _ = b.Close() })
			}
			src, err := NewBulkSource(srv.URL, b, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			if _, err := src.Desired(ctx); !errors.Is(err, tt.want) {
				t.Fatalf("Desired: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNewBulkSourceRejectsBadURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "ftp://cc", "cc:9022", "http://"} {
		if _, err := NewBulkSource(u, membus.New(), nil); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NewBulkSource(%q): %v, want ErrInvalidConfig", u, err)
		}
	}
}

// TestManagerOnBulkSource runs a manager on the bulk API: droplet.updated
// causes a (debounced) full reload, since the bulk API has no per-app read.
func TestManagerOnBulkSource(t *testing.T) {
	t.Parallel()
	f, srv, _ := bulkFixture(t, 0)
	w := newWorld(t)
	// The fake controller answers credentials on the world's bus.
	w.sub(protocol.BulkCredentialsSubject, func(m *bus.Msg) {
		_ = bus.RespondJSON(w.conn, m, protocol.BulkCredentials{User: "bulk_api", Password: "s3cret"})
	})
	src, err := NewBulkSource(srv.URL, w.srv.Connect(), srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.ReloadDebounce = time.Second
	reg := newHM(t, w, cfg, src)
	eventually(t, "first load", reg.loaded)
	w.clk.Advance(cfg.StartupWait)

	f.mu.Lock()
	f.apps = []protocol.BulkApp{w.app("blog", 1)}
	f.mu.Unlock()
	w.publish(protocol.DropletUpdated, protocol.Updated{Droplet: "blog"})
	eventually(t, "reload scheduled", func() bool { return w.clk.timersDue(cfg.ReloadDebounce) == 1 })
	w.publish(protocol.DropletUpdated, protocol.Updated{Droplet: "blog"})
	loads := reg.metric("kiln_healthmgr_desired_loads_total", map[string]string{"kind": "all", "result": "ok"})
	w.clk.Advance(cfg.ReloadDebounce)
	if r := w.next(); r.Op != "START" || r.Droplet != "blog" {
		t.Fatalf("got %+v, want START of blog", r)
	}
	if n := reg.metric("kiln_healthmgr_desired_loads_total", map[string]string{"kind": "all", "result": "ok"}); n != loads+1 {
		t.Errorf("two notices caused %v reloads, want 1", n-loads)
	}
}
