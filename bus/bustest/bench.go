package bustest

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus"
)

// BenchDeliver measures publish-to-handler throughput of 128-byte messages
// published on pub and handled by subs subscribers on sub (members of one
// queue group when queue is set, so each message is handled once). Every
// message is counted when a handler has run for it, not when Publish
// returns; the publisher lets the handlers trail by at most one window,
// well below any pending limit, so the figure is sustainable and nothing is
// dropped. It reports msgs/s and fails if a message was lost.
func BenchDeliver(b *testing.B, pub, sub bus.Bus, subs int, queue string) {
	var got atomic.Int64
	h := func(*bus.Msg) { got.Add(1) }
	perMsg := int64(subs)
	if queue != "" {
		perMsg = 1
	}
	var all []bus.Subscription
	for range subs {
		var s bus.Subscription
		var err error
		if queue == "" {
			s, err = sub.Subscribe("bench.deliver", h)
		} else {
			s, err = sub.QueueSubscribe("bench.deliver", queue, h)
		}
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, s)
	}
	b.Cleanup(func() {
		for _, s := range all {
			_ = s.Unsubscribe()
		}
	})
	// A remote bus needs the subscriptions to reach the server first.
	if err := sub.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 128)
	const window = 1024
	wait := func(n int64) {
		deadline := time.Now().Add(30 * time.Second)
		for got.Load() < n*perMsg {
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d deliveries arrived", got.Load(), n*perMsg)
			}
			runtime.Gosched()
		}
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := pub.Publish("bench.deliver", payload); err != nil {
			b.Fatal(err)
		}
		if i%window == window-1 {
			wait(int64(i + 1 - window))
		}
	}
	wait(int64(b.N))
	b.StopTimer()
	var dropped uint64
	for _, s := range all {
		dropped += s.Dropped()
	}
	if dropped != 0 {
		b.Fatalf("%d messages dropped", dropped)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
