//go:build race

package placementsim

// raceEnabled shrinks the simulated clusters under the race detector, which
// slows the simulator tenfold; the pass marks stay the same.
const raceEnabled = true
