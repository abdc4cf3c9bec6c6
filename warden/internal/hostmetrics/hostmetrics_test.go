package hostmetrics

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New("test", "OOM kills.")
	extra := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: Subsystem("test"), Name: "extra_total", Help: "Extra."})
	if err := m.Register(reg, "test", extra); err != nil {
		t.Fatal(err)
	}
	m.Containers.Set(2)
	m.Started.Inc()
	m.OOMKills.Add(3)
	extra.Inc()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	help := map[string]string{}
	for _, f := range fams {
		help[f.GetName()] = f.GetHelp()
		for _, mt := range f.GetMetric() {
			switch {
			case mt.GetGauge() != nil:
				got[f.GetName()] = mt.GetGauge().GetValue()
			case mt.GetCounter() != nil:
				got[f.GetName()] = mt.GetCounter().GetValue()
			}
		}
	}
	want := map[string]float64{
		"kiln_warden_test_containers":              2,
		"kiln_warden_test_processes_started_total": 1,
		"kiln_warden_test_oom_kills_total":         3,
		"kiln_warden_test_extra_total":             1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("gathered (-want +got):\n%s", diff)
	}
	if h := help["kiln_warden_test_containers"]; h != "Containers the test backend holds." {
		t.Errorf("containers help %q", h)
	}
	if h := help["kiln_warden_test_oom_kills_total"]; h != "OOM kills." {
		t.Errorf("oom kills help %q", h)
	}
	// A second backend on the same registry collides.
	err = New("test", "OOM kills.").Register(reg, "test")
	if err == nil || !strings.HasPrefix(err.Error(), "test: register metrics: ") {
		t.Errorf("second Register = %v, want a prefixed error", err)
	}
}

func TestRegisterNil(t *testing.T) {
	if err := New("test", "x").Register(nil, "test"); err != nil {
		t.Errorf("Register(nil) = %v", err)
	}
}
