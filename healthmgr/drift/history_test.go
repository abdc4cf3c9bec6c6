package drift

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// historyState lets cmp look into a History.
var historyState = cmp.AllowUnexported(History{}, crashRing{}, crashEntry{}, indexKey{})

// sampleHistory has crashes of two apps, a sent START and a sent STOP.
func sampleHistory() *History {
	h := NewHistory()
	h.RecordCrash("a", "v1", 0, "a-0", now.Add(-3*time.Minute))
	h.RecordCrash("a", "v1", 0, "a-1", now.Add(-2*time.Minute))
	h.RecordCrash("a", "v1", 2, "a-2", now.Add(-time.Minute))
	h.RecordCrash("b", "v2", 1, "b-0", now.Add(-time.Minute))
	h.RecordSent(now.Add(-10*time.Second), []Action{
		{App: "a", Op: OpStart, Indices: []int{1}},
		{App: "b", Op: OpStop, Instances: []string{"b-9"}},
	})
	return h
}

func TestHistoryClone(t *testing.T) {
	p := DefaultPolicy()
	desired := []App{started("a", "v1", 3), started("b", "v2", 2)}
	actual := []Instance{
		inst("a", "v1", 0, "a-1", Crashed, 2*time.Minute),
		inst("a", "v1", 2, "a-2", Crashed, time.Minute),
		inst("b", "v2", 1, "b-0", Crashed, time.Minute),
		inst("b", "v2", 0, "b-8", Running, time.Hour),
		inst("b", "v2", 0, "b-9", Running, 2*time.Hour),
	}
	for _, tc := range []struct {
		name   string
		change func(*History)
	}{
		{"crash", func(h *History) { h.RecordCrash("a", "v1", 0, "a-3", now) }},
		{"crash of a new app", func(h *History) { h.RecordCrash("c", "v1", 0, "c-0", now) }},
		{"sent", func(h *History) {
			h.RecordSent(now, []Action{{App: "a", Op: OpStart, Indices: []int{0, 2}}, {App: "b", Op: OpStop, Instances: []string{"b-8"}}})
		}},
		{"forget", func(h *History) { h.Forget("a") }},
		{"prune", func(h *History) { h.Prune(p, now.Add(time.Hour)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, cloneChanges := range []bool{true, false} {
				orig := sampleHistory()
				clone := orig.Clone()
				if diff := cmp.Diff(orig, clone, historyState); diff != "" {
					t.Fatalf("clone differs from the original (-orig +clone):\n%s", diff)
				}
				changed, kept := clone, orig
				if !cloneChanges {
					changed, kept = orig, clone
				}
				before := Analyze(p, desired, actual, kept, now)
				tc.change(changed)
				if cmp.Equal(changed, sampleHistory(), historyState) {
					t.Fatal("the change changed nothing: the test cannot fail")
				}
				if diff := cmp.Diff(sampleHistory(), kept, historyState); diff != "" {
					t.Errorf("changing the clone=%v changed the other (-want +got):\n%s", cloneChanges, diff)
				}
				if diff := cmp.Diff(before, Analyze(p, desired, actual, kept, now)); diff != "" {
					t.Errorf("analysis of the unchanged history changed (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestHistoryCloneNilAndEmpty(t *testing.T) {
	var nilHist *History
	if nilHist.Clone() != nil {
		t.Error("Clone of nil is not nil")
	}
	c := NewHistory().Clone()
	c.RecordCrash("a", "v1", 0, "a-0", now)
	c.RecordSent(now, []Action{{App: "a", Op: OpStart, Indices: []int{0}}, {App: "a", Op: OpStop, Instances: []string{"x"}}})
	if diff := cmp.Diff(c, c.Clone(), historyState); diff != "" {
		t.Errorf("clone of a clone differs:\n%s", diff)
	}
}

func TestHistoryUnsent(t *testing.T) {
	p := DefaultPolicy()
	h := NewHistory()
	h.RecordSent(now.Add(-time.Second), []Action{
		{App: "a", Op: OpStart, Indices: []int{1, 3}},
		{App: "a", Op: OpStop, Instances: []string{"x"}},
	})
	h.RecordSent(now.Add(-p.RetryAfter), []Action{{App: "b", Op: OpStart, Indices: []int{0}}}) // expired
	h.RecordSent(now.Add(time.Second), []Action{{App: "c", Op: OpStart, Indices: []int{0}}})   // by a later pass
	start := func(app string, idx ...int) Action {
		return Action{App: app, Op: OpStart, Reason: ReasonMissing, Version: "v1", Indices: idx}
	}
	stop := func(app string, ids ...string) Action {
		return Action{App: app, Op: OpStop, Reason: ReasonExtra, Instances: ids}
	}
	for _, tc := range []struct {
		name     string
		in, want []Action
	}{
		{"nothing sent", []Action{start("d", 0), stop("d", "y")}, []Action{start("d", 0), stop("d", "y")}},
		{"some indices sent", []Action{start("a", 0, 1, 2, 3)}, []Action{start("a", 0, 2)}},
		{"all indices sent", []Action{start("a", 1, 3), start("d", 0)}, []Action{start("d", 0)}},
		{"instances sent", []Action{stop("a", "w", "x", "z")}, []Action{stop("a", "w", "z")}},
		{"all instances sent", []Action{stop("a", "x")}, nil},
		{"sent too long ago", []Action{start("b", 0)}, []Action{start("b", 0)}},
		{"sent after now", []Action{start("c", 0, 1)}, []Action{start("c", 1)}},
		{"other app's index", []Action{start("d", 1, 3)}, []Action{start("d", 1, 3)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := cloneActions(tc.in)
			got := h.Unsent(p, now, tc.in)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Unsent (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(in, tc.in); diff != "" {
				t.Errorf("Unsent changed its input:\n%s", diff)
			}
		})
	}
	var nilHist *History
	in := []Action{start("a", 1)}
	if diff := cmp.Diff(in, nilHist.Unsent(p, now, in)); diff != "" {
		t.Errorf("nil history dropped actions:\n%s", diff)
	}
}

func cloneActions(as []Action) []Action {
	out := make([]Action, len(as))
	for i, a := range as {
		a.Indices = append([]int(nil), a.Indices...)
		a.Instances = append([]string(nil), a.Instances...)
		out[i] = a
	}
	return out
}
