package membus_test

import (
	"strconv"
	"testing"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/bustest"
	"github.com/kiln-paas/kiln/bus/membus"
)

// benchDeliver runs the shared delivery benchmark on one connection to a
// fresh server, publisher and subscribers alike.
func benchDeliver(b *testing.B, subs int, queue string) {
	srv := membus.NewServer(membus.DefaultConfig())
	b.Cleanup(srv.Close)
	c := srv.Connect()
	bustest.BenchDeliver(b, c, c, subs, queue)
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
