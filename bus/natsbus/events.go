package natsbus

import (
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// The callbacks below run on nats.go's single event goroutine, in the
// order of the events.

func (c *Conn) onConnected(nc *nats.Conn) {
	c.log.Info("bus-connected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
	c.setState(true)
}

func (c *Conn) onDisconnected(nc *nats.Conn, err error) {
	if c.closed.Load() {
		// Our own Close or Drain: reported as bus-closed.
		c.setState(false)
		return
	}
	c.m.disconnects.Inc()
	c.log.Warn("bus-disconnected", "url", nc.ConnectedUrlRedacted(), "err", err)
	c.setState(false)
}

func (c *Conn) onReconnected(nc *nats.Conn) {
	c.m.reconnects.Inc()
	c.log.Info("bus-reconnected", "url", nc.ConnectedUrlRedacted(), "server", nc.ConnectedServerName())
	c.setState(true)
}

func (c *Conn) onLameDuck(nc *nats.Conn) {
	c.log.Info("bus-server-lame-duck", "url", nc.ConnectedUrlRedacted())
}

func (c *Conn) onReconnectFailed(_ *nats.Conn, err error) {
	c.log.Debug("bus-reconnect-failed", "err", err)
}

func (c *Conn) onClosed(nc *nats.Conn) {
	if err := nc.LastError(); err != nil && !c.closed.Load() {
		c.log.Error("bus-closed", "err", err)
	} else {
		c.log.Info("bus-closed")
	}
	c.setState(false)
	c.doneMu.Do(func() { close(c.done) })
}

func (c *Conn) onAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrSlowConsumer) && sub != nil {
		c.m.slowConsumers.Inc()
		dropped, _ := sub.Dropped()
		c.log.Warn("bus-slow-consumer", "subject", sub.Subject, "queue", sub.Queue, "dropped", dropped)
		return
	}
	c.m.asyncErrors.Inc()
	if sub != nil {
		c.log.Error("bus-async-error", "subject", sub.Subject, "err", err)
		return
	}
	c.log.Error("bus-async-error", "err", err)
}

// setState records the connection state and tells the hooks about a
// change, unless the change is our own Close or Drain.
func (c *Conn) setState(up bool) {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if c.up == up {
		return
	}
	c.up = up
	if c.closed.Load() {
		return
	}
	if f := c.cfg.OnConnectionChange; f != nil {
		f(up)
	}
	for _, w := range c.watchers {
		w.f(up)
	}
}

// metrics are a connection's Prometheus counters.
type metrics struct {
	disconnects, reconnects, slowConsumers, asyncErrors prometheus.Counter
}

// newMetrics registers the counters with reg (nil: unregistered), reusing
// those already registered by another connection, and returns the ones
// labelled name.
func newMetrics(reg prometheus.Registerer, name string) (*metrics, error) {
	vec := func(metric, help string) (*prometheus.CounterVec, error) {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "kiln",
			Subsystem: "natsbus",
			Name:      metric,
			Help:      help,
		}, []string{"name"})
		if reg == nil {
			return v, nil
		}
		if err := reg.Register(v); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if old, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					return old, nil
				}
			}
			return nil, fmt.Errorf("natsbus: register metric %s: %w", metric, err)
		}
		return v, nil
	}
	var m metrics
	for _, d := range []struct {
		c          *prometheus.Counter
		name, help string
	}{
		{&m.disconnects, "disconnects_total", "Connections to the NATS server lost (not counting Close)."},
		{&m.reconnects, "reconnects_total", "Connections to the NATS server re-established after a loss."},
		{&m.slowConsumers, "slow_consumers_total", "Times a subscription fell behind and started dropping messages."},
		{&m.asyncErrors, "async_errors_total", "Asynchronous errors reported by the NATS connection, other than slow consumers."},
	} {
		v, err := vec(d.name, d.help)
		if err != nil {
			return nil, err
		}
		*d.c = v.WithLabelValues(name)
	}
	return &m, nil
}
