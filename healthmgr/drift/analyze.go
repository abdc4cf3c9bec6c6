package drift

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Analyze compares desired apps with the actual instances and returns the
// requests that bring them together, given the crash and request history h
// (which may be nil) and the time now. It is deterministic and reads h
// without changing it: analysing the same inputs twice gives the same
// actions.
//
// Rules, per desired app (the first entry of a duplicated id wins):
//   - apps updated within p.Grace are left alone;
//   - instances whose heartbeat is older than p.HeartbeatTTL are gone;
//   - a STARTED app's index 0..Instances-1 with no STARTING or RUNNING
//     instance of the app's version is started (ReasonMissing), or, if it
//     has crashed, restarted after Policy.Backoff (ReasonCrashed, Flapping
//     once the streak is long), unless a START was sent within p.RetryAfter;
//   - at an index with several live instances of one version, the oldest
//     healthy one (RUNNING before STARTING, then earliest Since, then
//     smallest id) is kept and the others stopped (ReasonDuplicate);
//   - an old version's instance at a desired index is stopped once the
//     current version is RUNNING there (ReasonSuperseded), never before;
//   - live instances at or beyond the desired count are stopped
//     (ReasonExtra), all of a STOPPED app's (ReasonAppStopped), and those of
//     apps not in desired (ReasonAppDeleted) once they have been in their
//     state for p.OrphanGrace;
//   - a STOP of an instance sent within p.RetryAfter is not repeated.
//
// Actions come in the order of desired, then deleted apps by id; within an
// app in Reason order, STARTs before STOPs.
func Analyze(p Policy, desired []App, actual []Instance, h *History, now time.Time) []Action {
	a := analyzer{p: &p, h: h, now: now}
	return a.run(desired, actual)
}

type analyzer struct {
	p      *Policy
	h      *History
	now    time.Time
	actual []Instance
	out    []Action

	// Scratch reused from app to app.
	cur   []slot // per desired index: the app's version
	old   []slot // per desired index: older versions
	stops []stop
	start [3][]int // missing, crashed, crashed and flapping
}

// slot tracks the best live instance seen at an index.
type slot struct {
	best    int32 // position in the app's instances, -1 if none
	running bool  // some instance at the index is RUNNING
	crashed bool  // a CRASHED instance is visible at the index
}

type stop struct {
	reason Reason
	index  int
	id     string
}

func (a *analyzer) run(desired []App, actual []Instance) []Action {
	a.actual = actual
	pos := make(map[string]int32, len(desired))
	dup := make([]bool, len(desired))
	for i, app := range desired {
		if _, dup[i] = pos[app.ID]; !dup[i] {
			pos[app.ID] = int32(i)
		}
	}
	// Bucket the fresh instances by app with a counting sort, as compact
	// records so the per-app passes read memory in order; orphans go to
	// the last bucket.
	orphan := int32(len(desired))
	owner := make([]int32, len(actual))
	start := make([]int32, len(desired)+3)
	cutoff := a.now.Add(-a.p.HeartbeatTTL)
	for i := range actual {
		in := &actual[i]
		if in.LastSeen.Before(cutoff) || (!in.State.live() && in.State != Crashed) {
			owner[i] = -1
			continue
		}
		o, ok := pos[in.App]
		if !ok {
			o = orphan
		}
		owner[i] = o
		start[o+2]++
	}
	for i := 2; i < len(start); i++ {
		start[i] += start[i-1]
	}
	recs := make([]rec, start[len(start)-1])
	for i, o := range owner {
		if o < 0 {
			continue
		}
		in := &actual[i]
		r := rec{pos: int32(i), index: int32(min(max(in.Index, -1), math.MaxInt32)), state: in.State}
		r.cur = o < orphan && in.Version == desired[o].Version
		recs[start[o+1]] = r
		start[o+1]++
	}
	for i := range desired {
		if !dup[i] {
			a.app(&desired[i], recs[start[i]:start[i+1]])
		}
	}
	a.orphans(recs[start[orphan]:start[orphan+1]])
	return a.out
}

// rec is the part of an instance the per-app passes need.
type rec struct {
	pos   int32 // in actual
	index int32 // -1 for any negative index
	state InstanceState
	cur   bool // at the app's desired version
}

// app analyses one desired app.
func (a *analyzer) app(app *App, ins []rec) {
	if a.now.Sub(app.UpdatedAt) < a.p.Grace {
		return
	}
	a.stops = a.stops[:0]
	if app.State != AppStarted {
		for _, r := range ins {
			if r.state.live() {
				a.stopOne(ReasonAppStopped, r)
			}
		}
		a.flushStops(app.ID, app.UpdatedAt, app.Instances)
		return
	}
	n := int32(min(max(app.Instances, 0), math.MaxInt32))
	a.cur = resetSlots(a.cur, int(n))
	a.old = resetSlots(a.old, int(n))
	// Pass 1: find the instance to keep at each index, per version class.
	for k, r := range ins {
		if r.index < 0 || r.index >= n {
			continue
		}
		slots := a.old
		if r.cur {
			slots = a.cur
		}
		s := &slots[r.index]
		switch {
		case r.state == Crashed:
			s.crashed = true
		case r.state.live():
			s.running = s.running || r.state == Running
			if s.best < 0 || a.better(r, ins[s.best]) {
				s.best = int32(k)
			}
		}
	}
	// Pass 2: everything live that is not kept is stopped.
	for k, r := range ins {
		if !r.state.live() {
			continue
		}
		switch {
		case r.index < 0 || r.index >= n:
			a.stopOne(ReasonExtra, r)
		case r.cur:
			if a.cur[r.index].best != int32(k) {
				a.stopOne(ReasonDuplicate, r)
			}
		case a.cur[r.index].running:
			a.stopOne(ReasonSuperseded, r)
		case a.old[r.index].best != int32(k):
			a.stopOne(ReasonDuplicate, r)
		}
	}
	a.starts(app, int(n))
	a.flushStops(app.ID, app.UpdatedAt, int(n))
}

