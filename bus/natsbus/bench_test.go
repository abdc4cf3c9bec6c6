package natsbus

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus"
)

// benchSetup is how a benchmark subscribes its handler h.
type benchSetup struct {
	name      string
	subscribe func(b bus.Bus, h bus.Handler) error
	perMsg    int // handler calls per published message
}

var benchSetups = []benchSetup{
	{"1sub", subscribeN(1, ""), 1},
	{"4sub", subscribeN(4, ""), 4},
	{"queue4", subscribeN(4, "workers"), 1},
}

func subscribeN(n int, queue string) func(bus.Bus, bus.Handler) error {
	return func(b bus.Bus, h bus.Handler) error {
		for range n {
			var err error
			if queue == "" {
				_, err = b.Subscribe("bench.deliver", h)
			} else {
				_, err = b.QueueSubscribe("bench.deliver", queue, h)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// benchDeliver publishes b.N 128-byte messages on pub and waits until the
// handlers subscribed on sub by setup have been called for all of them.
// It reports published messages per second.
func benchDeliver(b *testing.B, pub, sub bus.Bus, setup benchSetup) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var got atomic.Int64
	target := int64(b.N * setup.perMsg)
	done := make(chan struct{})
	h := func(*bus.Msg) {
		if got.Add(1) == target {
			close(done)
		}
	}
	if err := setup.subscribe(sub, h); err != nil {
		b.Fatal(err)
	}
	if err := sub.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 128)
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	for range b.N {
		if err := pub.Publish("bench.deliver", payload); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		b.Fatalf("only %d of %d deliveries made", got.Load(), target)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if d := sub.Stats().Dropped; d != 0 {
		b.Fatalf("%d messages dropped", d)
	}
}

// BenchmarkDeliver measures publish to delivery of 128-byte messages
// between two connections through an embedded server on loopback: one
// subscriber, four subscribers, and a queue group of four.
func BenchmarkDeliver(b *testing.B) {
	for _, setup := range benchSetups {
		b.Run(setup.name, func(b *testing.B) {
			srv := RunTestServer(b)
			cfg := testConfig(srv.ClientURL())
			// Throughput, not shedding, is measured: no pending limits.
			cfg.PendingLimits = PendingLimits{Msgs: -1, Bytes: -1}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var conns [2]*Conn
			for i := range conns {
				c, err := Connect(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				conns[i] = c
			}
			benchDeliver(b, conns[0], conns[1], setup)
		})
	}
}

// BenchmarkRequest measures a request/reply round trip through an
// embedded server on loopback.
func BenchmarkRequest(b *testing.B) {
	srv := RunTestServer(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := Connect(ctx, testConfig(srv.ClientURL()))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	server, err := Connect(ctx, testConfig(srv.ClientURL()))
	if err != nil {
		b.Fatal(err)
	}
	defer server.Close()
	if _, err := server.Subscribe("bench.echo", func(m *bus.Msg) { _ = server.Publish(m.Reply, m.Data) }); err != nil {
		b.Fatal(err)
	}
	if err := server.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 128)
	b.ResetTimer()
	for i := range b.N {
		if _, err := client.Request(ctx, "bench.echo", payload); err != nil {
			b.Fatalf("request %d: %v", i, err)
		}
	}
}
