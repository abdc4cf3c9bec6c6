package placement

import (
	"fmt"
	"testing"
	"time"
)

// benchCluster returns a view of n peers with varied load and a few apps
// each, as a DEA in a cluster of n+1 would hold.
func benchCluster(cfg Config, n int) *Cluster {
	c := NewCluster(cfg.Weights)
	for i := 0; i < n; i++ {
		apps := map[string]int{}
		for j := 0; j < 8; j++ {
			apps[fmt.Sprintf("app-%d", (i*7+j*13)%100)] = 1
		}
		c.Upsert(Advert{
			Capacity: Capacity{ID: fmt.Sprintf("dea-%d", i), MemoryMB: 65536, DiskMB: 262144, Instances: 256, Stacks: []string{"go", "ruby"}},
			Load:     Load{MemoryMB: 30000 + (i*977)%20000, DiskMB: 2000 * (i % 50), Instances: 60 + i%20, Apps: apps, CPU: float64(i%10) / 10},
			At:       t0,
		})
	}
	return c
}

func BenchmarkDecide(b *testing.B) {
	cfg := DefaultConfig()
	self := Capacity{ID: "me", MemoryMB: 65536, DiskMB: 262144, Instances: 256, Stacks: []string{"go", "ruby"}}
	load := Load{MemoryMB: 42000, DiskMB: 30000, Instances: 70, Apps: map[string]int{"app-7": 1}, CPU: 0.4}
	req := Request{App: "app-7", Index: 3, MemoryMB: 512, DiskMB: 1024, Stack: "go"}
	now := t0.Add(3 * time.Second)
	for _, n := range []int{0, 10, 100, 1000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			var peers *Cluster
			if n > 0 {
				peers = benchCluster(cfg, n)
			}
			b.ReportAllocs()
			for b.Loop() {
				Decide(cfg, self, load, peers, req, now)
			}
		})
	}
	b.Run("peers=100/stale", func(b *testing.B) {
		peers := benchCluster(cfg, 100)
		b.ReportAllocs()
		for b.Loop() {
			Decide(cfg, self, load, peers, req, now.Add(30*time.Second))
		}
	})
}
