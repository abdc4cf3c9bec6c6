package driftsim

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/healthmgr/drift"
)

// testConfig shortens the backoff so that a run stays short.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Policy.MinBackoff = 10 * time.Second
	cfg.Policy.MaxBackoff = 40 * time.Second
	cfg.Policy.CrashMemory = 80 * time.Second
	return cfg
}

// variant varies the world by seed: a third are flaky (instances crash
// often, so indices flap and back off), a third have a slow controller and
// DEAs that come and go (so requests overlap and duplicates appear).
func variant(seed int) Config {
	cfg := testConfig()
	switch seed % 3 {
	case 1:
		cfg.CrashProb = 0.3
	case 2:
		cfg.MaxActionDelay = 4
		cfg.DEALossProb = 0.05
		cfg.ChangeProb = 0.05
	}
	return cfg
}

// TestProperties runs many chaotic worlds and checks, every round, that
// analysis is idempotent and never stops the last running instance of a
// desired index, and that each world converges within its bound once the
// chaos ends, then stays quiet.
func TestProperties(t *testing.T) {
	t.Parallel()
	seeds := 60
	if testing.Short() {
		seeds = 15
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			t.Parallel()
			cfg := variant(seed)
			w, err := New(cfg, rand.New(rand.NewPCG(uint64(seed), 99)))
			if err != nil {
				t.Fatal(err)
			}
			deadline := cfg.ChaosRounds + cfg.ConvergenceBound()
			converged := -1
			for w.Round() < deadline+5 {
				w.Advance()
				actual, now := w.Actual(), w.Now()
				actions := drift.Analyze(cfg.Policy, w.Desired(), actual, w.History(), now)
				if again := drift.Analyze(cfg.Policy, w.Desired(), actual, w.History(), now); !cmp.Equal(actions, again) {
					t.Fatalf("round %d: not idempotent:\n%s", w.Round(), cmp.Diff(actions, again))
				}
				if msg := lastRunningStopped(cfg.Policy, w.Desired(), actual, actions, now); msg != "" {
					t.Fatalf("round %d: %s", w.Round(), msg)
				}
				w.Submit(actions)
				ok, why := w.Converged()
				switch {
				case w.Round() <= cfg.ChaosRounds:
				case ok && converged < 0:
					converged = w.Round()
				case converged >= 0 && (!ok || len(actions) > 0):
					t.Fatalf("round %d: diverged after converging at %d: %s %v", w.Round(), converged, why, actions)
				case !ok && w.Round() > deadline:
					t.Fatalf("not converged %d rounds after chaos (bound %d): %s", w.Round()-cfg.ChaosRounds, cfg.ConvergenceBound(), why)
				}
			}
		})
	}
}

// lastRunningStopped returns a description of the first STOP that takes
// away the last fresh RUNNING instance of an index a started app desires.
func lastRunningStopped(p drift.Policy, desired []drift.App, actual []drift.Instance, actions []drift.Action, now time.Time) string {
	stopped := map[string]bool{}
	for _, a := range actions {
		if a.Op == drift.OpStop {
			for _, id := range a.Instances {
				stopped[id] = true
			}
		}
	}
	type key struct {
		app   string
		index int
	}
	survivors := map[key]int{}
	for _, in := range actual {
		if in.State == drift.Running && now.Sub(in.LastSeen) <= p.HeartbeatTTL && !stopped[in.ID] {
			survivors[key{in.App, in.Index}]++
		}
	}
	apps := map[string]drift.App{}
	for _, a := range desired {
		apps[a.ID] = a
	}
	for _, in := range actual {
		a, ok := apps[in.App]
		if !stopped[in.ID] || in.State != drift.Running || !ok || a.State != drift.AppStarted || in.Index >= a.Instances {
			continue
		}
		if survivors[key{in.App, in.Index}] == 0 {
			return fmt.Sprintf("stopped %s, the last running instance of %s index %d", in.ID, in.App, in.Index)
		}
	}
	return ""
}

func TestWorldIsReproducible(t *testing.T) {
	t.Parallel()
	run := func() []drift.Action {
		w, err := New(testConfig(), rand.New(rand.NewPCG(5, 5)))
		if err != nil {
			t.Fatal(err)
		}
		var all []drift.Action
		for range 40 {
			all = append(all, w.Step().Actions...)
		}
		return all
	}
	if a, b := run(), run(); !cmp.Equal(a, b) {
		t.Fatalf("two runs from one seed differ:\n%s", cmp.Diff(a, b))
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for name, mutate := range map[string]func(*Config){
		"policy": func(c *Config) { c.Policy.HeartbeatTTL = 0 },
		"deas":   func(c *Config) { c.DEAs = 0 },
		"round":  func(c *Config) { c.Round = 0 },
	} {
		c := DefaultConfig()
		mutate(&c)
		if _, err := New(c, rand.New(rand.NewPCG(1, 1))); err == nil {
			t.Errorf("%s: New accepted an invalid config", name)
		}
	}
}

// TestVariantsExercisePolicies checks that the worlds above reach the
// behaviour they are meant to test, so the properties are not vacuous.
func TestVariantsExercisePolicies(t *testing.T) {
	t.Parallel()
	counts := map[string]int{}
	for seed := range 6 {
		cfg := variant(seed)
		w, err := New(cfg, rand.New(rand.NewPCG(uint64(seed), 99)))
		if err != nil {
			t.Fatal(err)
		}
		for w.Round() < cfg.ChaosRounds+cfg.ConvergenceBound() {
			for _, a := range w.Step().Actions {
				counts[a.Reason.String()]++
				if a.Flapping {
					counts["flapping"]++
				}
			}
		}
	}
	for _, r := range []string{"missing", "crashed", "flapping", "extra", "duplicate", "superseded", "app-stopped", "app-deleted"} {
		if counts[r] == 0 {
			t.Errorf("no %s actions in the variant worlds: %v", r, counts)
		}
	}
}
