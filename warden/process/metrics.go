package process

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/warden/internal/hostmetrics"
)

// metrics are the backend's Prometheus instruments.
type metrics struct {
	hostmetrics.Metrics
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{hostmetrics.New("process", "Containers killed for exceeding their memory limit.")}
	if err := m.Register(reg, "process"); err != nil {
		return nil, err
	}
	return m, nil
}
