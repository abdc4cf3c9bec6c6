//go:build !race

package placementsim

const raceEnabled = false
