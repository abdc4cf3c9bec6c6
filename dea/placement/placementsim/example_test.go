package placementsim_test

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/kiln-paas/kiln/dea/placement"
	"github.com/kiln-paas/kiln/dea/placement/placementsim"
)

// Compare kiln's placement with the original taint on a small cluster.
func Example() {
	rng := rand.New(rand.NewPCG(1, 2))
	cfg := placementsim.DefaultConfig()
	cfg.Requests = placementsim.Workload(rng, 40, 5, []int{256, 512, 1024}, 0, "go")
	cfg.DEAs = placementsim.Uniform(10, placement.Capacity{MemoryMB: 16384, Stacks: []string{"go"}})
	// Ten DEAs share 20 requests a second: advertise every 500 ms so each
	// DEA's view is at most one placement behind.
	cfg.AdvertInterval = 500 * time.Millisecond

	for _, s := range []placementsim.Strategy{placementsim.Kiln(placement.DefaultConfig()), placementsim.Original()} {
		r, err := placementsim.Run(cfg, s, rand.New(rand.NewPCG(3, 4)))
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s: placed %d, balance ≤ 1.1: %v, same app twice on a DEA: %d, median wait under 2ms: %v\n",
			r.Strategy, r.Placed, r.Balance <= 1.1, r.SpreadViolations, r.WaitP50 < 2*time.Millisecond)
	}
	// Output:
	// kiln: placed 200, balance ≤ 1.1: true, same app twice on a DEA: 0, median wait under 2ms: true
	// original: placed 200, balance ≤ 1.1: true, same app twice on a DEA: 0, median wait under 2ms: false
}
