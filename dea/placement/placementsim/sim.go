// Package placementsim runs placement strategies against many simulated DEAs
// to measure balance, spread and the controller's wait, in simulated time
// and without I/O, following the pattern of Diego's auction simulation.
//
// A run feeds a stream of placement requests, one every RequestInterval, to
// N DEAs. Each DEA that can take a request replies after the delay its
// Strategy gives plus network jitter drawn from an injected *rand.Rand, and
// the first reply wins, as with the controller's dea.discover. DEAs learn
// their peers' load only from adverts sent every AdvertInterval, with
// staggered phases, so kiln's relative delays see realistically stale data.
// Given the same Config, Strategy and seed a run is exactly reproducible.
package placementsim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/kiln-paas/kiln/dea/placement"
)

// DEA is one simulated DEA.
type DEA struct {
	Capacity placement.Capacity
	// Load is the DEA's load at the start of the run; its Apps map is
	// copied, not modified.
	Load placement.Load
}

// Config describes a run.
type Config struct {
	// DEAs are the simulated DEAs; their ids must be unique.
	DEAs []DEA
	// Requests are placed in order, one every RequestInterval.
	Requests        []placement.Request
	RequestInterval time.Duration
	// AdvertInterval is how often each DEA advertises its load to the
	// others; it must be positive.
	AdvertInterval time.Duration
	// AdvertOnChange makes a DEA also advertise whenever its reservations
	// change, as V12 DEAs did; with it every view is exact.
	AdvertOnChange bool
	// Jitter is the largest network delay added to a reply, drawn
	// uniformly from [0, Jitter).
	Jitter time.Duration
	// Timeout is how long the controller waits for a reply (2 s in the
	// original); later replies are lost and the request goes unplaced.
	Timeout time.Duration
	// Start is the simulated time of the first request.
	Start time.Time
	// HoldMargin models placement.Ledger: when positive, every DEA that
	// answers yes and loses holds the instance's resources (against its
	// capacity, see placement.Load) until its reply time plus HoldMargin.
	// Zero models no holds: only the winner's reservation counts.
	HoldMargin time.Duration
}

