package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	dto "github.com/prometheus/client_model/go"

	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/client"
	"github.com/kiln-paas/kiln/controller/controllertest"
	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/internal/syncbuf"
)

// sortKeys compares key lists as sets.
var sortKeys = cmpopts.SortSlices(func(a, b string) bool { return a < b })

// blobKeys returns the keys of every blob of kind.
func blobKeys(t *testing.T, bs blobstore.Blobstore, kind blobstore.Kind) []string {
	t.Helper()
	var keys []string
	for info, err := range bs.List(context.Background(), kind) {
		if err != nil {
			t.Fatalf("list %s: %v", kind, err)
		}
		keys = append(keys, info.Key)
	}
	return keys
}

// putBlob stores content under kind (under key for build caches) and
// returns its key.
func putBlob(t *testing.T, bs blobstore.Blobstore, kind blobstore.Kind, key, content string) string {
	t.Helper()
	ctx := context.Background()
	var (
		info blobstore.Info
		err  error
	)
	if kind == blobstore.KindBuildCache {
		info, err = bs.Put(ctx, kind, key, strings.NewReader(content))
	} else {
		info, err = bs.Add(ctx, kind, strings.NewReader(content))
	}
	if err != nil {
		t.Fatalf("put %s: %v", kind, err)
	}
	return info.Key
}

// appRecord returns owner's app called name as stored.
func (e *env) appRecord(owner, name string) store.App {
	e.t.Helper()
	a, err := e.store.GetAppByName(context.Background(), owner, name)
	if err != nil {
		e.t.Fatalf("app %s: %v", name, err)
	}
	return a
}

