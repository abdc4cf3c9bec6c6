package membus_test

import (
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/membus"
)

// benchDeliver measures publish-to-handler throughput: every message is
// counted when a handler has run for it, not when Publish returns. The
// publisher lets the handlers trail by at most one window, far below the
// pending limit, so nothing is dropped and the figure is sustainable.
func benchDeliver(b *testing.B, subs int, queue string) {
	srv := membus.NewServer(membus.DefaultConfig())
	b.Cleanup(srv.Close)
	c := srv.Connect()
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
			s, err = c.Subscribe("bench.deliver", h)
		} else {
			s, err = c.QueueSubscribe("bench.deliver", queue, h)
		}
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, s)
	}
	payload := make([]byte, 128)
	const window = 1024
	wait := func(n int64) {
		for got.Load() < n*perMsg {
			runtime.Gosched()
		}
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := c.Publish("bench.deliver", payload); err != nil {
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

func BenchmarkDeliver(b *testing.B) {
	for _, subs := range []int{1, 4} {
		b.Run("subs="+strconv.Itoa(subs), func(b *testing.B) { benchDeliver(b, subs, "") })
	}
	b.Run("queue=4", func(b *testing.B) { benchDeliver(b, 4, "workers") })
}

// BenchmarkPublishNoInterest is the cost of publishing on a subject nobody
// listens to, the common case of heartbeats on a quiet bus.
func BenchmarkPublishNoInterest(b *testing.B) {
	c := membus.New()
	b.Cleanup(func() { _ = c.Close() })
	if _, err := c.Subscribe("other.>", func(*bus.Msg) {}); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 128)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Publish("dea.heartbeat", payload); err != nil {
			b.Fatal(err)
		}
	}
}
