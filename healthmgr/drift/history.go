package drift

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// ringSize bounds the crashes remembered per index. With the default policy
// the backoff reaches its cap at the 9th crash in a row, so 16 is plenty.
const ringSize = 16

// History is what the health manager remembers between analysis passes:
// recent crashes per (app, index) and the requests it recently sent. Analyze
// only reads it; the caller records crashes as droplet.exited messages and
// CRASHED heartbeats arrive, and records actions once it has sent them. A
// History is not safe for concurrent use; Clone gives a copy to analyse
// while the original goes on being recorded into.
type History struct {
	crashes map[string]map[int]*crashRing
	starts  map[indexKey]time.Time
	stops   map[string]time.Time
}

type indexKey struct {
	app   string
	index int
}

type crashEntry struct {
	instance string
	version  string
	at       time.Time
}

// crashRing holds an index's latest crashes, oldest first.
type crashRing struct {
	n       int
	entries [ringSize]crashEntry
}

// add inserts e in time order, dropping the oldest entry when full. It
// reports false if e is older than everything a full ring holds: such a
// crash (a retained instance reported again after it was pushed out) is
// already forgotten.
func (r *crashRing) add(e crashEntry) bool {
	if r.n == ringSize {
		if e.at.Before(r.entries[0].at) {
			return false
		}
		copy(r.entries[:], r.entries[1:])
		r.n--
	}
	i := r.n
	for i > 0 && e.at.Before(r.entries[i-1].at) {
		r.entries[i] = r.entries[i-1]
		i--
	}
	r.entries[i] = e
	r.n++
	return true
}

func (r *crashRing) has(instance string) bool {
	for _, e := range r.entries[:r.n] {
		if e.instance == instance {
			return true
		}
	}
	return false
}

// streak returns how many crashes of version in a row the index has had as
// of now, with the first and latest crash times: consecutive crashes at most
// p.CrashMemory apart, the latest within p.CrashMemory of now.
func (r *crashRing) streak(p *Policy, version string, now time.Time) (n int, first, last time.Time) {
	if r == nil {
		return 0, time.Time{}, time.Time{}
	}
	for i := r.n - 1; i >= 0; i-- {
		e := r.entries[i]
		if e.version != version {
			continue
		}
		limit := now
		if n > 0 {
			limit = first
		}
		if limit.Sub(e.at) > p.CrashMemory {
			break
		}
		if n == 0 {
			last = e.at
		}
		first = e.at
		n++
	}
	return n, first, last
}

// NewHistory returns an empty history.
func NewHistory() *History {
	return &History{
		crashes: make(map[string]map[int]*crashRing),
		starts:  make(map[indexKey]time.Time),
		stops:   make(map[string]time.Time),
	}
}

// Clone returns a deep copy of h: recording into or pruning either leaves
// the other unchanged. A caller that owns h under a lock clones it there
// and runs Analyze on the copy without the lock, while crashes and sent
// requests go on being recorded into h. It costs time proportional to the
// history's size (bounded by Prune), not to the number of instances. The
// clone of a nil History is nil.
func (h *History) Clone() *History {
	if h == nil {
		return nil
	}
	c := &History{
		crashes: make(map[string]map[int]*crashRing, len(h.crashes)),
		starts:  maps.Clone(h.starts),
		stops:   maps.Clone(h.stops),
	}
	for app, byIndex := range h.crashes {
		cb := make(map[int]*crashRing, len(byIndex))
		for i, r := range byIndex {
			cr := *r // the ring holds its entries by value
			cb[i] = &cr
		}
		c.crashes[app] = cb
	}
	if c.starts == nil {
		c.starts = make(map[indexKey]time.Time)
	}
	if c.stops == nil {
		c.stops = make(map[string]time.Time)
	}
	return c
}

