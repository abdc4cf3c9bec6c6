package drift

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var (
	now     = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	updated = now.Add(-time.Hour)
)

func started(id, version string, n int) App {
	return App{ID: id, Version: version, Instances: n, State: AppStarted, UpdatedAt: updated}
}

// inst returns a fresh instance; ago is how long it has been in its state.
func inst(app, version string, index int, id string, state InstanceState, ago time.Duration) Instance {
	return Instance{App: app, Version: version, Index: index, ID: id, State: state, DEA: "dea-1",
		Since: now.Add(-ago), LastSeen: now.Add(-5 * time.Second)}
}

// brief is an Action without its Text, for compact expectations.
type brief struct {
	App       string
	Op        Op
	Reason    Reason
	Indices   []int
	Instances []string
	Flapping  bool
}

func briefs(as []Action) []brief {
	var out []brief
	for _, a := range as {
		out = append(out, brief{a.App, a.Op, a.Reason, a.Indices, a.Instances, a.Flapping})
	}
	return out
}

func TestAnalyze(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	tests := []struct {
		name    string
		desired []App
		actual  []Instance
		history func(h *History)
		want    []brief
	}{
		{
			name:    "converged",
			desired: []App{started("a", "v1", 2)},
			actual:  []Instance{inst("a", "v1", 0, "i0", Running, time.Hour), inst("a", "v1", 1, "i1", Starting, time.Second)},
		},
		{
			name:    "missing indices",
			desired: []App{started("a", "v1", 3)},
			actual:  []Instance{inst("a", "v1", 1, "i1", Running, time.Hour)},
			want:    []brief{{App: "a", Op: OpStart, Reason: ReasonMissing, Indices: []int{0, 2}}},
		},
		{
			name:    "stale heartbeat is gone",
			desired: []App{started("a", "v1", 1)},
			actual: []Instance{func() Instance {
				i := inst("a", "v1", 0, "i0", Running, time.Hour)
				i.LastSeen = now.Add(-31 * time.Second)
				return i
			}()},
			want: []brief{{App: "a", Op: OpStart, Reason: ReasonMissing, Indices: []int{0}}},
		},
		{
			name:    "extra indices",
			desired: []App{started("a", "v1", 1)},
			actual: []Instance{
				inst("a", "v1", 0, "i0", Running, time.Hour), inst("a", "v1", 2, "i2", Running, time.Hour),
				inst("a", "v1", 1, "i1", Starting, time.Hour), inst("a", "v1", 3, "i3", Crashed, time.Hour),
			},
			want: []brief{{App: "a", Op: OpStop, Reason: ReasonExtra, Instances: []string{"i1", "i2"}}},
		},
		{
			name:    "duplicate keeps the oldest running",
			desired: []App{started("a", "v1", 1)},
			actual: []Instance{
				inst("a", "v1", 0, "young", Running, time.Minute), inst("a", "v1", 0, "old", Running, time.Hour),
				inst("a", "v1", 0, "starting", Starting, 2*time.Hour),
			},
			want: []brief{{App: "a", Op: OpStop, Reason: ReasonDuplicate, Instances: []string{"starting", "young"}}},
		},
		{
			name:    "rolling update waits for the new version to run",
			desired: []App{started("a", "v2", 3)},
			actual: []Instance{
				inst("a", "v1", 0, "old0", Running, time.Hour), inst("a", "v2", 0, "new0", Running, time.Minute),
				inst("a", "v1", 1, "old1", Running, time.Hour), inst("a", "v2", 1, "new1", Starting, time.Second),
				inst("a", "v1", 2, "old2", Running, time.Hour),
				inst("a", "v1", 3, "old3", Running, time.Hour),
			},
			want: []brief{
				{App: "a", Op: OpStart, Reason: ReasonMissing, Indices: []int{2}},
				{App: "a", Op: OpStop, Reason: ReasonExtra, Instances: []string{"old3"}},
				{App: "a", Op: OpStop, Reason: ReasonSuperseded, Instances: []string{"old0"}},
			},
		},
		{
			name:    "stopped app",
			desired: []App{{ID: "a", Version: "v1", Instances: 2, State: AppStopped, UpdatedAt: updated}},
			actual: []Instance{
				inst("a", "v1", 0, "i0", Running, time.Hour), inst("a", "v0", 5, "i5", Starting, time.Hour),
				inst("a", "v1", 1, "i1", Crashed, time.Hour),
			},
			want: []brief{{App: "a", Op: OpStop, Reason: ReasonAppStopped, Instances: []string{"i0", "i5"}}},
		},
		{
			name:    "deleted app after the orphan grace",
			desired: []App{started("a", "v1", 1)},
			actual: []Instance{
				inst("a", "v1", 0, "i0", Running, time.Hour),
				inst("gone", "v1", 0, "g0", Running, time.Hour), inst("gone", "v1", 1, "g1", Running, time.Minute),
				inst("b-gone", "v1", 0, "b0", Starting, time.Hour),
			},
			want: []brief{
				{App: "b-gone", Op: OpStop, Reason: ReasonAppDeleted, Instances: []string{"b0"}},
				{App: "gone", Op: OpStop, Reason: ReasonAppDeleted, Instances: []string{"g0"}},
			},
		},
		{
			name: "grace window after an update",
			desired: []App{{ID: "a", Version: "v2", Instances: 3, State: AppStarted, UpdatedAt: now.Add(-10 * time.Second)},
				{ID: "b", Version: "v1", State: AppStopped, UpdatedAt: now.Add(-time.Second)}},
			actual: []Instance{inst("a", "v1", 0, "i0", Running, time.Hour), inst("b", "v1", 0, "b0", Running, time.Hour)},
		},
		{
			name:    "crashed restarts at once",
			desired: []App{started("a", "v1", 2)},
			actual:  []Instance{inst("a", "v1", 0, "c0", Crashed, time.Second), inst("a", "v1", 1, "i1", Running, time.Hour)},
			history: func(h *History) { h.RecordCrash("a", "v1", 0, "c0", now.Add(-time.Second)) },
			want:    []brief{{App: "a", Op: OpStart, Reason: ReasonCrashed, Indices: []int{0}}},
		},
		{
			name:    "crashed without history restarts at once",
			desired: []App{started("a", "v1", 1)},
			actual:  []Instance{inst("a", "v1", 0, "c0", Crashed, time.Second)},
			want:    []brief{{App: "a", Op: OpStart, Reason: ReasonCrashed, Indices: []int{0}}},
		},
		{
			name:    "flapping waits for its backoff",
			desired: []App{started("a", "v1", 2)},
			history: func(h *History) {
				for i := 0; i < 5; i++ { // 5 crashes: backoff 60 s
					h.RecordCrash("a", "v1", 0, fmt.Sprint("x", i), now.Add(-time.Duration(50-i)*time.Second))
					h.RecordCrash("a", "v1", 1, fmt.Sprint("y", i), now.Add(-time.Duration(100-i)*time.Second))
				}
			},
			want: []brief{{App: "a", Op: OpStart, Reason: ReasonCrashed, Indices: []int{1}, Flapping: true}},
		},
		{
			name:    "crashes of an old version do not count",
			desired: []App{started("a", "v2", 1)},
			history: func(h *History) {
				for i := 0; i < 8; i++ {
					h.RecordCrash("a", "v1", 0, fmt.Sprint("x", i), now.Add(-time.Second))
				}
			},
			want: []brief{{App: "a", Op: OpStart, Reason: ReasonMissing, Indices: []int{0}}},
		},
		{
			name:    "never starts a starting index",
			desired: []App{started("a", "v1", 1)},
			actual:  []Instance{inst("a", "v1", 0, "s0", Starting, time.Minute), inst("a", "v1", 0, "c0", Crashed, time.Hour)},
		},
		{
			name:    "recently sent requests are not repeated",
			desired: []App{started("a", "v1", 2), started("b", "v1", 0)},
			actual:  []Instance{inst("b", "v1", 0, "b0", Running, time.Hour), inst("b", "v1", 1, "b1", Running, time.Hour)},
			history: func(h *History) {
				h.RecordSent(now.Add(-10*time.Second), []Action{
					{App: "a", Op: OpStart, Indices: []int{0}}, {App: "b", Op: OpStop, Instances: []string{"b0"}},
				})
				h.RecordSent(now.Add(-40*time.Second), []Action{{App: "a", Op: OpStart, Indices: []int{1}}})
			},
			want: []brief{
				{App: "a", Op: OpStart, Reason: ReasonMissing, Indices: []int{1}},
				{App: "b", Op: OpStop, Reason: ReasonExtra, Instances: []string{"b1"}},
			},
		},
		{
			name:    "give up after too many crashes",
			desired: []App{started("a", "v1", 1)},
			history: func(h *History) {
				for i := 0; i < 12; i++ {
					h.RecordCrash("a", "v1", 0, fmt.Sprint("x", i), now.Add(-10*time.Minute+time.Duration(i)*time.Second))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := NewHistory()
			if tt.history != nil {
				tt.history(h)
			}
			p := p
			if tt.name == "give up after too many crashes" {
				p.GiveUpAfter = 10
			}
			got := Analyze(p, tt.desired, tt.actual, h, now)
			if diff := cmp.Diff(tt.want, briefs(got), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
			for _, a := range got {
				if a.Text == "" {
					t.Errorf("action without text: %+v", a)
				}
				if a.Reason != ReasonAppDeleted && !a.LastUpdated.Equal(updated) {
					t.Errorf("LastUpdated = %v, want the app's UpdatedAt", a.LastUpdated)
				}
			}
			if again := Analyze(p, tt.desired, tt.actual, h, now); !cmp.Equal(got, again) {
				t.Errorf("second analysis differs: %v", cmp.Diff(got, again))
			}
		})
	}
}

func TestAnalyzeStartCarriesVersion(t *testing.T) {
	t.Parallel()
	got := Analyze(DefaultPolicy(), []App{started("a", "v9", 1)}, nil, nil, now)
	want := []Action{{App: "a", Op: OpStart, Reason: ReasonMissing, Version: "v9", Indices: []int{0},
		LastUpdated: updated, Text: "no instance of version v9 at index 0 of 1 desired"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	want := []time.Duration{0, 0, 0, 0, 30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute,
		8 * time.Minute, 16 * time.Minute, 16 * time.Minute}
	for n, w := range want {
		if got := p.Backoff(n); got != w {
			t.Errorf("Backoff(%d) = %v, want %v", n, got, w)
		}
		if got := p.Flapping(n); got != (n > 3) {
			t.Errorf("Flapping(%d) = %v", n, got)
		}
	}
}

func TestStreakResets(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	h := NewHistory()
	h.RecordCrash("a", "v1", 0, "x0", now.Add(-3*time.Hour)) // too long before the next
	for i := 1; i <= 5; i++ {
		h.RecordCrash("a", "v1", 0, fmt.Sprint("x", i), now.Add(-time.Duration(10-i)*time.Minute))
	}
	if h.RecordCrash("a", "v1", 0, "x5", now) {
		t.Errorf("a crash already recorded counted again")
	}
	n, first, last := h.ring("a", 0).streak(&p, "v1", now)
	if n != 5 || !first.Equal(now.Add(-9*time.Minute)) || !last.Equal(now.Add(-5*time.Minute)) {
		t.Errorf("streak = %d %v %v", n, first, last)
	}
	if n, _, _ := h.ring("a", 0).streak(&p, "v1", now.Add(time.Hour)); n != 0 {
		t.Errorf("streak an hour later = %d, want forgotten", n)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	h := NewHistory()
	for i := 0; i < 5; i++ {
		h.RecordCrash("a", "v1", 2, fmt.Sprint("f", i), now.Add(-time.Duration(10-i)*time.Minute))
	}
	h.RecordCrash("a", "v1", 0, "once", now.Add(-time.Minute))
	h.RecordCrash("a", "v0", 1, "ancient", now.Add(-2*time.Hour))
	got := h.Status(p, "a", "v1", now)
	want := Status{
		Flapping: []FlappingIndex{{Index: 2, Since: now.Add(-10 * time.Minute), Crashes: 5, NextRestart: now.Add(-6*time.Minute + time.Minute)}},
		Crashed: []CrashedInstance{
			{ID: "once", Index: 0, At: now.Add(-time.Minute)},
			{ID: "f4", Index: 2, At: now.Add(-6 * time.Minute)}, {ID: "f3", Index: 2, At: now.Add(-7 * time.Minute)},
			{ID: "f2", Index: 2, At: now.Add(-8 * time.Minute)}, {ID: "f1", Index: 2, At: now.Add(-9 * time.Minute)},
			{ID: "f0", Index: 2, At: now.Add(-10 * time.Minute)},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Status (-want +got):\n%s", diff)
	}
	if s := (*History)(nil).Status(p, "a", "v1", now); s.Flapping != nil || s.Crashed != nil {
		t.Errorf("nil history status = %+v", s)
	}
}

func TestPruneKeepsAnalysis(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	h := NewHistory()
	h.RecordCrash("a", "v1", 0, "old", now.Add(-time.Hour))
	h.RecordCrash("a", "v1", 1, "new", now.Add(-time.Second))
	h.RecordSent(now.Add(-time.Minute), []Action{{App: "a", Op: OpStart, Indices: []int{3}}, {App: "a", Op: OpStop, Instances: []string{"z"}}})
	desired := []App{started("a", "v1", 4)}
	before := Analyze(p, desired, nil, h, now)
	h.Prune(p, now)
	if len(h.crashes["a"]) != 1 || len(h.starts) != 0 || len(h.stops) != 0 {
		t.Errorf("Prune kept %v %v %v", h.crashes, h.starts, h.stops)
	}
	if diff := cmp.Diff(before, Analyze(p, desired, nil, h, now)); diff != "" {
		t.Errorf("Prune changed the analysis:\n%s", diff)
	}
	h.Forget("a")
	if len(h.crashes) != 0 {
		t.Errorf("Forget kept crashes")
	}
}

func TestPolicyValidate(t *testing.T) {
	t.Parallel()
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
	for i, mutate := range []func(*Policy){
		func(p *Policy) { p.HeartbeatTTL = 0 },
		func(p *Policy) { p.Grace = -1 },
		func(p *Policy) { p.ImmediateRestarts = -1 },
		func(p *Policy) { p.MaxBackoff = p.MinBackoff - 1 },
		func(p *Policy) { p.CrashMemory = 0 },
	} {
		p := DefaultPolicy()
		mutate(&p)
		if err := p.Validate(); !errors.Is(err, ErrInvalidPolicy) {
			t.Errorf("case %d: %v", i, err)
		}
	}
}

func TestStrings(t *testing.T) {
	t.Parallel()
	got := []string{AppStarted.String(), AppStopped.String(), AppState(9).String(), Starting.String(), Running.String(),
		Crashed.String(), Stopped.String(), InstanceState(9).String(), OpStart.String(), OpStop.String(), Op(9).String(),
		ReasonSuperseded.String(), Reason(0).String()}
	want := []string{"STARTED", "STOPPED", "AppState(9)", "STARTING", "RUNNING", "CRASHED", "STOPPED", "InstanceState(9)",
		"START", "STOP", "Op(9)", "superseded", "reason(0)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Error(diff)
	}
}

func TestCrashRingOrderAndCapacity(t *testing.T) {
	t.Parallel()
	h := NewHistory()
	for i := 0; i < ringSize; i++ {
		h.RecordCrash("a", "v1", 0, fmt.Sprint("x", i), now.Add(-time.Duration(ringSize-i)*time.Minute))
	}
	// Reported again after being pushed out: forgotten, not counted.
	h.RecordCrash("a", "v1", 0, "newest", now)
	if h.RecordCrash("a", "v1", 0, "x0", now.Add(-time.Duration(ringSize)*time.Minute)) {
		t.Errorf("a crash older than a full ring was recorded")
	}
	// Out of order but recent: inserted in time order.
	if !h.RecordCrash("a", "v1", 0, "late", now.Add(-90*time.Second)) {
		t.Fatalf("recent crash not recorded")
	}
	r := h.ring("a", 0)
	for i := 1; i < r.n; i++ {
		if r.entries[i].at.Before(r.entries[i-1].at) {
			t.Fatalf("ring out of order at %d", i)
		}
	}
	p := DefaultPolicy()
	if n, _, last := r.streak(&p, "v1", now); n != ringSize || !last.Equal(now) {
		t.Errorf("streak = %d, last %v", n, last)
	}
}
