package table

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func ep(addr string) EndpointInfo {
	return EndpointInfo{Addr: addr, AppID: "app", PrivateInstanceID: "id-" + addr, Index: -1}
}

// route returns the route of the pool serving host and path, or "".
func route(tb *Table, host, path string) string {
	if p := tb.Lookup(host, path); p != nil {
		return p.Route()
	}
	return ""
}

func TestLookup(t *testing.T) {
	t.Parallel()
	tb := New()
	for _, u := range []string{"foo.example.com", "Bar.Example.COM:8080", "*.wild.example.com", "*.deep.wild.example.com",
		"foo.example.com/api", "foo.example.com/api/v2/", "exact.wild.example.com"} {
		tb.Upsert(u, ep("10.0.0.1:80"), t0)
	}
	tests := []struct{ host, path, want string }{
		{"foo.example.com", "/", "foo.example.com"},
		{"FOO.example.com", "/x", "foo.example.com"},
		{"foo.example.com:8443", "/", "foo.example.com"},
		{"foo.example.com.", "/", "foo.example.com"},
		{"bar.example.com", "/", "bar.example.com"},
		{"foo.example.com", "/api", "foo.example.com/api"},
		{"foo.example.com", "/api/users", "foo.example.com/api"},
		{"foo.example.com", "/apis", "foo.example.com"},
		{"foo.example.com", "/api/v2/x", "foo.example.com/api/v2"},
		{"foo.example.com", "/api?x=1", "foo.example.com/api"},
		{"a.wild.example.com", "/", "*.wild.example.com"},
		{"A.B.Wild.example.com", "/", "*.wild.example.com"},
		{"x.deep.wild.example.com", "/", "*.deep.wild.example.com"},
		{"exact.wild.example.com", "/", "exact.wild.example.com"},
		{"wild.example.com", "/", ""},
		{"nope.example.com", "/", ""},
		{"", "/", ""},
		{"[::1]:80", "/", ""},
	}
	for _, tt := range tests {
		if got := route(tb, tt.host, tt.path); got != tt.want {
			t.Errorf("Lookup(%q, %q) = %q, want %q", tt.host, tt.path, got, tt.want)
		}
	}
	if got, want := tb.Routes(), 7; got != want {
		t.Errorf("Routes() = %d, want %d", got, want)
	}
}

func TestUpsertRemove(t *testing.T) {
	t.Parallel()
	tb := New()
	if !tb.Upsert("a.com", ep("h:1"), t0) {
		t.Fatal("first upsert not new")
	}
	if tb.Upsert("a.com", ep("h:1"), t0.Add(time.Second)) {
		t.Fatal("refresh reported new")
	}
	p := tb.Lookup("a.com", "/")
	if got := p.Endpoints()[0].LastSeen(); !got.Equal(t0.Add(time.Second)) {
		t.Errorf("refresh: last seen %v", got)
	}
	// A new instance on the same address replaces the old one.
	info := ep("h:1")
	info.PrivateInstanceID = "other"
	tb.Upsert("a.com", info, t0)
	if got := p.Endpoints()[0].PrivateInstanceID; got != "other" || p.Len() != 1 {
		t.Errorf("replace: id %q len %d", got, p.Len())
	}
	tb.Upsert("a.com", ep("h:2"), t0)
	if tb.Endpoints() != 2 {
		t.Fatalf("Endpoints() = %d", tb.Endpoints())
	}
	if tb.Remove("a.com", "h:9", t0) || tb.Remove("b.com", "h:1", t0) {
		t.Error("removed an unknown endpoint")
	}
	tb.Remove("A.com", "h:1", t0)
	tb.Remove("a.com", "h:2", t0.Add(time.Minute))
	if p := tb.Lookup("a.com", "/"); p == nil || p.Len() != 0 {
		t.Fatal("an emptied route must stay until pruned")
	}
	if since, ok := p.EmptySince(); !ok || !since.Equal(t0.Add(time.Minute)) {
		t.Errorf("EmptySince = %v %v", since, ok)
	}
	if tb.Endpoints() != 0 || tb.Routes() != 1 {
		t.Errorf("counts %d endpoints %d routes", tb.Endpoints(), tb.Routes())
	}
}

