// Package placement is the pure core of a DEA's answer to dea.discover:
// whether this DEA can take a requested instance and, if so, how long to
// wait before replying.
//
// The controller takes the first reply, so the reply delay is the placement
// algorithm. The original DEA (PROTOCOL.md §3.1) waited 10 ms per instance of
// the same app plus 100 ms × its reserved-memory fraction, capped at 250 ms.
// Ordering DEAs by that score balanced memory well, but every reply waited
// for the DEA's own absolute load, so the controller's wait grew with the
// cluster's fill.
//
// kiln keeps the ordering and removes the wait. Every DEA scores itself and
// the peers it knows from their dea.advertise messages with the same
// function (same-app instances, memory, disk and CPU, see Weights, plus a
// deterministic SHA1-of-app-and-index tie-breaker) and delays its reply by
// how far its own score lies above the best suitable peer's. The best DEA
// answers at once; DEAs whose peer data is stale fall back smoothly to the
// absolute score, which is the original formula with kiln's weights.
//
// The package does no I/O, reads no clock and holds no global state: the
// caller passes the time and everything it knows. Decide does not allocate.
// Ledger keeps the DEA's reservations so that memory counts from the moment
// the DEA says yes. Package placementsim runs Decide against many simulated
// DEAs to study balance, spread and wait.
package placement
