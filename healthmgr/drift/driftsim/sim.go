// Package driftsim is a simulated world for testing drift.Analyze: DEAs run
// instances, the health manager analyses their heartbeats every round, and a
// controller applies its requests after random delays, re-validating them as
// the real controller does (PROTOCOL.md §2.2). Instances crash, DEAs vanish
// and desired state changes at random while chaos lasts; afterwards the
// world must converge.
//
// Everything is simulated time and an injected *rand.Rand: a World is
// reproducible from its Config and seed.
package driftsim

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/kiln-paas/kiln/healthmgr/drift"
)

// Config describes a world.
type Config struct {
	// Policy is the health manager's policy.
	Policy drift.Policy
	// Apps and MaxInstances size the initial desired state: Apps apps of
	// 1..MaxInstances instances, all started, none running yet.
	Apps, MaxInstances int
	// DEAs is the number of DEAs; a lost DEA is replaced by a new one.
	DEAs int
	// Round is the heartbeat interval: one round of the simulation.
	Round time.Duration
	// MaxActionDelay is the most rounds the controller takes to act on a
	// request; each request waits a random 0..MaxActionDelay rounds.
	MaxActionDelay int
	// MaxStartRounds is the most rounds a started instance stays STARTING.
	MaxStartRounds int
	// ChaosRounds is how many rounds chaos lasts. During them, each round,
	// each running instance crashes with CrashProb, each DEA is lost with
	// DEALossProb, and the desired state of an app changes with
	// ChangeProb per app.
	ChaosRounds int
	CrashProb   float64
	DEALossProb float64
	ChangeProb  float64
	// Start is the simulated time of round 0.
	Start time.Time
}

