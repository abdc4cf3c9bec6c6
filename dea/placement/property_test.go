package placement

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestOrderMatchesScore checks, on random clusters where every DEA knows
// every other's current load, that the delays rank DEAs exactly as their
// scores do and that the best suitable DEA answers at once.
func TestOrderMatchesScore(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	rng := rand.New(rand.NewPCG(11, 12))
	for round := 0; round < 200; round++ {
		n := 1 + rng.IntN(30)
		caps := make([]Capacity, n)
		loads := make([]Load, n)
		view := NewCluster(cfg.Weights)
		for i := range caps {
			caps[i] = Capacity{ID: fmt.Sprintf("d%d", i), MemoryMB: 1024 * (1 + rng.IntN(16)), DiskMB: 1 << 16,
				Instances: 50, Stacks: []string{[]string{"go", "ruby"}[rng.IntN(2)]}}
			loads[i] = Load{MemoryMB: rng.IntN(caps[i].MemoryMB + 1), DiskMB: rng.IntN(1 << 15), Instances: rng.IntN(51),
				CPU: rng.Float64(), Apps: map[string]int{"x": rng.IntN(3)}, Draining: rng.IntN(10) == 0}
			view.Upsert(Advert{Capacity: caps[i], Load: loads[i], At: t0})
		}
		req := Request{App: "x", Index: rng.IntN(10), MemoryMB: 128 * (1 + rng.IntN(8)), DiskMB: 256, Stack: "go"}
		bestScore, minDelay, any := time.Duration(1<<62), time.Duration(1<<62), false
		var ds []Decision
		for i := range caps {
			d := Decide(cfg, caps[i], loads[i], view, req, t0.Add(time.Second))
			if d.OK != (Check(cfg, caps[i], loads[i], req) == ReasonNone) {
				t.Fatalf("Decide and Check disagree: %+v", d)
			}
			if !d.OK {
				continue
			}
			any = true
			ds = append(ds, d)
			bestScore, minDelay = min(bestScore, d.Score), min(minDelay, d.Delay)
		}
		if !any {
			continue
		}
		if minDelay != 0 {
			t.Fatalf("round %d: best DEA waits %v", round, minDelay)
		}
		for _, a := range ds {
			for _, b := range ds {
				if a.Score < b.Score && a.Delay > b.Delay {
					t.Fatalf("round %d: score %v < %v but delay %v > %v", round, a.Score, b.Score, a.Delay, b.Delay)
				}
			}
			if a.Score-bestScore <= cfg.MaxDelay {
				if diff := a.Delay - (a.Score - bestScore); diff < -time.Microsecond || diff > time.Microsecond {
					t.Fatalf("round %d: delay %v, want score %v minus best %v", round, a.Delay, a.Score, bestScore)
				}
			}
		}
	}
}
