package dea_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/fake"
)

// benchWorld is a DEA on membus and warden/fake with a cached droplet.
func benchWorld(b *testing.B) (bus.Bus, *fake.Backend, *node, testDroplet, *recorder, *recorder) {
	bb := newMemBus().Connect()
	b.Cleanup(func() { _ = bb.Close() })
	backend := newFake(b, fake.DefaultConfig())
	fetcher := newMapFetcher()
	dr := packDroplet(b, "./server", map[string]string{"server": "x"})
	fetcher.add("http://cc/d", dr.data)
	cfg := testConfig(b)
	cfg.MemoryMB = 1 << 20
	cfg.HealthCheckInterval = 5 * time.Millisecond
	n := runDEA(b, bb, cfg, dea.Deps{Backend: backend, Fetcher: fetcher})
	return bb, backend, n, dr, record(b, bb, protocol.RouterRegister), record(b, bb, protocol.RouterUnregister)
}

// BenchmarkStartToRunning measures a droplet-cached start, from the start
// message to router.register, on membus and warden/fake.
func BenchmarkStartToRunning(b *testing.B) {
	bb, _, n, dr, regs, _ := benchWorld(b)
	publish(b, bb, protocol.DEAStartSubject(n.dea.ID()), startMsg("warm", 0, dr, "http://cc/d", "warm.kiln.test"))
	regs.wait("warm-up", 10*time.Second, func(*bus.Msg) bool { return true })
	b.ResetTimer()
	for i := range b.N {
		cursor := regs.len()
		publish(b, bb, protocol.DEAStartSubject(n.dea.ID()), startMsg("bench", i, dr, "http://cc/d", "bench.kiln.test"))
		regs.waitFrom(cursor, "register", 10*time.Second, func(m *bus.Msg) bool {
			return decodeAs[protocol.Register](b, m).PrivateInstanceIndex == strconv.Itoa(i)
		})
	}
}

// BenchmarkCrashToUnregister measures the time from a process exit to the
// router.unregister of its instance, on membus and warden/fake.
func BenchmarkCrashToUnregister(b *testing.B) {
	bb, backend, n, dr, regs, unregs := benchWorld(b)
	b.StopTimer()
	for i := range b.N {
		cursor := regs.len()
		publish(b, bb, protocol.DEAStartSubject(n.dea.ID()), startMsg("crash", i, dr, "http://cc/d", "crash.kiln.test"))
		m := regs.waitFrom(cursor, "register", 10*time.Second, func(m *bus.Msg) bool {
			return decodeAs[protocol.Register](b, m).PrivateInstanceIndex == strconv.Itoa(i)
		})
		id := decodeAs[protocol.Register](b, m).PrivateInstanceID
		cs, err := backend.Containers(context.Background(), warden.Properties{dea.PropertyInstance: id})
		if err != nil || len(cs) != 1 {
			b.Fatal(err)
		}
		ucursor := unregs.len()
		b.StartTimer()
		if err := backend.Exit(cs[0].Handle(), "app", 1); err != nil {
			b.Fatal(err)
		}
		unregs.waitFrom(ucursor, "unregister", 10*time.Second, func(m *bus.Msg) bool {
			return decodeAs[protocol.Register](b, m).PrivateInstanceID == id
		})
		b.StopTimer()
	}
}
