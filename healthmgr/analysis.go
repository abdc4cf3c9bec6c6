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
// the manager may act when it may not yet (0 otherwise). It may be called
// from several goroutines: see pass for how passes interleave.
func (m *Manager) analyze(full bool) (wait time.Duration) {
	if full {
		m.fullMu.Lock()
		defer m.fullMu.Unlock()
	}
	m.mu.Lock()
	p := m.snapshot(full)
	m.mu.Unlock()
	if p == nil {
		return 0
	}
	return m.finish(p)
}

// pass is one analysis pass: a snapshot of the state taken under m.mu,
// analysed without it, so heartbeats, crashes and queries are not held up
// by a full pass over many instances.
//
// Passes overlap safely: each analyses a consistent snapshot (small passes
// over changes do so under m.mu, with the live history), then under
// m.mu drops the requests that passes committed since (or peers sent;
// History.Unsent), records its own as sent, and takes sendMu before
// releasing m.mu, so requests leave in the order passes committed them and
// none is sent twice within Policy.RetryAfter. Full passes run one at a
// time (fullMu, which also guards their scratch buffers); a pass over
// changed apps, such as the one a crash starts, never waits for a full
// pass to finish.
type pass struct {
	full    bool
	now     time.Time
	began   time.Time // wall clock, for the analysis metric
	desired []drift.App
	actual  []drift.Instance
	// hist is a clone of m.hist, the pass's own, for analysing without
	// m.mu; nil for a small pass, analysed under m.mu (see inlinePass).
	hist *drift.History
}

// snapshot takes a pass's inputs and clears the changed set; it returns
// nil when there is nothing to compare with (the first desired load kicks
// a pass) or to do. Callers hold m.mu, and fullMu for a full pass.
func (m *Manager) snapshot(full bool) *pass {
	if !m.desiredLoaded || (!full && len(m.dirty) == 0) {
		return nil
	}
	p := &pass{full: full, now: m.clock.Now(), began: time.Now()}
	if full {
		p.desired, p.actual = m.inputs(true, m.desiredBuf[:0], m.actualBuf[:0])
		m.desiredBuf, m.actualBuf = p.desired, p.actual
	} else {
		p.desired, p.actual = m.inputs(false, nil, nil)
	}
	if full || len(p.actual) > inlinePass {
		p.hist = m.hist.Clone()
	}
	return p
}

// inlinePass is the size, in instances, up to which a pass over changes
// (a crash's) is analysed under m.mu with the live history: that takes
// less than cloning a large history would.
const inlinePass = 1000

// finish analyses a snapshot, then commits and sends what it found.
func (m *Manager) finish(p *pass) (wait time.Duration) {
	now := p.now
	var actions []drift.Action
	var stale []*drift.Instance
	if p.hist != nil {
		actions = drift.Analyze(m.cfg.Policy, p.desired, p.actual, p.hist, now)
		if p.full {
			stale = m.staleInstances(p.actual, now)
		}
		m.mu.Lock()
		actions = m.hist.Unsent(m.cfg.Policy, now, actions)
	} else {
		m.mu.Lock()
		actions = drift.Analyze(m.cfg.Policy, p.desired, p.actual, m.hist, now)
	}
	leading := m.updateLeading(now)
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
	if p.full {
		m.expire(now, stale)
		m.hist.Prune(m.cfg.Policy, now)
	}
	if now.After(m.lastPass) {
		m.lastPass = now
	}
	took := time.Since(p.began)
	m.sendMu.Lock()
	defer m.sendMu.Unlock()
	m.mu.Unlock()

	for i := range send {
		m.send(&send[i])
	}
	kind := "changes"
	if p.full {
		kind = "full"
	}
	// Observed after sending, so a pass counted has sent its requests.
	m.m.analysis.WithLabelValues(kind).Observe(took.Seconds())
	return wait
}

// inputs appends the analysis inputs of every app or of the changed ones
// to desired and actual, and clears the changed set. Apps with an
// unusable desired entry are left out with their instances. Callers hold
// m.mu.
func (m *Manager) inputs(full bool, desired []drift.App, actual []drift.Instance) ([]drift.App, []drift.Instance) {
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
	return desired, actual
}

// staleInstances lists the instances of a full pass's snapshot not heard
// of within the heartbeat TTL of now, for expire: finding them takes a
// look at every instance, which is better done without m.mu.
func (m *Manager) staleInstances(actual []drift.Instance, now time.Time) []*drift.Instance {
	cutoff := now.Add(-m.cfg.Policy.HeartbeatTTL)
	var stale []*drift.Instance
	for i := range actual {
		if actual[i].LastSeen.Before(cutoff) {
			stale = append(stale, &actual[i])
		}
	}
	return stale
}

// expire forgets instances, DEAs and exits not heard of within the
// heartbeat TTL, and apps left with nothing. stale lists the candidate
// instances (staleInstances of the pass's snapshot; the instances of
// ignored apps, left out of it, are checked here); each is dropped only if
// it has not been heard of since. A DEA that went silent is declared lost;
// its instances were already out of the analysis, which asked for them
// elsewhere. Callers hold m.mu.
func (m *Manager) expire(now time.Time, stale []*drift.Instance) {
	cutoff := now.Add(-m.cfg.Policy.HeartbeatTTL)
	lost := make(map[string]int)
	for id, at := range m.deas {
		if at.Before(cutoff) {
			lost[id] = 0
			delete(m.deas, id)
		}
	}
	drop := func(in *drift.Instance) bool {
		if !in.LastSeen.Before(cutoff) {
			return false
		}
		if _, ok := lost[in.DEA]; ok {
			lost[in.DEA]++
		}
		return true
	}
	for _, s := range stale {
		a := m.apps[s.App]
		if a == nil {
			continue
		}
		if in := a.instances.get(s.ID); in != nil && drop(in) {
			a.instances.remove(s.ID)
		}
	}
	n := 0
	for id, a := range m.apps {
		if a.ignored {
			a.instances.removeIf(drop)
		}
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
