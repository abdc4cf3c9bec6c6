package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/controller/store"
)

// DesiredStateApps is the fleet size of the DesiredStates benchmark: the
// health-manager workload the store is sized for.
const DesiredStateApps = 10000

// Benchmark measures the controller's hot paths on a store: creating,
// updating and reading apps, and reading the desired state of
// DesiredStateApps started apps (reported as ms per full read). newStore must
// return a new, empty store each time.
func Benchmark(b *testing.B, newStore func(b *testing.B) store.Store) {
	ctx := context.Background()
	b.Run("CreateApp", func(b *testing.B) {
		s := newStore(b)
		i := 0
		for b.Loop() {
			i++
			if _, err := s.CreateApp(ctx, sampleApp("a@x", fmt.Sprint("app", i), fmt.Sprintf("app%d.com", i))); err != nil {
				b.Fatal(err)
			}
		}
		reportOps(b)
	})
	b.Run("UpdateApp", func(b *testing.B) {
		s := newStore(b)
		a, err := s.CreateApp(ctx, sampleApp("a@x", "web", "web.com"))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			a.Instances = a.Instances%10 + 1
			if a, err = s.UpdateApp(ctx, a); err != nil {
				b.Fatal(err)
			}
		}
		reportOps(b)
	})
	b.Run("GetApp", func(b *testing.B) {
		s := newStore(b)
		a, err := s.CreateApp(ctx, sampleApp("a@x", "web", "web.com"))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := s.GetApp(ctx, a.ID); err != nil {
				b.Fatal(err)
			}
		}
		reportOps(b)
	})
	b.Run("DesiredStates10k", func(b *testing.B) {
		s := newStore(b)
		for i := range DesiredStateApps {
			a := sampleApp("a@x", fmt.Sprint("app", i))
			a.State = store.AppStarted
			if _, err := s.CreateApp(ctx, a); err != nil {
				b.Fatal(err)
			}
		}
		for b.Loop() {
			n := 0
			opts := store.ListOptions{Limit: 1000}
			for {
				p, err := s.DesiredStates(ctx, opts)
				if err != nil {
					b.Fatal(err)
				}
				n += len(p.Items)
				if opts.Cursor = p.Next; p.Next == "" {
					break
				}
			}
			if n != DesiredStateApps {
				b.Fatalf("read %d desired states, want %d", n, DesiredStateApps)
			}
		}
		b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(time.Millisecond), "ms/read")
	})
}

func reportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