// DefaultConfig returns the timing of the original system: adverts every
// 5 s, a 2 s discover timeout, 0.5 ms of jitter, and a controller asking for
// 20 placements a second. DEAs and Requests are left empty.
func DefaultConfig() Config {
	return Config{
		RequestInterval: 50 * time.Millisecond,
		AdvertInterval:  5 * time.Second,
		Jitter:          500 * time.Microsecond,
		Timeout:         2 * time.Second,
		Start:           time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// ErrInvalidConfig is returned (wrapped) by Run for an unusable Config.
var ErrInvalidConfig = errors.New("placementsim: invalid config")

// Validate reports the first problem with c.
func (c Config) Validate() error {
	ids := make(map[string]bool, len(c.DEAs))
	for _, d := range c.DEAs {
		if ids[d.Capacity.ID] {
			return fmt.Errorf("%w: duplicate DEA id %q", ErrInvalidConfig, d.Capacity.ID)
		}
		ids[d.Capacity.ID] = true
	}
	switch {
	case len(c.DEAs) == 0:
		return fmt.Errorf("%w: no DEAs", ErrInvalidConfig)
	case c.RequestInterval < 0 || c.Jitter < 0 || c.HoldMargin < 0:
		return fmt.Errorf("%w: negative interval", ErrInvalidConfig)
	case c.AdvertInterval <= 0:
		return fmt.Errorf("%w: AdvertInterval must be positive", ErrInvalidConfig)
	case c.Timeout <= 0:
		return fmt.Errorf("%w: Timeout must be positive", ErrInvalidConfig)
	}
	return nil
}

// Result summarises a run.
type Result struct {
	Strategy string
	// Placed and Unplaced count requests that found a DEA or did not.
	Placed, Unplaced int
	// Wait percentiles of the winning reply over placed requests.
	WaitP50, WaitP90, WaitP99, WaitMax time.Duration
	// Balance is max/min memory utilisation over the eligible DEAs: those
	// that could have taken at least one request. 1 is perfect.
	Balance float64
	// SpreadViolations counts placements onto a DEA already running the
	// app while a DEA without the app could have taken it.
	SpreadViolations int
	// Wins counts placements per DEA, in Config.DEAs order.
	Wins []int
	// Utilisation is each DEA's reserved-memory fraction at the end.
	Utilisation []float64
	// Eligible marks the DEAs counted in Balance.
	Eligible []bool
}

// Run simulates cfg with strategy s, drawing jitter from rng.
func Run(cfg Config, s Strategy, rng *rand.Rand) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	weights := placement.DefaultConfig().Weights
	if ws, ok := s.(interface{ weights() placement.Weights }); ok {
		weights = ws.weights()
	}
	w := newWorld(cfg, weights)
	res := Result{Strategy: s.Name(), Wins: make([]int, len(cfg.DEAs)), Eligible: make([]bool, len(cfg.DEAs))}
	waits := make([]time.Duration, 0, len(cfg.Requests))
	for k, req := range cfg.Requests {
		w.now = cfg.Start.Add(time.Duration(k) * cfg.RequestInterval)
		w.seq = k
		w.expireHolds(w.now)
		w.deliverAdverts()
		winner, wait := -1, cfg.Timeout
		anyWithout := false
		replies := w.replies[:0]
		for i := range w.deas {
			if w.fits(i, req) {
				res.Eligible[i] = true
				anyWithout = anyWithout || w.placed[i][req.App] == 0
			}
			d, ok := s.Reply(w, i, req)
			if !ok {
				continue
			}
			if cfg.Jitter > 0 {
				d += time.Duration(rng.Int64N(int64(cfg.Jitter)))
			}
			replies = append(replies, reply{dea: i, delay: d})
			if d < wait {
				winner, wait = i, d
			}
		}
		w.replies = replies
		if cfg.HoldMargin > 0 {
			for _, r := range replies {
				if r.dea != winner && r.delay < cfg.Timeout {
					w.hold(r.dea, req, w.now.Add(r.delay+cfg.HoldMargin))
				}
			}
		}
		if winner < 0 {
			res.Unplaced++
			continue
		}
		if w.placed[winner][req.App] > 0 && anyWithout {
			res.SpreadViolations++
		}
		w.place(winner, req)
		res.Placed++
		res.Wins[winner]++
		waits = append(waits, wait)
	}
	w.expireHolds(time.Unix(1<<62, 0))
	res.WaitP50, res.WaitP90, res.WaitP99, res.WaitMax = percentiles(waits)
	res.Utilisation = make([]float64, len(w.deas))
	lo, hi := math.Inf(1), 0.0
	for i, d := range w.deas {
		u := utilisation(d)
		res.Utilisation[i] = u
		if res.Eligible[i] {
			lo, hi = math.Min(lo, u), math.Max(hi, u)
		}
	}
	res.Balance = hi / lo
	if hi == 0 {
		res.Balance = 1
	}
	return res, nil
}

func utilisation(d DEA) float64 {
	if d.Capacity.MemoryMB <= 0 {
		return 0
	}
	return float64(d.Load.MemoryMB) / float64(d.Capacity.MemoryMB)
}

func percentiles(waits []time.Duration) (p50, p90, p99, maxWait time.Duration) {
	if len(waits) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(waits)
	at := func(q float64) time.Duration { return waits[int(q*float64(len(waits)-1))] }
	return at(0.50), at(0.90), at(0.99), waits[len(waits)-1]
}

// World is the simulated cluster as strategies see it.
type World struct {
	cfg        Config
	now        time.Time
	deas       []DEA
	view       *placement.Cluster
	nextAdvert []time.Time
	seq        int     // index of the current request
	memoSeq    int     // request the memo below belongs to
	memo       float64 // built-in strategies' per-request scratch (see LeastLoaded)
	fitCfg     placement.Config
	placed     []map[string]int // app → instances actually placed, per DEA
	holds      [][]hold         // per DEA, when HoldMargin > 0
	replies    []reply
}

type reply struct {
	dea   int
	delay time.Duration
}

// hold is a losing yes whose resources stay reserved until it lapses.
type hold struct {
	req   placement.Request
	until time.Time
}

func newWorld(cfg Config, weights placement.Weights) *World {
	w := &World{cfg: cfg, deas: make([]DEA, len(cfg.DEAs)), nextAdvert: make([]time.Time, len(cfg.DEAs)),
		placed: make([]map[string]int, len(cfg.DEAs)), holds: make([][]hold, len(cfg.DEAs))}
	for i, d := range cfg.DEAs {
		w.placed[i] = map[string]int{}
		apps := make(map[string]int, len(d.Load.Apps))
		for k, v := range d.Load.Apps {
			apps[k] = v
		}
		d.Load.Apps = apps
		w.deas[i] = d
	}
	w.view = placement.NewCluster(weights)
	w.memoSeq = -1
	w.fitCfg = placement.DefaultConfig()
	return w
}

// Now returns the simulated time of the current request.
func (w *World) Now() time.Time { return w.now }

// Len returns the number of DEAs.
func (w *World) Len() int { return len(w.deas) }

// DEA returns DEA i's current capacity and load. The load's Apps map is
// the simulator's: do not modify it.
func (w *World) DEA(i int) DEA { return w.deas[i] }

// View returns the peers' adverts as every DEA currently knows them, scored
// with the Kiln strategy's weights (or the defaults). Every DEA's own advert
// is in it, as on a real bus.
func (w *World) View() *placement.Cluster { return w.view }

// Fits reports whether DEA i could take r now, by its true load.
func (w *World) Fits(i int, r placement.Request) bool { return w.fits(i, r) }

// deliverAdverts sends every advert due by now, in time order so each peer's
// latest advert is the one kept.
func (w *World) deliverAdverts() {
	if w.view.Len() == 0 {
		for i := range w.deas {
			w.advertise(i, w.now)
			// Stagger phases so adverts are spread over the interval.
			phase := time.Duration(int64(w.cfg.AdvertInterval) * int64(i+1) / int64(len(w.deas)))
			w.nextAdvert[i] = w.now.Add(phase)
		}
		return
	}
	for i := range w.deas {
		for !w.nextAdvert[i].After(w.now) {
			w.advertise(i, w.nextAdvert[i])
			w.nextAdvert[i] = w.nextAdvert[i].Add(w.cfg.AdvertInterval)
		}
	}
}

func (w *World) advertise(i int, at time.Time) {
	d := w.deas[i]
	w.view.Upsert(placement.Advert{Capacity: d.Capacity, Load: d.Load, At: at})
}

func (w *World) fits(i int, r placement.Request) bool {
	return placement.Check(w.fitCfg, w.deas[i].Capacity, w.deas[i].Load, r) == placement.ReasonNone
}

func (w *World) place(i int, r placement.Request) {
	w.reserve(i, r, 1)
	w.placed[i][r.App]++
}

// reserve adds (sign 1) or removes (sign -1) r's resources from DEA i's
// load, advertising at once when adverts go out on every change.
func (w *World) reserve(i int, r placement.Request, sign int) {
	l := &w.deas[i].Load
	l.MemoryMB += sign * r.MemoryMB
	l.DiskMB += sign * r.DiskMB
	l.Instances += sign
	if l.Apps[r.App] += sign; l.Apps[r.App] == 0 {
		delete(l.Apps, r.App)
	}
	if w.cfg.AdvertOnChange {
		w.advertise(i, w.now)
	}
}

func (w *World) hold(i int, r placement.Request, until time.Time) {
	w.holdResources(i, r, 1)
	w.holds[i] = append(w.holds[i], hold{req: r, until: until})
}

func (w *World) holdResources(i int, r placement.Request, sign int) {
	l := &w.deas[i].Load
	l.HeldMemoryMB += sign * r.MemoryMB
	l.HeldDiskMB += sign * r.DiskMB
	l.HeldInstances += sign
	if w.cfg.AdvertOnChange {
		w.advertise(i, w.now)
	}
}

// expireHolds releases the holds that lapsed by now.
func (w *World) expireHolds(now time.Time) {
	for i, hs := range w.holds {
		kept := hs[:0]
		for _, h := range hs {
			if h.until.After(now) {
				kept = append(kept, h)
			} else {
				w.holdResources(i, h.req, -1)
			}
		}
		w.holds[i] = kept
	}
}