func TestPrune(t *testing.T) {
	t.Parallel()
	tb := New()
	tb.Upsert("old.com", ep("h:1"), t0)
	tb.Upsert("mixed.com", ep("h:1"), t0)
	tb.Upsert("mixed.com", ep("h:2"), t0.Add(50*time.Second))
	tb.Upsert("*.w.com", ep("h:3"), t0)
	now := t0.Add(60 * time.Second)
	res := tb.Prune(now, 30*time.Second, 20*time.Second)
	if diff := cmp.Diff(PruneResult{Endpoints: 3}, res); diff != "" {
		t.Errorf("first prune (-want +got):\n%s", diff)
	}
	if p := tb.Lookup("old.com", "/"); p == nil || p.Len() != 0 {
		t.Error("pruned route must answer empty within the grace period")
	}
	if p := tb.Lookup("mixed.com", "/"); p == nil || p.Len() != 1 {
		t.Error("fresh endpoint pruned")
	}
	res = tb.Prune(now.Add(21*time.Second), 30*time.Second, 20*time.Second)
	if diff := cmp.Diff(PruneResult{Endpoints: 1, Routes: 2}, res); diff != "" {
		t.Errorf("second prune (-want +got):\n%s", diff)
	}
	if route(tb, "old.com", "/") != "" || route(tb, "x.w.com", "/") != "" {
		t.Error("route not removed after grace")
	}
	if tb.wildcards.Load() != 0 {
		t.Error("wildcard count not decremented")
	}
	tb.Touch(now.Add(time.Hour))
	if p := tb.Lookup("mixed.com", "/"); p == nil || p.Len() != 0 {
		t.Errorf("mixed.com: %v", p)
	}
}

func TestTouch(t *testing.T) {
	t.Parallel()
	tb := New()
	tb.Upsert("a.com", ep("h:1"), t0)
	tb.Touch(t0.Add(time.Hour))
	if res := tb.Prune(t0.Add(time.Hour+time.Second), 30*time.Second, 0); res.Endpoints != 0 {
		t.Errorf("touched endpoint pruned: %+v", res)
	}
}

func TestPickSpread(t *testing.T) {
	t.Parallel()
	tb := New()
	const n, draws = 4, 40000
	for i := range n {
		tb.Upsert("a.com", ep(fmt.Sprintf("h:%d", i)), t0)
	}
	p := tb.Lookup("a.com", "/")
	for _, s := range []Strategy{Random, LeastInFlight} {
		counts := map[string]int{}
		for range draws {
			counts[p.Pick(s, 0, nil).Addr]++
		}
		for addr, c := range counts {
			// Expected 10000 each; 5 standard deviations is about 430.
			if c < draws/n-500 || c > draws/n+500 {
				t.Errorf("strategy %d: %s picked %d times of %d", s, addr, c, draws)
			}
		}
		if len(counts) != n {
			t.Errorf("strategy %d: only %d endpoints picked", s, len(counts))
		}
	}
}

func TestPickAvoidsBusyFailedTried(t *testing.T) {
	t.Parallel()
	tb := New()
	tb.Upsert("a.com", ep("h:1"), t0)
	tb.Upsert("a.com", ep("h:2"), t0)
	p := tb.Lookup("a.com", "/")
	e1, e2 := p.Endpoints()[0], p.Endpoints()[1]
	for range 5 {
		e1.Begin()
	}
	for range 100 {
		if got := p.Pick(LeastInFlight, 0, nil); got == e1 {
			// Both draws landed on e1: possible but it must then be e1 twice.
			continue
		}
	}
	busy := 0
	for range 1000 {
		if p.Pick(LeastInFlight, 0, nil) == e1 {
			busy++
		}
	}
	if busy > 400 { // only when both draws hit e1: about 25%
		t.Errorf("least-in-flight picked the busy endpoint %d/1000 times", busy)
	}
	now := t0.UnixNano()
	e2.MarkFailed(t0.Add(time.Second))
	for range 100 {
		if got := p.Pick(Random, now, nil); got != e1 {
			t.Fatalf("picked failed endpoint %s", got.Addr)
		}
	}
	if got := p.Pick(Random, now, []*Endpoint{e1}); got != e2 {
		t.Errorf("with e1 tried, want the failed e2 as last resort, got %v", got)
	}
	if got := p.Pick(Random, now, []*Endpoint{e1, e2}); got != nil {
		t.Errorf("all tried: got %v", got)
	}
	if !e2.Failed(now) || e2.Failed(t0.Add(2*time.Second).UnixNano()) {
		t.Error("failure mark wrong")
	}
}

