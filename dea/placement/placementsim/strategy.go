package placementsim

import (
	"math"
	"time"

	"github.com/kiln-paas/kiln/dea/placement"
)

// Strategy is how every simulated DEA answers a request.
type Strategy interface {
	// Name labels the strategy in results.
	Name() string
	// Reply reports whether DEA i of w answers req and after what delay,
	// before network jitter. It may read w but must not change it.
	// Reply is called for every DEA of a request before the next request.
	Reply(w *World, i int, req placement.Request) (time.Duration, bool)
}

// Kiln is placement.Decide with cfg, each DEA knowing its peers from their
// adverts.
func Kiln(cfg placement.Config) Strategy { return kiln{cfg} }

type kiln struct{ cfg placement.Config }

func (kiln) Name() string { return "kiln" }

func (k kiln) weights() placement.Weights { return k.cfg.Weights }

func (k kiln) Reply(w *World, i int, req placement.Request) (time.Duration, bool) {
	d := w.deas[i]
	dec := placement.Decide(k.cfg, d.Capacity, d.Load, w.view, req, w.now)
	return dec.Delay, dec.OK
}

// Original is the original DEA's absolute taint (PROTOCOL.md §3.1): 10 ms
// per instance of the app already on the DEA plus 100 ms × reserved-memory
// fraction, capped at 250 ms.
func Original() Strategy { return original{} }

type original struct{}

func (original) Name() string { return "original" }

func (original) Reply(w *World, i int, req placement.Request) (time.Duration, bool) {
	if !w.fits(i, req) {
		return 0, false
	}
	d := w.deas[i]
	taint := 10*time.Duration(d.Load.Apps[req.App])*time.Millisecond +
		time.Duration(100*float64(time.Millisecond)*float64(d.Load.MemoryMB)/float64(d.Capacity.MemoryMB))
	return min(taint, 250*time.Millisecond), true
}

// Random has every suitable DEA reply at once, so the jitter picks the
// winner at random: the V12 controller's shuffled advert pool.
func Random() Strategy { return random{} }

type random struct{}

func (random) Name() string { return "random" }

func (random) Reply(w *World, i int, req placement.Request) (time.Duration, bool) {
	return 0, w.fits(i, req)
}

// LeastLoaded is an oracle that knows every DEA's current memory use and has
// the least utilised suitable DEA (after placement) reply at once, ignoring
// where the app's other instances run.
func LeastLoaded() Strategy { return leastLoaded{} }

type leastLoaded struct{}

func (leastLoaded) Name() string { return "least-loaded" }

func (leastLoaded) Reply(w *World, i int, req placement.Request) (time.Duration, bool) {
	if !w.fits(i, req) {
		return 0, false
	}
	after := func(j int) float64 {
		d := w.deas[j]
		return float64(d.Load.MemoryMB+req.MemoryMB) / float64(d.Capacity.MemoryMB)
	}
	if w.memoSeq != w.seq {
		best := math.Inf(1)
		for j := range w.deas {
			if w.fits(j, req) {
				best = math.Min(best, after(j))
			}
		}
		w.memoSeq, w.memo = w.seq, best
	}
	best := w.memo
	return time.Duration((after(i) - best) * float64(100*time.Millisecond)), true
}