// DefaultConfig returns a small, busy world.
func DefaultConfig() Config {
	return Config{
		Policy:         drift.DefaultPolicy(),
		Apps:           20,
		MaxInstances:   5,
		DEAs:           6,
		Round:          10 * time.Second,
		MaxActionDelay: 2,
		MaxStartRounds: 2,
		ChaosRounds:    30,
		CrashProb:      0.02,
		DEALossProb:    0.01,
		ChangeProb:     0.02,
		Start:          time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// ErrInvalidConfig is returned (wrapped) by New for an unusable Config.
var ErrInvalidConfig = errors.New("driftsim: invalid config")

// Validate reports the first problem with c.
func (c Config) Validate() error {
	if err := c.Policy.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	switch {
	case c.Apps < 0 || c.MaxInstances < 1 || c.DEAs < 1:
		return fmt.Errorf("%w: need Apps >= 0, MaxInstances >= 1, DEAs >= 1", ErrInvalidConfig)
	case c.Round <= 0 || c.MaxActionDelay < 0 || c.MaxStartRounds < 1 || c.ChaosRounds < 0:
		return fmt.Errorf("%w: bad timing", ErrInvalidConfig)
	}
	return nil
}

// ConvergenceBound is the number of rounds after chaos within which a world
// must converge: the grace window, the longest backoff, heartbeat expiry and
// one retry, each rounded up to rounds, plus the controller's and the
// instances' delays.
func (c Config) ConvergenceBound() int {
	p := c.Policy
	d := p.Grace + p.MaxBackoff + p.HeartbeatTTL + 2*p.RetryAfter + p.OrphanGrace
	return int((d+c.Round-1)/c.Round) + 2*(c.MaxActionDelay+c.MaxStartRounds) + 2
}

type instance struct {
	drift.Instance
	readyAt int // round it turns RUNNING
}

type pending struct {
	due    int
	action drift.Action
}

// World is the simulated world.
type World struct {
	cfg     Config
	rng     *rand.Rand
	round   int
	desired []drift.App
	deas    []string
	live    map[string]bool      // DEA id → alive
	truth   map[string]*instance // instance id → instance on a live DEA
	view    map[string]drift.Instance
	hist    *drift.History
	queue   []pending
	nextID  int
	version map[string]int
}

// New returns a world in round 0 with nothing running.
func New(cfg Config, rng *rand.Rand) (*World, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w := &World{cfg: cfg, rng: rng, live: map[string]bool{}, truth: map[string]*instance{},
		view: map[string]drift.Instance{}, hist: drift.NewHistory(), version: map[string]int{}}
	for i := 0; i < cfg.DEAs; i++ {
		w.addDEA()
	}
	for i := 0; i < cfg.Apps; i++ {
		w.desired = append(w.desired, drift.App{ID: fmt.Sprintf("app-%d", i), Version: "v0",
			Instances: 1 + rng.IntN(cfg.MaxInstances), State: drift.AppStarted, UpdatedAt: cfg.Start.Add(-time.Hour)})
	}
	return w, nil
}

func (w *World) now() time.Time { return w.cfg.Start.Add(time.Duration(w.round) * w.cfg.Round) }

func (w *World) addDEA() {
	id := fmt.Sprintf("dea-%d", w.nextID)
	w.nextID++
	w.deas = append(w.deas, id)
	w.live[id] = true
}

func (w *World) newID() string {
	w.nextID++
	return fmt.Sprintf("i-%d", w.nextID)
}

// Round returns the current round.
func (w *World) Round() int { return w.round }

// Now returns the current simulated time.
func (w *World) Now() time.Time { return w.now() }

// Desired returns the desired state (the world's; do not modify).
func (w *World) Desired() []drift.App { return w.desired }

// Actual returns the health manager's view of the instances, sorted by id,
// as the last heartbeats left it.
func (w *World) Actual() []drift.Instance {
	out := make([]drift.Instance, 0, len(w.view))
	for _, in := range w.view {
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b drift.Instance) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// History returns the health manager's history.
func (w *World) History() *drift.History { return w.hist }

// Step is what happened in one round.
type Step struct {
	// Actual is what Analyze saw, Actions what it returned.
	Actual  []drift.Instance
	Actions []drift.Action
}

// Step runs one round (Advance), analyses it with drift.Analyze and
// submits the actions.
func (w *World) Step() Step {
	w.Advance()
	actual := w.Actual()
	actions := drift.Analyze(w.cfg.Policy, w.desired, actual, w.hist, w.now())
	w.Submit(actions)
	return Step{Actual: actual, Actions: actions}
}

// Advance moves to the next round: chaos (while it lasts), instances
// becoming ready, the DEAs' crash reaper, heartbeats, and the controller
// acting on the requests due.
func (w *World) Advance() {
	w.round++
	now := w.now()
	if w.round <= w.cfg.ChaosRounds {
		w.chaos(now)
	}
	for _, id := range sortedKeys(w.truth) {
		in := w.truth[id]
		switch {
		case in.State == drift.Starting && w.round >= in.readyAt:
			in.State, in.Since = drift.Running, now
		case in.State == drift.Crashed && now.Sub(in.Since) > crashRetention:
			delete(w.truth, id)
			delete(w.view, id)
		}
	}
	w.heartbeat(now)
	w.control()
}

// crashRetention is how long DEAs keep reporting crashed instances (an hour
// in the original; shortened to keep the simulated views small).
const crashRetention = 2 * time.Minute

// Submit records actions as sent by the health manager and queues them for
// the controller, each after a random delay.
func (w *World) Submit(actions []drift.Action) {
	now := w.now()
	w.hist.RecordSent(now, actions)
	w.hist.Prune(w.cfg.Policy, now)
	for _, a := range actions {
		w.queue = append(w.queue, pending{due: w.round + w.rng.IntN(w.cfg.MaxActionDelay+1), action: a})
	}
}

// heartbeat refreshes the health manager's view from live DEAs and forgets
// entries long expired.
func (w *World) heartbeat(now time.Time) {
	for _, id := range sortedKeys(w.truth) {
		in := w.truth[id]
		in.LastSeen = now
		w.view[id] = in.Instance
		if in.State == drift.Crashed {
			w.hist.RecordCrash(in.App, in.Version, in.Index, in.ID, in.Since)
		}
	}
	for id, in := range w.view {
		if now.Sub(in.LastSeen) > 4*w.cfg.Policy.HeartbeatTTL {
			delete(w.view, id)
		}
	}
}

// control applies due requests as the controller would.
func (w *World) control() {
	var later []pending
	for _, p := range w.queue {
		if p.due > w.round {
			later = append(later, p)
			continue
		}
		a := p.action
		app := w.app(a.App)
		switch a.Op {
		case drift.OpStart:
			if app == nil || app.State != drift.AppStarted || app.Version != a.Version {
				continue
			}
			for _, idx := range a.Indices {
				w.start(app, idx)
			}
		case drift.OpStop:
			if app != nil && !app.UpdatedAt.Equal(a.LastUpdated) {
				continue
			}
			for _, id := range a.Instances {
				w.stop(id)
			}
		}
	}
	w.queue = later
}

func (w *World) app(id string) *drift.App {
	for i := range w.desired {
		if w.desired[i].ID == id {
			return &w.desired[i]
		}
	}
	return nil
}

func (w *World) start(app *drift.App, index int) {
	var alive []string
	for _, d := range w.deas {
		if w.live[d] {
			alive = append(alive, d)
		}
	}
	if len(alive) == 0 {
		return
	}
	in := &instance{Instance: drift.Instance{App: app.ID, Version: app.Version, Index: index, ID: w.newID(),
		State: drift.Starting, DEA: alive[w.rng.IntN(len(alive))], Since: w.now(), LastSeen: w.now()},
		readyAt: w.round + 1 + w.rng.IntN(w.cfg.MaxStartRounds)}
	w.truth[in.ID] = in
}

// stop stops an instance; its DEA reports the exit, so the view drops it.
func (w *World) stop(id string) {
	if _, ok := w.truth[id]; ok {
		delete(w.truth, id)
		delete(w.view, id)
	}
}

func (w *World) chaos(now time.Time) {
	for _, id := range sortedKeys(w.truth) {
		in := w.truth[id]
		if in.State != drift.Crashed && w.rng.Float64() < w.cfg.CrashProb {
			in.State, in.Since = drift.Crashed, now
			w.hist.RecordCrash(in.App, in.Version, in.Index, in.ID, now)
		}
	}
	for _, d := range slices.Clone(w.deas) {
		if w.live[d] && w.rng.Float64() < w.cfg.DEALossProb {
			w.live[d] = false // its instances fall silent and expire
			for id, in := range w.truth {
				if in.DEA == d {
					delete(w.truth, id)
				}
			}
			w.addDEA()
		}
	}
	for i := range w.desired {
		if w.rng.Float64() < w.cfg.ChangeProb {
			w.change(i, now)
		}
	}
}

// change alters one app's desired state: scale, new version, stop, start or
// delete (replaced by a new app).
func (w *World) change(i int, now time.Time) {
	a := &w.desired[i]
	a.UpdatedAt = now
	switch w.rng.IntN(5) {
	case 0:
		a.Instances = w.rng.IntN(w.cfg.MaxInstances + 1)
	case 1:
		w.version[a.ID]++
		a.Version = fmt.Sprintf("v%d", w.version[a.ID])
	case 2:
		a.State = drift.AppStopped
	case 3:
		a.State = drift.AppStarted
	case 4:
		w.hist.Forget(a.ID)
		*a = drift.App{ID: fmt.Sprintf("app-n%d", w.nextID), Version: "v0", Instances: 1 + w.rng.IntN(w.cfg.MaxInstances),
			State: drift.AppStarted, UpdatedAt: now}
		w.nextID++
	}
}

// Converged reports whether the world has settled on the desired state: no
// request is waiting for the controller, every desired index of a started
// app has exactly one instance, RUNNING at the app's version, and nothing
// else is live. If not, it says why.
func (w *World) Converged() (bool, string) {
	if len(w.queue) > 0 {
		return false, fmt.Sprintf("%d requests in flight", len(w.queue))
	}
	want := map[string]*drift.App{}
	for i := range w.desired {
		want[w.desired[i].ID] = &w.desired[i]
	}
	seen := map[string]map[int]int{}
	for _, id := range sortedKeys(w.truth) {
		in := w.truth[id]
		if in.State == drift.Crashed {
			continue
		}
		a := want[in.App]
		switch {
		case a == nil:
			return false, fmt.Sprintf("%s of deleted app %s is live", in.ID, in.App)
		case a.State != drift.AppStarted:
			return false, fmt.Sprintf("%s of stopped app %s is live", in.ID, in.App)
		case in.Index >= a.Instances:
			return false, fmt.Sprintf("%s of %s at extra index %d", in.ID, in.App, in.Index)
		case in.Version != a.Version:
			return false, fmt.Sprintf("%s of %s has old version %s", in.ID, in.App, in.Version)
		case in.State != drift.Running:
			return false, fmt.Sprintf("%s of %s is %v", in.ID, in.App, in.State)
		}
		if seen[in.App] == nil {
			seen[in.App] = map[int]int{}
		}
		seen[in.App][in.Index]++
	}
	for _, a := range w.desired {
		if a.State != drift.AppStarted {
			continue
		}
		for i := 0; i < a.Instances; i++ {
			if n := seen[a.ID][i]; n != 1 {
				return false, fmt.Sprintf("%s index %d has %d running instances", a.ID, i, n)
			}
		}
	}
	return true, ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
