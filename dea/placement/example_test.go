package placement_test

import (
	"fmt"
	"time"

	"github.com/kiln-paas/kiln/dea/placement"
)

// A DEA decides whether to answer a dea.discover and how long to wait,
// measured against what its peers advertised.
func Example() {
	cfg := placement.DefaultConfig()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	self := placement.Capacity{ID: "dea-1", MemoryMB: 8192, Stacks: []string{"go"}}

	peers := placement.NewCluster(cfg.Weights)
	peers.Upsert(placement.Advert{
		Capacity: placement.Capacity{ID: "dea-2", MemoryMB: 8192, Stacks: []string{"go"}},
		Load:     placement.Load{MemoryMB: 2048, Instances: 4},
		At:       now.Add(-2 * time.Second),
	})

	req := placement.Request{App: "blog", Index: 0, MemoryMB: 512, Stack: "go"}
	light := placement.Decide(cfg, self, placement.Load{MemoryMB: 1024}, peers, req, now)
	heavy := placement.Decide(cfg, self, placement.Load{MemoryMB: 6144}, peers, req, now)
	full := placement.Decide(cfg, self, placement.Load{MemoryMB: 8000}, peers, req, now)
	fmt.Println("lighter than its peer:", light.OK, light.Delay)
	fmt.Println("heavier than its peer:", heavy.OK, heavy.Delay.Round(10*time.Millisecond))
	fmt.Println("full:", full.OK, full.Reason)

	// Memory counts from the moment of a yes; a hold lapses unless the
	// start arrives and confirms it.
	ledger := placement.NewLedger()
	ledger.Hold("blog/0", req, now.Add(light.Delay+100*time.Millisecond))
	fmt.Println("held MB:", ledger.Load().HeldMemoryMB)
	ledger.Confirm("blog/0")
	fmt.Println("reserved MB:", ledger.Load().MemoryMB)
	// Output:
	// lighter than its peer: true 0s
	// heavier than its peer: true 50ms
	// full: false not-enough-memory
	// held MB: 512
	// reserved MB: 512
}
