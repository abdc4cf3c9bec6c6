package dea

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/dea/placement"
)

// procStat is a /proc/stat of a two-CPU Linux 6.x host.
const procStat = `cpu  679063 12 198716 115688 2162 3 7575 18943 5 6
cpu0 344027 0 95894 59550 536 0 2203 8822 0 0
cpu1 335035 0 102821 56137 1626 0 5371 10121 0 0
intr 123 0 0
ctxt 456
btime 1763940000
processes 789
procs_running 2
procs_blocked 0
softirq 1 2 3
`

func TestParseProcStat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want cpuTimes
		err  bool
	}{
		{"linux 6", procStat, cpuTimes{679063, 12, 198716, 115688, 2162, 3, 7575, 18943}, false},
		{"four fields (2.4)", "cpu 1 2 3 4\ncpu0 1 2 3 4\n", cpuTimes{user: 1, nice: 2, system: 3, idle: 4}, false},
		{"seven fields (2.6.0)", "cpu 1 2 3 4 5 6 7", cpuTimes{1, 2, 3, 4, 5, 6, 7, 0}, false},
		{"not the first line", "intr 1\ncpu  10 0 10 80 0 0 0 0 0 0\n", cpuTimes{user: 10, system: 10, idle: 80}, false},
		{"tabs and spaces", "cpu\t 5  0 5\t90\n", cpuTimes{user: 5, system: 5, idle: 90}, false},
		{"per-cpu lines only", "cpu0 1 2 3 4\ncpu1 1 2 3 4\n", cpuTimes{}, true},
		{"cpux is not cpu", "cpux 1 2 3 4\n", cpuTimes{}, true},
		{"too few fields", "cpu 1 2 3\n", cpuTimes{}, true},
		{"not a number", "cpu 1 2 x 4\n", cpuTimes{}, true},
		{"negative", "cpu 1 2 -3 4\n", cpuTimes{}, true},
		{"field overflows", "cpu 1 2 3 18446744073709551616\n", cpuTimes{}, true},
		{"sum overflows", "cpu 18446744073709551615 1 0 0\n", cpuTimes{}, true},
		{"empty", "", cpuTimes{}, true},
	}
	for _, tt := range tests {
		got, err := parseProcStat([]byte(tt.in))
		if (err != nil) != tt.err {
			t.Errorf("%s: error %v, want error %v", tt.name, err, tt.err)
			continue
		}
		if err != nil && !errors.Is(err, ErrProcStat) {
			t.Errorf("%s: error %v does not wrap ErrProcStat", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(cpuTimes{})); diff != "" {
			t.Errorf("%s: times (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestBusyFraction(t *testing.T) {
	t.Parallel()
	base := cpuTimes{user: 1000, nice: 10, system: 500, idle: 8000, iowait: 100, irq: 5, softirq: 20, steal: 0}
	add := func(c cpuTimes, f func(*cpuTimes)) cpuTimes { f(&c); return c }
	tests := []struct {
		name string
		cur  cpuTimes
		want float64
		ok   bool
	}{
		{"all idle", add(base, func(c *cpuTimes) { c.idle += 400 }), 0, true},
		{"all user", add(base, func(c *cpuTimes) { c.user += 400 }), 1, true},
		{"iowait is idle", add(base, func(c *cpuTimes) { c.iowait += 100; c.idle += 100 }), 0, true},
		{"quarter busy", add(base, func(c *cpuTimes) {
			c.user += 50
			c.system += 25
			c.irq += 10
			c.softirq += 10
			c.steal += 5
			c.idle += 300
		}), 0.25, true},
		{"nice counts as busy", add(base, func(c *cpuTimes) { c.nice += 30; c.idle += 70 }), 0.3, true},
		{"half, with iowait", add(base, func(c *cpuTimes) { c.user += 100; c.idle += 60; c.iowait += 40 }), 0.5, true},
		// Some kernels let iowait step back while idle grows more.
		{"iowait steps back", add(base, func(c *cpuTimes) { c.iowait -= 10; c.idle += 60; c.user += 50 }), 0.5, true},
		{"no time passed", base, 0, false},
		{"counters reset", cpuTimes{user: 1, idle: 1}, 0, false},
	}
	for _, tt := range tests {
		got, ok := busyFraction(base, tt.cur)
		if ok != tt.ok || math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("%s: busyFraction = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
	// The first sample measures from boot (zero counters).
	if got, ok := busyFraction(cpuTimes{}, base); !ok || math.Abs(got-1535.0/9635) > 1e-12 {
		t.Errorf("since boot: %v, %v; want 1535/9635", got, ok)
	}
}

// statLine is an aggregate cpu line with the given busy (user) and idle
// ticks.
func statLine(busy, idle uint64) string {
	return fmt.Sprintf("cpu  %d 0 0 %d 0 0 0 0 0 0\ncpu0 %d 0 0 %d 0 0 0 0 0 0\n", busy, idle, busy, idle)
}

func TestProcStatCPUSmooths(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "stat")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := &ProcStatCPU{Path: path, Smoothing: 0.5}
	steps := []struct {
		name   string
		stat   string // "" means remove the file
		want   float64
		errors bool
	}{
		{"seed from boot", statLine(200, 800), 0.2, false},
		{"busy interval", statLine(300, 800), 0.6, false}, // 100 % busy: 0.2 + 0.5*(1-0.2)
		{"idle interval", statLine(300, 900), 0.3, false},
		{"no time passed", statLine(300, 900), 0.3, false},
		{"garbage keeps the average", "cpu 1 2\n", 0.3, true},
		{"missing file keeps the average", "", 0.3, true},
		{"half busy", statLine(350, 950), 0.4, false},
		{"counter reset is skipped", statLine(10, 10), 0.4, false},
		{"measures from the reset", statLine(110, 10), 0.7, false},
	}
	for _, s := range steps {
		if s.stat == "" {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		} else {
			write(s.stat)
		}
		got, err := p.Sample()
		if (err != nil) != s.errors || (err != nil && !errors.Is(err, ErrProcStat)) {
			t.Errorf("%s: error %v, want error %v wrapping ErrProcStat", s.name, err, s.errors)
		}
		if math.Abs(got-s.want) > 1e-12 {
			t.Errorf("%s: Sample = %v, want %v", s.name, got, s.want)
		}
	}
	if got := p.CPU(); math.Abs(got-0.7) > 1e-12 {
		t.Errorf("CPU = %v, want 0.7 (no time passed)", got)
	}
}

func TestProcStatCPUDefaultSmoothing(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "stat")
	p := &ProcStatCPU{Path: path, Smoothing: 7} // out of range: the default
	for _, s := range []string{statLine(0, 100), statLine(100, 100)} {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Sample(); err != nil {
			t.Fatal(err)
		}
	}
	if got := p.CPU(); got != DefaultCPUSmoothing {
		t.Errorf("after idle then busy: %v, want %v", got, DefaultCPUSmoothing)
	}
}

func TestProcStatCPUOnThisHost(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Skip("no /proc/stat:", err)
	}
	var p ProcStatCPU
	for range 3 {
		v, err := p.Sample()
		if err != nil {
			t.Fatal(err)
		}
		if !(v >= 0 && v <= 1) {
			t.Fatalf("utilisation %v not in [0, 1]", v)
		}
	}
}

func TestClampCPU(t *testing.T) {
	t.Parallel()
	for in, want := range map[float64]float64{-1: 0, 0: 0, 0.25: 0.25, 1: 1, 3: 1, math.Inf(1): 1, math.Inf(-1): 0, math.NaN(): 0} {
		if got := clampCPU(in); got != want {
			t.Errorf("clampCPU(%v) = %v, want %v", in, got, want)
		}
	}
}

// TestPeerCPULoadReachesPlacement decodes a peer's advert and checks that
// its cpu_load moves this DEA's reply delay: against an equal peer that
// is busier the DEA replies at once, against an idle one it waits.
func TestPeerCPULoadReachesPlacement(t *testing.T) {
	t.Parallel()
	b := membus.New()
	t.Cleanup(func() { _ = b.Close() })
	d := newTestDEA(t, b)
	d.cpuSrc = FixedCPU(0.5)
	d.sampleCPU()
	req := placement.Request{App: "a", MemoryMB: 256, Stack: "linux"}
	cpuWeight := d.cfg.Placement.Weights.CPU
	tests := []struct {
		peerCPU  float64
		min, max time.Duration
	}{
		// Self scores 0.5 × CPU weight more than the idle peer (give
		// or take the tie-breaker).
		{0, cpuWeight/2 - d.cfg.Placement.Weights.Tie, cpuWeight/2 + d.cfg.Placement.Weights.Tie},
		{1, 0, 0},
		{0.5, 0, d.cfg.Placement.Weights.Tie},
	}
	for _, tt := range tests {
		adv := protocol.Advertise{
			ID: "peer", Stacks: []string{"linux"}, MaxMemory: d.cfg.MemoryMB,
			AvailableMemory: d.cfg.MemoryMB, CPULoad: tt.peerCPU,
		}
		data, err := json.Marshal(adv)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.onAdvertise(&bus.Msg{Subject: protocol.DEAAdvertise, Data: data}); err != nil {
			t.Fatal(err)
		}
		d.mu.Lock()
		dec := placement.Decide(d.cfg.Placement, d.capacity(), d.loadLocked(), d.peers, req, d.now())
		d.mu.Unlock()
		if !dec.OK || dec.Delay < tt.min || dec.Delay > tt.max {
			t.Errorf("peer cpu_load %v: decision %+v, want delay in [%v, %v]", tt.peerCPU, dec, tt.min, tt.max)
		}
	}
}

// FuzzParseProcStat: the parser never panics, and what it accepts
// round-trips and yields a busy fraction in [0, 1].
func FuzzParseProcStat(f *testing.F) {
	for _, s := range []string{procStat, "cpu 1 2 3 4", "cpu 1 2 3", "cpu0 1 2 3 4\n", "cpu 18446744073709551615 0 0 0", "", "\n\ncpu \t9 9 9 9 9 9 9 9 9 9 9 9"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseProcStat(data)
		if err != nil {
			if !errors.Is(err, ErrProcStat) {
				t.Fatalf("error %v does not wrap ErrProcStat", err)
			}
			return
		}
		line := fmt.Sprintf("cpu %d %d %d %d %d %d %d %d", c.user, c.nice, c.system, c.idle, c.iowait, c.irq, c.softirq, c.steal)
		again, err := parseProcStat([]byte(line))
		if err != nil || again != c {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", line, again, err, c)
		}
		if v, ok := busyFraction(cpuTimes{}, c); ok && !(v >= 0 && v <= 1) {
			t.Fatalf("busy fraction %v not in [0, 1]", v)
		}
	})
}
