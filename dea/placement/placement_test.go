package placement

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func capacity(id string) Capacity {
	return Capacity{ID: id, MemoryMB: 4096, DiskMB: 8192, Instances: 100, Stacks: []string{"go", "ruby"}}
}

func TestDecideDeclines(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	req := Request{App: "a", MemoryMB: 512, DiskMB: 256, Stack: "go"}
	tests := []struct {
		name string
		cap  func(*Capacity)
		load Load
		req  func(*Request)
		want Reason
	}{
		{name: "fits", want: ReasonNone},
		{name: "draining", load: Load{Draining: true}, want: ReasonDraining},
		{name: "wrong stack", req: func(r *Request) { r.Stack = "java" }, want: ReasonStack},
		{name: "any stack", req: func(r *Request) { r.Stack = "" }, want: ReasonNone},
		{name: "no slots", load: Load{Instances: 100}, want: ReasonSlots},
		{name: "unlimited slots", cap: func(c *Capacity) { c.Instances = 0 }, load: Load{Instances: 5000}, want: ReasonNone},
		{name: "memory", load: Load{MemoryMB: 3700}, want: ReasonMemory},
		{name: "memory exactly full", load: Load{MemoryMB: 3584}, want: ReasonNone},
		{name: "disk", load: Load{DiskMB: 8000}, want: ReasonDisk},
		{name: "disk unaccounted", cap: func(c *Capacity) { c.DiskMB = 0 }, want: ReasonNone},
		{name: "disk threshold", load: Load{DiskUsed: 0.96}, want: ReasonDiskThreshold},
		{name: "excluded", req: func(r *Request) { r.Exclude = []string{"x", "d1"} }, want: ReasonExcluded},
		{name: "others excluded", req: func(r *Request) { r.Exclude = []string{"x"} }, want: ReasonNone},
		{name: "draining wins over memory", load: Load{Draining: true, MemoryMB: 5000}, want: ReasonDraining},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, r := capacity("d1"), req
			if tt.cap != nil {
				tt.cap(&c)
			}
			if tt.req != nil {
				tt.req(&r)
			}
			d := Decide(cfg, c, tt.load, nil, r, t0)
			if d.Reason != tt.want || d.OK != (tt.want == ReasonNone) {
				t.Fatalf("Decide = %+v, want reason %v", d, tt.want)
			}
		})
	}
}

func TestDecideAbsoluteWithoutPeers(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Weights = Weights{SameApp: 10 * time.Millisecond, Memory: 100 * time.Millisecond}
	// The original formula, except that memory counts after placement.
	load := Load{MemoryMB: 1536, Apps: map[string]int{"a": 2}}
	d := Decide(cfg, capacity("d1"), load, nil, Request{App: "a", MemoryMB: 512}, t0)
	want := 2*10*time.Millisecond + 50*time.Millisecond
	if d.Delay != want || d.Score != want {
		t.Fatalf("Decide = %+v, want delay and score %v", d, want)
	}
	load.Apps["a"] = 40
	if d := Decide(cfg, capacity("d1"), load, nil, Request{App: "a", MemoryMB: 512}, t0); d.Delay != cfg.MaxDelay {
		t.Fatalf("delay %v, want the cap %v", d.Delay, cfg.MaxDelay)
	}
}

// cluster returns a view of n identical peers with the given reserved memory
// each, advertised at t0.
func cluster(cfg Config, reserved ...int) *Cluster {
	c := NewCluster(cfg.Weights)
	for i, r := range reserved {
		c.Upsert(Advert{Capacity: capacity(fmt.Sprintf("p%d", i)), Load: Load{MemoryMB: r, Instances: r / 512}, At: t0})
	}
	return c
}

