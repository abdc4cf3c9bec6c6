package healthmgr

import (
	"context"
	"time"

	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/healthmgr/drift"
)

// analysisLoop runs the analysis: a full pass at start, every
// AnalysisInterval and when acting begins, and the changed apps
// AnalysisDebounce after changes. Crashes are analysed by their handlers.
func (m *Manager) analysisLoop(ctx context.Context) error {
	tick := m.clock.NewTicker(m.cfg.AnalysisInterval)
	defer tick.Stop()
	var debounce, hold Timer
	defer func() {
		for _, t := range []Timer{debounce, hold} {
			if t != nil {
				t.Stop()
			}
		}
	}()
	run := func(full bool) {
		if wait := m.analyze(full); wait > 0 && hold == nil {
			hold = m.clock.NewTimer(wait)
		}
	}
	run(true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.kickSoon:
			if debounce == nil {
				debounce = m.clock.NewTimer(m.cfg.AnalysisDebounce)
			}
		case <-timerC(debounce):
			debounce = nil
			run(false)
		case <-tick.C():
			run(true)
		case <-m.kickFull:
			run(true)
		case <-timerC(hold):
			hold = nil
			run(true)
		}
	}
}

// Why requests found by the analysis are not sent.
const (
	whyBusDown     = "bus-down"
	whyStartup     = "startup"
	whyStandby     = "standby"
	whyNotStaged   = "not-staged"
	whyDesiredDown = "desired-unavailable"
)

// analyze runs one pass over every app (full) or the apps changed since
// their last pass, sends the requests it may, and returns how long until
// the manager may act when it may not yet (0 otherwise). Passes may run
// from several goroutines; m.mu serialises them up to the sending.
func (m *Manager) analyze(full bool) (wait time.Duration) {
	now := m.clock.Now()
	m.mu.Lock()
	if !m.desiredLoaded || (!full && len(m.dirty) == 0) {
		m.mu.Unlock()
		return 0 // nothing to compare with (the first load kicks a pass), or to do
	}
	began := time.Now()
	leading := m.updateLeading(now)
	desired, actual := m.inputs(full)
	actions := drift.Analyze(m.cfg.Policy, desired, actual, m.hist, now)
	block := ""
	switch {
	case !m.busUp:
		block = whyBusDown
	case now.Before(m.actFrom):
		block, wait = whyStartup, m.actFrom.Sub(now)
	case !leading:
		block = whyStandby
	}
	send := actions[:0:0]
	for _, a := range actions {
		m.m.drift.WithLabelValues(a.Reason.String()).Add(float64(len(a.Indices) + len(a.Instances)))
		why := block
		if why == "" && a.Op == drift.OpStart && !m.apps[a.App].startable() {
			why = whyNotStaged
		}
		if why == "" && a.Op == drift.OpStop && !m.desiredOK {
			why = whyDesiredDown
		}
		if why != "" {
			m.m.suppressed.WithLabelValues(why).Inc()
			continue
		}
		send = append(send, a)
	}
	m.hist.RecordSent(now, send)
	if full {
		m.expire(now)
		m.hist.Prune(m.cfg.Policy, now)
	}
	m.lastPass = now
	took := time.Since(began)
	// Requests leave in the order passes decided them: the next pass
	// cannot send before this one has.
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	m.mu.Unlock()

	for i := range send {
		m.send(&send[i])
	}
	pass := "changes"
	if full {
		pass = "full"
	}
	// Observed after sending, so a pass counted has sent its requests.
	m.m.analysis.WithLabelValues(pass).Observe(took.Seconds())
	return wait
}

// inputs collects the analysis inputs of every app or of the changed
// ones, and clears the changed set. Apps with an unusable desired entry
// are left out with their instances. Callers hold m.mu.
func (m *Manager) inputs(full bool) ([]drift.App, []drift.Instance) {
	desired, actual := m.desiredBuf[:0], m.actualBuf[:0]
	add := func(a *appState) {
		if a.ignored {
			return
		}
		if a.known {
			desired = append(desired, a.desired)
		}
		actual = append(actual, a.instances.list...)
	}
	if full {
		for _, a := range m.apps {
			add(a)
		}
	} else {
		for id := range m.dirty {
			if a := m.apps[id]; a != nil {
				add(a)
			}
		}
	}
	clear(m.dirty)
	m.desiredBuf, m.actualBuf = desired, actual
	return desired, actual
}

// expire forgets instances, DEAs and exits not heard of within the
// heartbeat TTL, and apps left with nothing. A DEA that went silent is
// declared lost; its instances were already out of the analysis, which
// asked for them elsewhere. Callers hold m.mu.
func (m *Manager) expire(now time.Time) {
	cutoff := now.Add(-m.cfg.Policy.HeartbeatTTL)
	lost := make(map[string]int)
	for id, at := range m.deas {
		if at.Before(cutoff) {
			lost[id] = 0
			delete(m.deas, id)
		}
	}
	n := 0
	for id, a := range m.apps {
		a.instances.removeIf(func(in *drift.Instance) bool {
			if !in.LastSeen.Before(cutoff) {
				return false
			}
			if _, ok := lost[in.DEA]; ok {
				lost[in.DEA]++
			}
			return true
		})
		n += a.instances.len()
		if !a.known && a.instances.len() == 0 {
			delete(m.apps, id)
		}
	}
	for id, at := range m.gone {
		if at.Before(cutoff) {
			delete(m.gone, id)
		}
	}
	for id, count := range lost {
		m.m.deasLost.Inc()
		m.log.Warn("dea-lost", "dea", id, "silent_for", m.cfg.Policy.HeartbeatTTL, "instances", count)
	}
	m.m.apps.Set(float64(len(m.apps)))
	m.m.instances.Set(float64(n))
	m.m.deas.Set(float64(len(m.deas)))
}

// send publishes one request on cloudcontrollers.hm.requests.
func (m *Manager) send(a *drift.Action) {
	req := protocol.HMRequest{
		Droplet: protocol.AppID(a.App), Op: a.Op.String(), Version: a.Version,
		Indices: a.Indices, Instances: a.Instances, Flapping: a.Flapping, Reason: a.Reason.String(),
	}
	if !a.LastUpdated.IsZero() {
		req.LastUpdated = a.LastUpdated.Unix()
	}
	m.publish(protocol.HMRequests, wireRequest{HMRequest: req, Sender: m.ID()})
	m.m.requests.WithLabelValues(req.Op, req.Reason).Inc()
	m.log.Info("hm-request-sent", "app", a.App, "op", req.Op, "reason", req.Reason,
		"version", a.Version, "indices", a.Indices, "instances", a.Instances, "flapping", a.Flapping, "why", a.Text)
}

// wireRequest is an HMRequest with the sending manager's id, a kiln
// extension controllers ignore, so managers tell their own requests from
// their peers' when they read them back.
type wireRequest struct {
	protocol.HMRequest
	Sender string `json:"hm_id,omitempty"`
}