// better reports whether x is a healthier keeper for an index than y.
func (a *analyzer) better(rx, ry rec) bool {
	if (rx.state == Running) != (ry.state == Running) {
		return rx.state == Running
	}
	x, y := &a.actual[rx.pos], &a.actual[ry.pos]
	if !x.Since.Equal(y.Since) {
		return x.Since.Before(y.Since)
	}
	return x.ID < y.ID
}

func resetSlots(s []slot, n int) []slot {
	s = slices.Grow(s[:0], n)[:n]
	for i := range s {
		s[i] = slot{best: -1}
	}
	return s
}

// starts emits the START actions of a started app.
func (a *analyzer) starts(app *App, n int) {
	for i := range a.start {
		a.start[i] = a.start[i][:0]
	}
	for i := 0; i < n; i++ {
		if a.cur[i].best >= 0 || a.h.startedRecently(a.p, app.ID, i, a.now) {
			continue
		}
		crashes, _, last := a.h.ring(app.ID, i).streak(a.p, app.Version, a.now)
		switch {
		case crashes == 0 && !a.cur[i].crashed:
			a.start[0] = append(a.start[0], i)
		case a.p.GiveUpAfter > 0 && crashes > a.p.GiveUpAfter:
		case crashes > 0 && a.now.Before(last.Add(a.p.Backoff(crashes))):
		case a.p.Flapping(crashes):
			a.start[2] = append(a.start[2], i)
		default:
			a.start[1] = append(a.start[1], i)
		}
	}
	for k, idx := range a.start {
		if len(idx) == 0 {
			continue
		}
		act := Action{
			App: app.ID, Op: OpStart, Reason: ReasonCrashed, Version: app.Version,
			Indices: slices.Clone(idx), Flapping: k == 2, LastUpdated: app.UpdatedAt,
		}
		switch k {
		case 0:
			act.Reason = ReasonMissing
			act.Text = fmt.Sprintf("no instance of version %s at %s of %d desired", app.Version, plural("index", "indices", idx), n)
		case 1:
			act.Text = fmt.Sprintf("crashed at %s; restarting at once", plural("index", "indices", idx))
		case 2:
			act.Text = fmt.Sprintf("flapping at %s; restarting after backoff", plural("index", "indices", idx))
		}
		a.out = append(a.out, act)
	}
}

func (a *analyzer) stopOne(reason Reason, r rec) {
	in := &a.actual[r.pos]
	if !a.h.stoppedRecently(a.p, in.ID, a.now) {
		a.stops = append(a.stops, stop{reason: reason, index: in.Index, id: in.ID})
	}
}

// flushStops turns the collected stops into one action per reason.
func (a *analyzer) flushStops(appID string, updated time.Time, n int) {
	if len(a.stops) == 0 {
		return
	}
	slices.SortFunc(a.stops, func(x, y stop) int {
		if x.reason != y.reason {
			return int(x.reason) - int(y.reason)
		}
		if x.index != y.index {
			return x.index - y.index
		}
		return cmp.Compare(x.id, y.id)
	})
	for i := 0; i < len(a.stops); {
		j := i
		ids := make([]string, 0, len(a.stops)-i)
		for ; j < len(a.stops) && a.stops[j].reason == a.stops[i].reason; j++ {
			if len(ids) == 0 || ids[len(ids)-1] != a.stops[j].id {
				ids = append(ids, a.stops[j].id)
			}
		}
		r := a.stops[i].reason
		a.out = append(a.out, Action{
			App: appID, Op: OpStop, Reason: r, Instances: ids, LastUpdated: updated,
			Text: stopText(r, len(ids), n),
		})
		i = j
	}
}

func stopText(r Reason, count, desired int) string {
	what := "1 instance"
	if count != 1 {
		what = fmt.Sprintf("%d instances", count)
	}
	switch r {
	case ReasonExtra:
		return fmt.Sprintf("%s at or beyond the %d desired indices", what, desired)
	case ReasonDuplicate:
		return what + " duplicating a healthier instance at the same index"
	case ReasonSuperseded:
		return what + " of an old version; the current version runs at their indices"
	case ReasonAppStopped:
		return what + " of a stopped app"
	case ReasonAppDeleted:
		return what + " of an app that no longer exists"
	}
	return what
}

// orphans stops the live instances of apps the desired state does not know.
func (a *analyzer) orphans(ins []rec) {
	slices.SortFunc(ins, func(x, y rec) int {
		return cmp.Compare(a.actual[x.pos].App, a.actual[y.pos].App)
	})
	for i := 0; i < len(ins); {
		app := a.actual[ins[i].pos].App
		a.stops = a.stops[:0]
		for ; i < len(ins) && a.actual[ins[i].pos].App == app; i++ {
			r := ins[i]
			if r.state.live() && a.now.Sub(a.actual[r.pos].Since) >= a.p.OrphanGrace {
				a.stopOne(ReasonAppDeleted, r)
			}
		}
		a.flushStops(app, time.Time{}, 0)
	}
}

// plural describes a list of indices: "index 3", "indices 1, 4".
func plural(one, many string, idx []int) string {
	var b strings.Builder
	if len(idx) == 1 {
		b.WriteString(one)
	} else {
		b.WriteString(many)
	}
	for i, x := range idx {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %d", x)
	}
	return b.String()
}