// Unsent returns actions without the indices to start and instances to
// stop that h records as sent (RecordSent) within p.RetryAfter of now,
// leaving out actions with nothing left. It never changes actions or
// their slices. A caller that analysed a clone of h uses it before
// sending: another pass, or a peer, may have sent some of the same
// requests since the clone was taken.
func (h *History) Unsent(p Policy, now time.Time, actions []Action) []Action {
	if h == nil {
		return actions
	}
	out := actions[:0:0]
	for _, a := range actions {
		switch a.Op {
		case OpStart:
			a.Indices = keep(a.Indices, func(i int) bool { return !h.startedRecently(&p, a.App, i, now) })
			if len(a.Indices) == 0 {
				continue
			}
		case OpStop:
			a.Instances = keep(a.Instances, func(id string) bool { return !h.stoppedRecently(&p, id, now) })
			if len(a.Instances) == 0 {
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// keep returns s, or a new slice of the elements for which ok holds when
// it does not hold for all.
func keep[T any](s []T, ok func(T) bool) []T {
	for i, v := range s {
		if ok(v) {
			continue
		}
		kept := slices.Clone(s[:i])
		for _, w := range s[i+1:] {
			if ok(w) {
				kept = append(kept, w)
			}
		}
		return kept
	}
	return s
}

// RecordCrash notes that instance (of app at version and index) crashed at
// the given time, from droplet.exited or a CRASHED heartbeat. A crash of an
// instance already recorded is ignored, so heartbeats that keep reporting a
// retained crashed instance count once. It reports whether the crash was
// new.
func (h *History) RecordCrash(app, version string, index int, instance string, at time.Time) bool {
	byIndex := h.crashes[app]
	if byIndex == nil {
		byIndex = make(map[int]*crashRing)
		h.crashes[app] = byIndex
	}
	r := byIndex[index]
	if r == nil {
		r = &crashRing{}
		byIndex[index] = r
	}
	if r.has(instance) {
		return false
	}
	return r.add(crashEntry{instance: instance, version: version, at: at})
}

// RecordSent notes that actions were sent at now, so that Analyze does not
// repeat them within Policy.RetryAfter.
func (h *History) RecordSent(now time.Time, actions []Action) {
	for _, a := range actions {
		switch a.Op {
		case OpStart:
			for _, i := range a.Indices {
				h.starts[indexKey{a.App, i}] = now
			}
		case OpStop:
			for _, id := range a.Instances {
				h.stops[id] = now
			}
		}
	}
}

// Forget drops the crashes and sent STARTs remembered of an app (it was
// deleted).
func (h *History) Forget(app string) {
	delete(h.crashes, app)
	for k := range h.starts {
		if k.app == app {
			delete(h.starts, k)
		}
	}
}

// Prune drops crashes older than p.CrashMemory and sent records older than
// p.RetryAfter, bounding the history's size. It does not change what
// Analyze returns with policy p for any time at or after now.
func (h *History) Prune(p Policy, now time.Time) {
	for app, byIndex := range h.crashes {
		for i, r := range byIndex {
			if r.n == 0 || now.Sub(r.entries[r.n-1].at) > p.CrashMemory {
				delete(byIndex, i)
			}
		}
		if len(byIndex) == 0 {
			delete(h.crashes, app)
		}
	}
	for k, at := range h.starts {
		if now.Sub(at) >= p.RetryAfter {
			delete(h.starts, k)
		}
	}
	for k, at := range h.stops {
		if now.Sub(at) >= p.RetryAfter {
			delete(h.stops, k)
		}
	}
}

func (h *History) ring(app string, index int) *crashRing {
	if h == nil {
		return nil
	}
	return h.crashes[app][index]
}

func (h *History) startedRecently(p *Policy, app string, index int, now time.Time) bool {
	if h == nil {
		return false
	}
	at, ok := h.starts[indexKey{app, index}]
	return ok && now.Sub(at) < p.RetryAfter
}

func (h *History) stoppedRecently(p *Policy, instance string, now time.Time) bool {
	if h == nil {
		return false
	}
	at, ok := h.stops[instance]
	return ok && now.Sub(at) < p.RetryAfter
}

// FlappingIndex is an index that crashes repeatedly.
type FlappingIndex struct {
	Index int
	// Since is the first crash of the streak; Crashes its length.
	Since   time.Time
	Crashes int
	// NextRestart is when Analyze will next ask to restart it (zero if it
	// has given up).
	NextRestart time.Time
	GaveUp      bool
}

// CrashedInstance is an instance that crashed.
type CrashedInstance struct {
	ID    string
	Index int
	At    time.Time
}

// Status is what healthmanager.status reports for an app.
type Status struct {
	// Flapping lists the app's flapping indices at the queried version,
	// ascending.
	Flapping []FlappingIndex
	// Crashed lists the app's crashes (any version) within
	// Policy.CrashMemory, newest first.
	Crashed []CrashedInstance
}

// Status returns what the history knows of app at version: the answers to
// healthmanager.status FLAPPING and CRASHED queries.
func (h *History) Status(p Policy, app, version string, now time.Time) Status {
	var s Status
	if h == nil {
		return s
	}
	for i, r := range h.crashes[app] {
		if n, first, last := r.streak(&p, version, now); p.Flapping(n) {
			f := FlappingIndex{Index: i, Since: first, Crashes: n}
			if p.GiveUpAfter > 0 && n > p.GiveUpAfter {
				f.GaveUp = true
			} else {
				f.NextRestart = last.Add(p.Backoff(n))
			}
			s.Flapping = append(s.Flapping, f)
		}
		for _, e := range r.entries[:r.n] {
			if now.Sub(e.at) <= p.CrashMemory {
				s.Crashed = append(s.Crashed, CrashedInstance{ID: e.instance, Index: i, At: e.at})
			}
		}
	}
	slices.SortFunc(s.Flapping, func(a, b FlappingIndex) int { return a.Index - b.Index })
	slices.SortFunc(s.Crashed, func(a, b CrashedInstance) int {
		if c := b.At.Compare(a.At); c != 0 {
			return c
		}
		if a.Index != b.Index {
			return a.Index - b.Index
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return s
}