func TestByInstance(t *testing.T) {
	t.Parallel()
	tb := New()
	tb.Upsert("a.com", EndpointInfo{Addr: "h:1", AppID: "app", PrivateInstanceID: "i1", Index: 0}, t0)
	tb.Upsert("a.com", EndpointInfo{Addr: "h:2", AppID: "app", PrivateInstanceID: "i2", Index: 1}, t0)
	p := tb.Lookup("a.com", "/")
	if e := p.ByInstanceID("i2"); e == nil || e.Addr != "h:2" {
		t.Errorf("ByInstanceID(i2) = %v", e)
	}
	if p.ByInstanceID("") != nil || p.ByInstanceID("x") != nil {
		t.Error("unknown id found")
	}
	if e := p.ByAppIndex("app", 0); e == nil || e.Addr != "h:1" {
		t.Errorf("ByAppIndex(app, 0) = %v", e)
	}
	if p.ByAppIndex("app", 2) != nil || p.ByAppIndex("other", 0) != nil {
		t.Error("unknown instance found")
	}
}

func TestConcurrentRegisterLookup(t *testing.T) {
	t.Parallel()
	tb := New()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				u := fmt.Sprintf("h%d.com", i%50)
				tb.Upsert(u, ep(fmt.Sprintf("10.0.%d.%d:80", w, i%7)), t0)
				if i%3 == 0 {
					tb.Remove(u, fmt.Sprintf("10.0.%d.%d:80", w, i%7), t0)
				}
				if i%500 == 0 {
					tb.Prune(t0, time.Second, time.Second)
				}
			}
		}()
	}
	var reads sync.WaitGroup
	reads.Add(1)
	go func() {
		defer reads.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if p := tb.Lookup("h3.com", "/"); p != nil {
				_ = p.Pick(LeastInFlight, 0, nil)
			}
		}
	}()
	wg.Wait()
	close(stop)
	reads.Wait()
	n := 0
	tb.Walk(func(p *Pool) { n += p.Len() })
	if n != tb.Endpoints() {
		t.Errorf("walk counts %d endpoints, counter says %d", n, tb.Endpoints())
	}
}

func TestLookupNoAllocs(t *testing.T) {
	tb := New()
	tb.Upsert("foo.example.com", ep("h:1"), t0)
	tb.Upsert("*.w.example.com", ep("h:1"), t0)
	for _, host := range []string{"foo.example.com", "FOO.Example.com:80", "a.b.w.example.com"} {
		if n := testing.AllocsPerRun(100, func() { tb.Lookup(host, "/x") }); n != 0 {
			t.Errorf("Lookup(%q) allocates %v times", host, n)
		}
	}
}

func FuzzLookup(f *testing.F) {
	tb := New()
	tb.Upsert("foo.example.com/api", ep("h:1"), t0)
	tb.Upsert("*.example.com", ep("h:1"), t0)
	f.Add("foo.example.com:80", "/api/x")
	f.Add("A.B.EXAMPLE.COM", "/")
	f.Add("[::1]:8080", "")
	f.Fuzz(func(t *testing.T, host, path string) {
		p := tb.Lookup(host, path)
		if p != nil && p.Len() != 1 {
			t.Fatalf("pool with %d endpoints", p.Len())
		}
	})
}

const benchHosts = 100_000

func fill(b *testing.B) *Table {
	tb := New()
	for i := range benchHosts {
		tb.Upsert(fmt.Sprintf("app-%d.apps.example.com", i), EndpointInfo{Addr: fmt.Sprintf("10.%d.%d.%d:61000", i>>16, (i>>8)&255, i&255), AppID: fmt.Sprintf("%08d-aaaa-bbbb-cccc-dddddddddddd", i), PrivateInstanceID: fmt.Sprintf("%032x", i), Index: 0}, t0)
	}
	return tb
}

// BenchmarkLookup measures a lookup in a table of 100,000 hosts.
func BenchmarkLookup(b *testing.B) {
	tb := fill(b)
	hosts := make([]string, 1024)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("app-%d.apps.example.com", (i*7919)%benchHosts)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if tb.Lookup(hosts[i&1023], "/") == nil {
			b.Fatal("miss")
		}
	}
}

// BenchmarkLookupParallel is BenchmarkLookup from every core at once.
func BenchmarkLookupParallel(b *testing.B) {
	tb := fill(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if tb.Lookup("app-4242.apps.example.com", "/") == nil {
				b.Fatal("miss")
			}
			i++
		}
	})
}

// BenchmarkMemoryPerRoute reports the heap held per route with one
// endpoint each, in a table of 100,000.
func BenchmarkMemoryPerRoute(b *testing.B) {
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		tb := fill(b)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/benchHosts, "B/route")
		runtime.KeepAlive(tb)
	}
}

// BenchmarkLookupHot looks one host up repeatedly in a table of 100,000:
// the cost without cache misses.
func BenchmarkLookupHot(b *testing.B) {
	tb := fill(b)
	b.ReportAllocs()
	for b.Loop() {
		if tb.Lookup("App-4242.apps.example.com:443", "/") == nil {
			b.Fatal("miss")
		}
	}
}
