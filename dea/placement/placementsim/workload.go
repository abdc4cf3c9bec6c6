package placementsim

import (
	"fmt"
	"math/rand/v2"

	"github.com/kiln-paas/kiln/dea/placement"
)

// Uniform returns n DEAs with capacity c, named <c.ID>-<i> (or dea-<i>).
func Uniform(n int, c placement.Capacity) []DEA {
	prefix := c.ID
	if prefix == "" {
		prefix = "dea"
	}
	deas := make([]DEA, n)
	for i := range deas {
		c := c
		c.ID = fmt.Sprintf("%s-%d", prefix, i)
		deas[i] = DEA{Capacity: c}
	}
	return deas
}

// Workload returns the requests to start apps apps of perApp instances
// each, app by app and index by index as a controller starts them. Each
// app's memory is drawn from sizesMB with rng; every request asks for
// diskMB of disk on stack.
func Workload(rng *rand.Rand, apps, perApp int, sizesMB []int, diskMB int, stack string) []placement.Request {
	reqs := make([]placement.Request, 0, apps*perApp)
	for a := 0; a < apps; a++ {
		mem := sizesMB[rng.IntN(len(sizesMB))]
		for i := 0; i < perApp; i++ {
			reqs = append(reqs, placement.Request{
				App: fmt.Sprintf("app-%d", a), Index: i, MemoryMB: mem, DiskMB: diskMB, Stack: stack,
			})
		}
	}
	return reqs
}

// TotalMemoryMB sums the memory the requests ask for, to size DEAs for a
// target fill.
func TotalMemoryMB(reqs []placement.Request) int {
	n := 0
	for _, r := range reqs {
		n += r.MemoryMB
	}
	return n
}