// repush pushes new files to an app and waits for the new droplet.
func (e *env) repush(cl *client.Client, owner, name string, files map[string]string) store.App {
	e.t.Helper()
	before := e.appRecord(owner, name)
	if _, err := cl.Push(context.Background(), name, controllertest.AppDir(e.t, files)); err != nil {
		e.t.Fatalf("push %s: %v", name, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := e.appRecord(owner, name)
		if a.PackageState == store.PackageStaged && a.DropletHash != before.DropletHash {
			return a
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("app %s: not restaged: %+v", name, a)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gcFixture is an environment holding blobs of every sort the collector
// must tell apart.
type gcFixture struct {
	e     *env
	start time.Time
	// kept are the blobs referenced by live apps, or shared (resources).
	kept map[blobstore.Kind][]string
	// garbage are the blobs no app references, all older than the grace
	// once the clock has moved GCGrace past start.
	garbage map[blobstore.Kind][]string
}

// newGCFixture builds, with a history of one droplet per app:
//   - app "keep", pushed twice: its first package and droplet are garbage,
//     the current ones and its build cache are kept;
//   - app "gone", pushed with a build cache and deleted: all three garbage;
//   - apps "twin-a" and "twin-b" pushing the same bits, "twin-a" deleted:
//     the shared package is kept for "twin-b", and so is the droplet unless
//     twin-a's staging packed its own (then that one is garbage);
//   - a resource-pool file nothing refers to: kept.
func newGCFixture(t *testing.T, mod func(*Config)) *gcFixture {
	const owner = "gc@x.io"
	start := time.Now().UTC()
	e := newEnv(t, func(c *Config) {
		c.DropletHistory = 1
		if mod != nil {
			mod(c)
		}
	})
	e.clock.Set(start)
	ctx := context.Background()
	cl := e.user(owner)
	f := &gcFixture{e: e, start: start, kept: map[blobstore.Kind][]string{}, garbage: map[blobstore.Kind][]string{}}

	pushStaged(t, cl, "keep", map[string]string{"app.txt": "version one"})
	v1 := e.appRecord(owner, "keep")
	v2 := e.repush(cl, owner, "keep", map[string]string{"app.txt": "version two"})
	if ds, err := e.store.Droplets(ctx, v2.ID); err != nil || len(ds) != 1 || ds[0].Hash != v2.DropletHash {
		t.Fatalf("history of keep = %+v, %v; want only %s", ds, err, v2.DropletHash)
	}
	keepCache := putBlob(t, e.blobs, blobstore.KindBuildCache, strings.ToLower(v2.ID), "keep cache")

	pushStaged(t, cl, "gone", map[string]string{"gone.txt": "soon deleted"})
	gone := e.appRecord(owner, "gone")
	goneCache := putBlob(t, e.blobs, blobstore.KindBuildCache, strings.ToLower(gone.ID), "gone cache")
	if err := cl.DeleteApp(ctx, "gone"); err != nil {
		t.Fatal(err)
	}

	twin := map[string]string{"twin.txt": "same bits"}
	pushStaged(t, cl, "twin-a", twin)
	pushStaged(t, cl, "twin-b", twin)
	twinA, twinB := e.appRecord(owner, "twin-a"), e.appRecord(owner, "twin-b")
	if twinA.PackageHash != twinB.PackageHash {
		t.Fatalf("same bits, packages %s and %s", twinA.PackageHash, twinB.PackageHash)
	}
	if err := cl.DeleteApp(ctx, "twin-a"); err != nil {
		t.Fatal(err)
	}
	putBlob(t, e.blobs, blobstore.KindResource, "", "a pooled file nobody refers to")

	f.kept[blobstore.KindPackage] = []string{v2.PackageHash, twinB.PackageHash}
	f.kept[blobstore.KindDroplet] = []string{v2.DropletHash, twinB.DropletHash}
	f.kept[blobstore.KindBuildCache] = []string{keepCache}
	f.kept[blobstore.KindResource] = blobKeys(t, e.blobs, blobstore.KindResource)
	f.garbage[blobstore.KindPackage] = []string{v1.PackageHash, gone.PackageHash}
	f.garbage[blobstore.KindDroplet] = []string{v1.DropletHash, gone.DropletHash}
	if twinA.DropletHash != twinB.DropletHash {
		// Each staging packs its own droplet: twin-a's went with it.
		f.garbage[blobstore.KindDroplet] = append(f.garbage[blobstore.KindDroplet], twinA.DropletHash)
	}
	f.garbage[blobstore.KindBuildCache] = []string{goneCache}
	return f
}

// garbageCount returns the number of garbage blobs by kind.
func (f *gcFixture) garbageCount() map[blobstore.Kind]int {
	m := map[blobstore.Kind]int{}
	for k, keys := range f.garbage {
		m[k] = len(keys)
	}
	return m
}

// check fails unless the blobstore holds exactly the kept blobs plus extra.
func (f *gcFixture) check(t *testing.T, extra map[blobstore.Kind][]string) {
	t.Helper()
	for _, kind := range blobstore.Kinds() {
		want := append(append([]string(nil), f.kept[kind]...), extra[kind]...)
		got := blobKeys(t, f.e.blobs, kind)
		if diff := cmp.Diff(want, got, sortKeys, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s after sweep (-want +got):\n%s", kind, diff)
		}
	}
}

func TestCollectGarbage(t *testing.T) {
	t.Parallel()
	f := newGCFixture(t, nil)
	e, ctx := f.e, context.Background()
	grace := e.c.cfg.GCGrace
	var orphan string // a package stored late, referenced by nothing
	all := func(kind blobstore.Kind) []string {
		return append(append([]string(nil), f.kept[kind]...), f.garbage[kind]...)
	}
	// Referenced and garbage blobs of the swept kinds (not resources).
	refs, garbage := 0, 0
	for _, kind := range gcKinds {
		refs += len(f.kept[kind])
		garbage += len(f.garbage[kind])
	}
	if refs != 5 || garbage < 5 {
		t.Fatalf("fixture: %d referenced and %d garbage blobs, want 5 and at least 5", refs, garbage)
	}
	steps := []struct {
		name string
		// at is the clock's offset from the fixture's start.
		at time.Duration
		// before runs before the sweep.
		before    func()
		want      GCStats
		remaining func() map[blobstore.Kind][]string
	}{
		{
			name: "everything younger than the grace",
			at:   grace / 2,
			want: GCStats{Scanned: refs + garbage, Referenced: refs, Young: garbage},
			remaining: func() map[blobstore.Kind][]string {
				return map[blobstore.Kind][]string{blobstore.KindPackage: f.garbage[blobstore.KindPackage],
					blobstore.KindDroplet: f.garbage[blobstore.KindDroplet], blobstore.KindBuildCache: f.garbage[blobstore.KindBuildCache]}
			},
		},
		{
			name: "past the grace: trimmed droplet and deleted app collected, young orphan kept",
			at:   grace + time.Minute,
			before: func() {
				orphan = putBlob(t, e.blobs, blobstore.KindPackage, "", "uploaded, not recorded yet")
			},
			want: GCStats{Scanned: refs + garbage + 1, Referenced: refs, Young: 1, Collected: f.garbageCount(), CollectedBytes: -1},
			remaining: func() map[blobstore.Kind][]string {
				return map[blobstore.Kind][]string{blobstore.KindPackage: {orphan}}
			},
		},
		{
			name:      "the orphan ages past the grace",
			at:        2*grace + 2*time.Minute,
			want:      GCStats{Scanned: refs + 1, Referenced: refs, Collected: map[blobstore.Kind]int{blobstore.KindPackage: 1}, CollectedBytes: -1},
			remaining: func() map[blobstore.Kind][]string { return nil },
		},
		{
			name:      "nothing left to collect",
			at:        10 * grace,
			want:      GCStats{Scanned: refs, Referenced: refs},
			remaining: func() map[blobstore.Kind][]string { return nil },
		},
	}
	// Sanity: the fixture holds what the steps count on.
	for _, kind := range gcKinds {
		if diff := cmp.Diff(all(kind), blobKeys(t, e.blobs, kind), sortKeys); diff != "" {
			t.Fatalf("fixture %s (-want +got):\n%s", kind, diff)
		}
	}
	for _, step := range steps {
		e.clock.Set(f.start.Add(step.at))
		if step.before != nil {
			step.before()
		}
		got, err := e.c.CollectGarbage(ctx)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if step.want.CollectedBytes < 0 {
			if got.CollectedBytes <= 0 {
				t.Errorf("%s: CollectedBytes = %d, want > 0", step.name, got.CollectedBytes)
			}
			step.want.CollectedBytes = got.CollectedBytes
		}
		if diff := cmp.Diff(step.want, got); diff != "" {
			t.Errorf("%s: stats (-want +got):\n%s", step.name, diff)
		}
		f.check(t, step.remaining())
	}
	for kind, want := range map[blobstore.Kind]int{blobstore.KindPackage: 3, blobstore.KindDroplet: len(f.garbage[blobstore.KindDroplet]), blobstore.KindBuildCache: 1, blobstore.KindResource: 0} {
		var m dto.Metric
		if err := e.c.m.blobsCollected.WithLabelValues(string(kind)).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetCounter().GetValue(); got != float64(want) {
			t.Errorf("blobs_collected_total{kind=%q} = %v, want %v", kind, got, want)
		}
	}
	// The kept app can still be restaged from its package.
	cl := e.client()
	if _, err := cl.Login(ctx, "gc@x.io", "pw-gc@x.io"); err != nil {
		t.Fatal(err)
	}
	e.repush(cl, "gc@x.io", "keep", map[string]string{"app.txt": "version three"})
}

// TestCollectGarbageSharedStore runs sweeps of two controllers sharing a
// store and blobstore at once: together they collect each garbage blob
// exactly once, and neither fails on blobs the other took.
func TestCollectGarbageSharedStore(t *testing.T) {
	t.Parallel()
	f := newGCFixture(t, nil)
	e := f.e
	other, err := New(e.c.cfg, Deps{Bus: e.bus, Store: e.store, Blobs: e.blobs, Stager: e.stager, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Set(f.start.Add(e.c.cfg.GCGrace + time.Second))
	var (
		wg    sync.WaitGroup
		stats [2]GCStats
		errs  [2]error
	)
	for i, c := range []*Controller{e.c, other} {
		wg.Go(func() { stats[i], errs[i] = c.CollectGarbage(context.Background()) })
	}
	wg.Wait()
	sum := map[blobstore.Kind]int{}
	for i := range stats {
		if errs[i] != nil {
			t.Fatalf("controller %d: %v", i, errs[i])
		}
		for k, n := range stats[i].Collected {
			sum[k] += n
		}
	}
	if diff := cmp.Diff(f.garbageCount(), sum); diff != "" {
		t.Errorf("collected by both (-want +got):\n%s", diff)
	}
	f.check(t, nil)
}

// failingStore fails reading droplet histories.
type failingStore struct {
	store.Store
}

var errHistory = errors.New("history unavailable")

func (failingStore) Droplets(context.Context, string) ([]store.Droplet, error) {
	return nil, errHistory
}

// TestCollectGarbageStoreFailure checks that a sweep that cannot read every
// reference deletes nothing.
func TestCollectGarbageStoreFailure(t *testing.T) {
	t.Parallel()
	f := newGCFixture(t, nil)
	e := f.e
	c, err := New(e.c.cfg, Deps{Bus: e.bus, Store: failingStore{e.store}, Blobs: e.blobs, Stager: e.stager, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Set(f.start.Add(10 * e.c.cfg.GCGrace))
	st, err := c.CollectGarbage(context.Background())
	if !errors.Is(err, errHistory) {
		t.Fatalf("err = %v, want %v", err, errHistory)
	}
	if diff := cmp.Diff(GCStats{}, st); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	f.check(t, f.garbage)
}

// TestGarbageCollectedPeriodically checks that Run sweeps every GCInterval.
func TestGarbageCollectedPeriodically(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *Config) { c.GCInterval = 10 * time.Millisecond })
	ctx := context.Background()
	start := time.Now().UTC()
	e.clock.Set(start)
	young := putBlob(t, e.blobs, blobstore.KindDroplet, "", "young")
	e.clock.Set(start.Add(-2 * e.c.cfg.GCGrace))
	old := putBlob(t, e.blobs, blobstore.KindDroplet, "", "old")
	e.clock.Set(start)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := e.blobs.Stat(ctx, blobstore.KindDroplet, old)
		if errors.Is(err, blobstore.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old droplet not collected: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.blobs.Stat(ctx, blobstore.KindDroplet, young); err != nil {
		t.Fatalf("young droplet: %v", err)
	}
}

func TestGCConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		interval time.Duration
		grace    time.Duration
		ok       bool
	}{
		{"defaults", time.Hour, time.Hour, true},
		{"periodic sweep off", 0, time.Hour, true},
		{"negative interval", -time.Second, time.Hour, false},
		{"zero grace", time.Hour, 0, false},
		{"negative grace", time.Hour, -time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ExternalURL = "http://127.0.0.1:9022"
			cfg.GCInterval, cfg.GCGrace = tt.interval, tt.grace
			if err := cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// TestCollectGarbageHistory checks that every droplet kept in an app's
// history survives, the trimmed ones go, and each deletion is logged.
func TestCollectGarbageHistory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		keep int
		// kept and collected index the droplets of three pushes, oldest
		// first.
		kept, collected []int
	}{
		{keep: 1, kept: []int{2}, collected: []int{0, 1}},
		{keep: 2, kept: []int{1, 2}, collected: []int{0}},
		{keep: 3, kept: []int{0, 1, 2}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("keep=%d", tt.keep), func(t *testing.T) {
			t.Parallel()
			const owner = "hist@x.io"
			start := time.Now().UTC()
			e := newEnv(t, func(c *Config) { c.DropletHistory = tt.keep })
			e.clock.Set(start)
			cl := e.user(owner)
			pushStaged(t, cl, "h", map[string]string{"v": "0"})
			droplets := []string{e.appRecord(owner, "h").DropletHash}
			for i := 1; i < 3; i++ {
				droplets = append(droplets, e.repush(cl, owner, "h", map[string]string{"v": strconv.Itoa(i)}).DropletHash)
			}
			type logged struct {
				Kind, Key string
				Size      int64
			}
			var want []logged
			for _, i := range tt.collected {
				info, err := e.blobs.Stat(context.Background(), blobstore.KindDroplet, droplets[i])
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, logged{string(blobstore.KindDroplet), info.Key, info.Size})
			}
			var logs syncbuf.Buffer
			sweeper, err := New(e.c.cfg, Deps{Bus: e.bus, Store: e.store, Blobs: e.blobs, Stager: e.stager, Now: e.clock.Now,
				Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			e.clock.Set(start.Add(e.c.cfg.GCGrace + time.Second))
			st, err := sweeper.CollectGarbage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := st.Collected[blobstore.KindDroplet]; got != len(tt.collected) {
				t.Errorf("collected %d droplets, want %d (stats %+v)", got, len(tt.collected), st)
			}
			var wantLeft []string
			for _, i := range tt.kept {
				wantLeft = append(wantLeft, droplets[i])
			}
			if diff := cmp.Diff(wantLeft, blobKeys(t, e.blobs, blobstore.KindDroplet), sortKeys); diff != "" {
				t.Errorf("droplets left (-want +got):\n%s", diff)
			}
			var got []logged
			for line := range strings.Lines(logs.String()) {
				var rec struct {
					Msg string `json:"msg"`
					logged
				}
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				// Old packages go too; this test is about droplets.
				if rec.Msg == "blob-collected" && rec.Kind == string(blobstore.KindDroplet) {
					got = append(got, rec.logged)
				}
			}
			less := func(a, b logged) bool { return a.Key < b.Key }
			if diff := cmp.Diff(want, got, cmpopts.SortSlices(less), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("blob-collected logs (-want +got):\n%s", diff)
			}
		})
	}
}
