package drift

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// benchWorld returns 10,000 apps of 10 instances (100,000 desired) and
// their heartbeats with 1 % drift: missing, crashed, extra, duplicate and
// superseded instances, plus a few orphans.
func benchWorld() ([]App, []Instance, *History) {
	rng := rand.New(rand.NewPCG(1, 2))
	const apps, per = 10000, 10
	desired := make([]App, apps)
	actual := make([]Instance, 0, apps*per+2000)
	h := NewHistory()
	id := 0
	add := func(app, version string, index int, state InstanceState) {
		id++
		actual = append(actual, inst(app, version, index, fmt.Sprintf("inst-%d", id), state, time.Duration(id)*time.Second))
	}
	for a := range desired {
		desired[a] = started(fmt.Sprintf("app-%d", a), "v2", per)
		for i := 0; i < per; i++ {
			app := desired[a].ID
			if rng.IntN(100) != 0 {
				add(app, "v2", i, Running)
				continue
			}
			switch rng.IntN(5) { // the 1 % drift
			case 0: // missing
			case 1:
				add(app, "v2", i, Crashed)
				h.RecordCrash(app, "v2", i, fmt.Sprintf("inst-%d", id), now.Add(-time.Minute))
			case 2:
				add(app, "v2", i, Running)
				add(app, "v2", i+per, Running)
			case 3:
				add(app, "v2", i, Running)
				add(app, "v2", i, Starting)
			case 4:
				add(app, "v2", i, Running)
				add(app, "v1", i, Running)
			}
		}
	}
	for i := 0; i < 100; i++ {
		add(fmt.Sprintf("orphan-%d", i), "v1", 0, Running)
	}
	rng.Shuffle(len(actual), func(i, j int) { actual[i], actual[j] = actual[j], actual[i] })
	return desired, actual, h
}

func BenchmarkAnalyze(b *testing.B) {
	desired, actual, h := benchWorld()
	p := DefaultPolicy()
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(Analyze(p, desired, actual, h, now))
	}
	b.ReportMetric(float64(n), "actions")
}

// BenchmarkHistoryClone measures cloning a large history: 2,000 crashing
// indices with 4 crashes each and 10,000 recently sent STARTs and STOPs,
// the price of each analysis pass the health manager runs on a clone.
//
//	go test -run '^$' -bench HistoryClone ./healthmgr/drift/
func BenchmarkHistoryClone(b *testing.B) {
	h := NewHistory()
	for i := range 2000 {
		app := fmt.Sprintf("app-%d", i/10)
		for c := range 4 {
			h.RecordCrash(app, "v1", i%10, fmt.Sprintf("c-%d-%d", i, c), now.Add(-time.Duration(c)*time.Minute))
		}
	}
	for i := range 5000 {
		h.RecordSent(now, []Action{
			{App: fmt.Sprintf("app-%d", i), Op: OpStart, Indices: []int{i % 10}},
			{App: fmt.Sprintf("app-%d", i), Op: OpStop, Instances: []string{fmt.Sprintf("s-%d", i)}},
		})
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Clone()
	}
}
