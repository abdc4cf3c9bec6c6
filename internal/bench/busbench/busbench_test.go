// Package busbench compares the bus implementations in one run: membus in
// process and natsbus over an embedded nats-server on loopback, with the
// same workload (bustest.BenchDeliver). Run it with
//
//	go test -run '^$' -bench . ./internal/bench/busbench/
package busbench

import (
	"context"
	"strconv"
	"testing"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/bustest"
	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/bus/natsbus"
)

type pair func(b *testing.B) (pub, sub bus.Bus)

func memPair(b *testing.B) (bus.Bus, bus.Bus) {
	cfg := membus.DefaultConfig()
	srv := membus.NewServer(cfg)
	b.Cleanup(srv.Close)
	return srv.Connect(), srv.Connect()
}

func natsPair(b *testing.B) (bus.Bus, bus.Bus) {
	srv := natsbus.RunTestServer(b)
	conn := func() bus.Bus {
		cfg := natsbus.DefaultConfig()
		cfg.URLs = []string{srv.ClientURL()}
		cfg.PendingLimits = natsbus.PendingLimits{Msgs: -1, Bytes: -1}
		c, err := natsbus.Connect(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	return conn(), conn()
}

func BenchmarkDeliver(b *testing.B) {
	for _, impl := range []struct {
		name string
		pair pair
	}{{"membus", memPair}, {"natsbus", natsPair}} {
		for _, subs := range []int{1, 4} {
			b.Run(impl.name+"/subs="+strconv.Itoa(subs), func(b *testing.B) {
				pub, sub := impl.pair(b)
				bustest.BenchDeliver(b, pub, sub, subs, "")
			})
		}
		b.Run(impl.name+"/queue=4", func(b *testing.B) {
			pub, sub := impl.pair(b)
			bustest.BenchDeliver(b, pub, sub, 4, "workers")
		})
	}
}
