package dea_test

import (
	"encoding/json"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/dea"
	"github.com/kiln-paas/kiln/warden/fake"
)

// settableCPU is a CPUSampler whose value the test changes.
type settableCPU struct{ bits atomic.Uint64 }

func (s *settableCPU) set(v float64) { s.bits.Store(math.Float64bits(v)) }
func (s *settableCPU) CPU() float64  { return math.Float64frombits(s.bits.Load()) }

func advertFrom(t *testing.T, id string, cpu float64) func(*bus.Msg) bool {
	return func(m *bus.Msg) bool {
		a := decodeAs[protocol.Advertise](t, m)
		return a.ID == id && a.CPULoad == cpu
	}
}

func TestAdvertCarriesCPULoad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		sampled float64
		want    float64
	}{
		{"in range", 0.42, 0.42},
		{"clamped high", 1.7, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newMemBus().Connect()
			t.Cleanup(func() { _ = b.Close() })
			adverts := record(t, b, protocol.DEAAdvertise)
			reg := prometheus.NewRegistry()
			n := runDEA(t, b, testConfig(t), dea.Deps{Backend: newFake(t, fake.DefaultConfig()), Registerer: reg, CPU: dea.FixedCPU(tt.sampled)})
			adverts.wait(fmt.Sprintf("advert with cpu_load %v", tt.want), 5*time.Second, advertFrom(t, n.dea.ID(), tt.want))
			if got := metricValue(t, reg, "kiln_dea_cpu_load"); got != tt.want {
				t.Errorf("kiln_dea_cpu_load = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCPUSampledEachAdvertInterval changes the host's load and waits for
// the periodic advert to carry the new value.
func TestCPUSampledEachAdvertInterval(t *testing.T) {
	t.Parallel()
	b := newMemBus().Connect()
	t.Cleanup(func() { _ = b.Close() })
	adverts := record(t, b, protocol.DEAAdvertise)
	cfg := testConfig(t)
	cfg.AdvertiseInterval = 20 * time.Millisecond
	cpu := &settableCPU{}
	cpu.set(0.2)
	n := runDEA(t, b, cfg, dea.Deps{Backend: newFake(t, fake.DefaultConfig()), CPU: cpu})
	adverts.wait("advert with cpu_load 0.2", 5*time.Second, advertFrom(t, n.dea.ID(), 0.2))
	cpu.set(0.8)
	adverts.wait("advert with cpu_load 0.8", 5*time.Second, advertFrom(t, n.dea.ID(), 0.8))
}

// TestBusyDEAAnswersDiscoverLater runs two DEAs with equal memory, one on
// a busy host and one on an idle host: the idle one answers every
// discover first, and the busy one still answers (later).
func TestBusyDEAAnswersDiscoverLater(t *testing.T) {
	t.Parallel()
	srv := newMemBus()
	cc := srv.Connect()
	t.Cleanup(func() { _ = cc.Close() })
	backend := newFake(t, fake.DefaultConfig())
	adverts := record(t, cc, protocol.DEAAdvertise)
	ids := map[float64]string{}
	for _, load := range []float64{1, 0} {
		cfg := testConfig(t)
		cfg.AdvertiseInterval = 100 * time.Millisecond
		// A CPU weight well above scheduling noise on a loaded test
		// machine; every DEA scores with the same weights.
		cfg.Placement.Weights.CPU = 200 * time.Millisecond
		b := srv.Connect()
		t.Cleanup(func() { _ = b.Close() })
		n := runDEA(t, b, cfg, dea.Deps{Backend: backend, CPU: dea.FixedCPU(load)})
		ids[load] = n.dea.ID()
	}
	busy, idle := ids[1], ids[0]
	adverts.wait("busy advert", 5*time.Second, advertFrom(t, busy, 1))
	adverts.wait("idle advert", 5*time.Second, advertFrom(t, idle, 0))
	for i := range 6 {
		inbox := cc.NewInbox()
		replies := record(t, cc, inbox)
		req := protocol.Discover{Droplet: protocol.AppID(fmt.Sprintf("app-%d", i)), Limits: protocol.Limits{Mem: 256}}
		publishRequest(t, cc, protocol.DEADiscover, inbox, req)
		replies.wait("two replies", 5*time.Second, func(*bus.Msg) bool { return replies.len() >= 2 })
		var order []string
		for _, m := range replies.all() {
			order = append(order, decodeAs[protocol.DEAHello](t, m).ID)
		}
		if len(order) != 2 || order[0] != idle || order[1] != busy {
			t.Errorf("discover %d: replies from %v, want idle %s then busy %s", i, order, idle, busy)
		}
	}
}

func publishRequest(t *testing.T, b bus.Bus, subject, reply string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PublishRequest(subject, reply, data); err != nil {
		t.Fatal(err)
	}
}
