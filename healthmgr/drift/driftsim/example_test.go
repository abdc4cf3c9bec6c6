package driftsim_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/kiln-paas/kiln/healthmgr/drift/driftsim"
)

// Run a chaotic world until it settles.
func Example() {
	cfg := driftsim.DefaultConfig()
	w, err := driftsim.New(cfg, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		fmt.Println(err)
		return
	}
	for w.Round() < cfg.ChaosRounds+cfg.ConvergenceBound() {
		w.Step()
		if ok, _ := w.Converged(); ok && w.Round() > cfg.ChaosRounds {
			break
		}
	}
	ok, _ := w.Converged()
	fmt.Println("converged within the bound:", ok)
	// Output:
	// converged within the bound: true
}
