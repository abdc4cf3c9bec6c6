package membus

import (
	"strconv"
	"testing"

	"github.com/kiln-paas/kiln/bus"
)

// benchSubs builds 10,000 subscriptions shaped like a kernel's: mostly
// literal per-instance subjects, plus a tenth with "*" and a tenth with ">".
func benchSubs() []*subscription {
	subs := make([]*subscription, 0, 10000)
	for i := range 10000 {
		n := strconv.Itoa(i)
		switch i % 10 {
		case 0:
			subs = append(subs, testSub("dea.*.evt"+n, ""))
		case 1:
			subs = append(subs, testSub("dea.n"+n+".>", ""))
		default:
			subs = append(subs, testSub("dea.n"+n+".evt"+n, ""))
		}
	}
	return subs
}

// benchSubjects are the literal subjects published on: 256 of them, each
// matching one to three of the subscriptions.
func benchSubjects() []string {
	out := make([]string, 256)
	for i := range out {
		n := strconv.Itoa(i * 37)
		out[i] = "dea.n" + n + ".evt" + n
	}
	return out
}

func BenchmarkMatch(b *testing.B) {
	sl := newSublist()
	for _, s := range benchSubs() {
		sl.insert(s)
	}
	subjects := benchSubjects()
	b.Run("cached", func(b *testing.B) {
		for _, s := range subjects {
			sl.match(s)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			sl.match(subjects[i%len(subjects)])
			i++
		}
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			sl.gen.Add(1) // as if a subscription had changed
			sl.match(subjects[i%len(subjects)])
			i++
		}
	})
	// linear-scan is the baseline the trie exists to beat: bus.Match
	// against every subscription.
	b.Run("linear-scan", func(b *testing.B) {
		subs := benchSubs()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			subject := subjects[i%len(subjects)]
			n := 0
			for _, s := range subs {
				if bus.Match(s.subject, subject) {
					n++
				}
			}
			if n == 0 {
				b.Fatal("no match")
			}
			i++
		}
	})
}
