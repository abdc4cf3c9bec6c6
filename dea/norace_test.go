//go:build !race

package dea_test

// raceEnabled reports a -race build, whose instrumentation makes latency
// figures meaningless.
const raceEnabled = false