func TestDecideRelative(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Weights.Tie = 0
	req := Request{App: "a", MemoryMB: 512}
	peers := cluster(cfg, 1024, 2048, 3072)
	tests := []struct {
		name     string
		reserved int
		apps     map[string]int
		want     time.Duration
	}{
		{name: "least loaded answers at once", reserved: 512, want: 0},
		{name: "equal to best", reserved: 1024, want: 0},
		{name: "behind best by 25% memory", reserved: 2048, want: 25 * time.Millisecond},
		{name: "same app weighs in", reserved: 1024, apps: map[string]int{"a": 1}, want: 20 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := Decide(cfg, capacity("me"), Load{MemoryMB: tt.reserved, Apps: tt.apps}, peers, req, t0.Add(time.Second))
			if !d.OK || d.Delay != tt.want {
				t.Fatalf("Decide = %+v, want delay %v", d, tt.want)
			}
		})
	}
}

func TestDecidePeersThatCannotTakeItDoNotCount(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Weights.Tie = 0
	c := NewCluster(cfg.Weights)
	idle := capacity("idle")
	c.Upsert(Advert{Capacity: Capacity{ID: "java-only", MemoryMB: 4096, Stacks: []string{"java"}}, At: t0})
	c.Upsert(Advert{Capacity: idle, Load: Load{Draining: true}, At: t0})
	c.Upsert(Advert{Capacity: capacity("full"), Load: Load{MemoryMB: 4000}, At: t0})
	c.Upsert(Advert{Capacity: capacity("busy"), Load: Load{MemoryMB: 2048}, At: t0})
	req := Request{App: "a", MemoryMB: 512, Stack: "go"}
	d := Decide(cfg, capacity("me"), Load{MemoryMB: 3072}, c, req, t0)
	if want := 25 * time.Millisecond; d.Delay != want {
		t.Fatalf("delay %v, want %v (measured from busy only)", d.Delay, want)
	}
	// Excluding the only suitable peer leaves this DEA alone.
	excl := req
	excl.Exclude = []string{"busy"}
	if d := Decide(cfg, capacity("me"), Load{MemoryMB: 3072}, c, excl, t0); d.Delay != 0 {
		t.Fatalf("delay %v, want 0 when the only suitable peer is excluded", d.Delay)
	}
	// Nobody else can take it: answer at once.
	c.Remove("busy")
	if d := Decide(cfg, capacity("me"), Load{MemoryMB: 3072}, c, req, t0); d.Delay != 0 {
		t.Fatalf("delay %v, want 0 when no peer can take the request", d.Delay)
	}
}

func TestDecideStaleness(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Weights.Tie = 0
	peers := cluster(cfg, 2048)
	me := Load{MemoryMB: 2048}
	req := Request{App: "a", MemoryMB: 512}
	abs := Decide(cfg, capacity("me"), me, nil, req, t0).Delay
	mid := cfg.FreshFor + (cfg.ForgetAfter-cfg.FreshFor)/2
	tests := []struct {
		age  time.Duration
		want time.Duration
	}{
		{age: 0, want: 0},
		{age: cfg.FreshFor, want: 0},
		{age: mid, want: abs / 2},
		{age: cfg.ForgetAfter, want: abs},
		{age: time.Hour, want: abs},
	}
	for _, tt := range tests {
		d := Decide(cfg, capacity("me"), me, peers, req, t0.Add(tt.age))
		if diff := d.Delay - tt.want; diff < -time.Microsecond || diff > time.Microsecond {
			t.Errorf("age %v: delay %v, want %v", tt.age, d.Delay, tt.want)
		}
	}
}

func TestDecideWeightsMismatchStillCorrect(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	peers := cluster(cfg, 0, 1024, 2048, 3072)
	other := cfg
	other.Weights.Memory = 50 * time.Millisecond
	fast := NewCluster(other.Weights)
	for _, r := range []int{0, 1024, 2048, 3072} {
		fast.Upsert(Advert{Capacity: capacity(fmt.Sprintf("p%d", fast.Len())), Load: Load{MemoryMB: r, Instances: r / 512}, At: t0})
	}
	req := Request{App: "a", Index: 3, MemoryMB: 512}
	load := Load{MemoryMB: 2500}
	if a, b := Decide(other, capacity("me"), load, peers, req, t0), Decide(other, capacity("me"), load, fast, req, t0); a != b {
		t.Fatalf("mismatched weights gave %+v, matched gave %+v", a, b)
	}
}

