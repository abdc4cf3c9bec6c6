package wardentest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/warden"
)

// BenchLifecycle measures what a DEA waits for when it starts and stops an
// instance: Create, Run of a long-lived process ("sleep 100" through sh's
// vocabulary), then Stop with a generous grace period (the process obeys
// SIGTERM). Destroy runs outside the timed part. Besides ns/op it reports
// the median lifecycle ("median-ns/lifecycle"), less noisy on shared
// machines.
func BenchLifecycle(b *testing.B, backend warden.Backend) {
	ctx := context.Background()
	var durs []time.Duration
	for b.Loop() {
		start := time.Now()
		c, err := backend.Create(ctx, warden.ContainerSpec{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Run(ctx, sh("sleep 100"), warden.ProcessIO{}); err != nil {
			b.Fatal(err)
		}
		if err := c.Stop(ctx, 10*time.Second); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(start))
		b.StopTimer()
		if err := backend.Destroy(ctx, c.Handle()); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	if len(durs) > 0 {
		slices.Sort(durs)
		b.ReportMetric(float64(durs[len(durs)/2].Nanoseconds()), "median-ns/lifecycle")
	}
}
