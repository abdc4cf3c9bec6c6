package fsblob

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/controller/blobstore"
)

// metrics are the store's Prometheus collectors. A nil *metrics (no
// Registerer) records nothing.
type metrics struct {
	ops   *prometheus.CounterVec
	bytes *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "blobstore", Name: "operations_total",
			Help: "Blobstore operations by operation, kind and result.",
		}, []string{"op", "kind", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kiln", Subsystem: "blobstore", Name: "written_bytes_total",
			Help: "Bytes of blob content stored, by kind.",
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{m.ops, m.bytes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("fsblob: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) op(op string, kind blobstore.Kind, err error) {
	if m == nil {
		return
	}
	if kind.Validate() != nil {
		kind = "invalid" // keep label cardinality bounded against hostile input
	}
	m.ops.WithLabelValues(op, string(kind), result(err)).Inc()
}

func (m *metrics) written(kind blobstore.Kind, n int64) {
	if m == nil {
		return
	}
	m.bytes.WithLabelValues(string(kind)).Add(float64(n))
}

// result is the bounded label value for an operation's outcome.
func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, blobstore.ErrNotFound):
		return "not_found"
	case errors.Is(err, blobstore.ErrHashMismatch):
		return "hash_mismatch"
	case errors.Is(err, blobstore.ErrInvalidKey), errors.Is(err, blobstore.ErrInvalidKind):
		return "invalid"
	case errors.Is(err, blobstore.ErrTooLarge):
		return "too_large"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "error"
}
