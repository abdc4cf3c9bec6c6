package drift

import (
	"fmt"
	"testing"
	"time"
)

// FuzzAnalyze builds small desired and actual states from the fuzzer's bytes
// and checks Analyze's invariants on them: it is idempotent, never starts an
// index that has a live instance of the app's version, never stops the last
// RUNNING instance of a desired index, and only emits well-formed actions.
func FuzzAnalyze(f *testing.F) {
	f.Add([]byte{3, 1, 0, 2, 0, 1, 1, 0, 0, 1, 2, 3, 2, 1, 0, 1, 5, 0})
	f.Add([]byte{1, 0, 4, 0, 0, 0, 2, 3, 3, 0, 0, 1, 0, 0, 9, 9, 9, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() int {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return int(b)
		}
		p := DefaultPolicy()
		var desired []App
		for i, n := 0, next()%5; i < n; i++ {
			a := App{ID: fmt.Sprint("a", next()%4), Version: fmt.Sprint("v", next()%2), Instances: next() % 4,
				State: AppState(1 + next()%2), UpdatedAt: now.Add(-time.Duration(next()%4) * 20 * time.Second)}
			desired = append(desired, a)
		}
		var actual []Instance
		for i := 0; len(data) >= 6; i++ {
			in := Instance{App: fmt.Sprint("a", next()%5), Version: fmt.Sprint("v", next()%2), Index: next()%6 - 1,
				ID: fmt.Sprint("i", i), State: InstanceState(next() % 5)}
			in.Since = now.Add(-time.Duration(next()%4) * time.Minute)
			in.LastSeen = now.Add(-time.Duration(next()%5) * 10 * time.Second)
			actual = append(actual, in)
		}
		h := NewHistory()
		h.RecordCrash("a1", "v1", 0, "c", now.Add(-time.Minute))
		got := Analyze(p, desired, actual, h, now)
		if again := Analyze(p, desired, actual, h, now); fmt.Sprint(got) != fmt.Sprint(again) {
			t.Fatalf("not idempotent")
		}
		checkInvariants(t, p, desired, actual, got)
	})
}

func checkInvariants(t *testing.T, p Policy, desired []App, actual []Instance, actions []Action) {
	apps := map[string]App{}
	for _, a := range desired {
		if _, dup := apps[a.ID]; !dup {
			apps[a.ID] = a
		}
	}
	fresh := func(in Instance) bool { return now.Sub(in.LastSeen) <= p.HeartbeatTTL }
	stopped := map[string]bool{}
	for _, a := range actions {
		if (a.Op == OpStart) == (len(a.Indices) == 0) || (a.Op == OpStop) == (len(a.Instances) == 0) {
			t.Fatalf("malformed action %+v", a)
		}
		for _, id := range a.Instances {
			stopped[id] = true
		}
		for _, i := range a.Indices {
			for _, in := range actual {
				if fresh(in) && in.App == a.App && in.Index == i && in.Version == a.Version && in.State.live() {
					t.Fatalf("started index %d of %s, which has live %s", i, a.App, in.ID)
				}
			}
		}
	}
	type key struct {
		app   string
		index int
	}
	left := map[key]bool{}
	for _, in := range actual {
		if fresh(in) && in.State == Running && !stopped[in.ID] {
			left[key{in.App, in.Index}] = true
		}
	}
	for _, in := range actual {
		a, ok := apps[in.App]
		if ok && a.State == AppStarted && in.Index >= 0 && in.Index < a.Instances && fresh(in) &&
			in.State == Running && stopped[in.ID] && !left[key{in.App, in.Index}] {
			t.Fatalf("stopped %s, the last running instance of %s index %d", in.ID, in.App, in.Index)
		}
	}
}