func TestTieBreakerSpreadsAndIsDeterministic(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	wins := map[string]int{}
	for i := 0; i < 400; i++ {
		req := Request{App: "app", Index: i, MemoryMB: 128}
		best, bestID := time.Duration(1<<62), ""
		for _, id := range []string{"a", "b", "c", "d"} {
			d := Decide(cfg, capacity(id), Load{}, nil, req, t0)
			if again := Decide(cfg, capacity(id), Load{}, nil, req, t0); again != d {
				t.Fatalf("not deterministic: %+v then %+v", d, again)
			}
			if d.Delay < best {
				best, bestID = d.Delay, id
			}
		}
		wins[bestID]++
	}
	for id, n := range wins {
		if n < 60 {
			t.Errorf("DEA %s won %d of 400 ties, want a fair share: %v", id, n, wins)
		}
	}
}

func TestClusterUpsertRemoveForget(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	c := NewCluster(cfg.Weights)
	c.Upsert(Advert{Capacity: capacity("a"), Load: Load{MemoryMB: 3000, Apps: map[string]int{"x": 2}}, At: t0})
	c.Upsert(Advert{Capacity: capacity("b"), Load: Load{MemoryMB: 1000, Apps: map[string]int{"x": 1}}, At: t0.Add(time.Second)})
	c.Upsert(Advert{Capacity: capacity("a"), Load: Load{MemoryMB: 500, Apps: map[string]int{"y": 1}}, At: t0.Add(2 * time.Second)})
	if c.Len() != 2 {
		t.Fatalf("Len = %d, want 2", c.Len())
	}
	var order []string
	for _, s := range c.order {
		order = append(order, c.peers[s].id)
	}
	if diff := cmp.Diff([]string{"a", "b"}, order); diff != "" {
		t.Errorf("order by score (-want +got):\n%s", diff)
	}
	if got := len(c.apps["x"]); got != 1 {
		t.Errorf("app x on %d peers, want 1 after a's new advert", got)
	}
	if !c.Remove("b") || c.Remove("b") {
		t.Errorf("Remove should succeed once")
	}
	if _, ok := c.apps["x"]; ok {
		t.Errorf("app x still indexed after its last peer left")
	}
	c.Upsert(Advert{Capacity: capacity("c"), At: t0})
	if n := c.Forget(t0.Add(time.Second)); n != 1 || c.Len() != 1 {
		t.Fatalf("Forget dropped %d, Len %d; want 1, 1", n, c.Len())
	}
	if !c.oldest.Equal(t0.Add(2 * time.Second)) {
		t.Errorf("oldest = %v", c.oldest)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := []func(*Config){
		func(c *Config) { c.Weights.Memory = -1 },
		func(c *Config) { c.MaxDelay = -1 },
		func(c *Config) { c.DiskThreshold = 0 },
		func(c *Config) { c.DiskThreshold = 1.5 },
		func(c *Config) { c.ForgetAfter = c.FreshFor - 1 },
	}
	for i, mutate := range bad {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("case %d: Validate = %v, want ErrInvalidConfig", i, err)
		}
	}
}

func TestReasonString(t *testing.T) {
	t.Parallel()
	if got := ReasonMemory.String(); got != "not-enough-memory" {
		t.Errorf("String = %q", got)
	}
	if got := Reason(99).String(); got != "reason(99)" {
		t.Errorf("String = %q", got)
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	cfg := DefaultConfig()
	peers := benchCluster(cfg, 100)
	load := Load{MemoryMB: 2000, Apps: map[string]int{"app-7": 1}}
	req := Request{App: "app-7", Index: 2, MemoryMB: 256, DiskMB: 256, Stack: "go"}
	if n := testing.AllocsPerRun(100, func() { Decide(cfg, capacity("me"), load, peers, req, t0) }); n != 0 {
		t.Fatalf("Decide allocates %v times per call", n)
	}
}
