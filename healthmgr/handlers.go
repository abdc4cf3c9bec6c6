package healthmgr

import (
	"encoding/json"
	"math"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/healthmgr/drift"
)

// bad logs, counts and drops a malformed message received on the
// subscription to subject (labels stay bounded whatever arrives).
func (m *Manager) bad(subject string, msg *bus.Msg, err error) {
	m.m.badMessages.WithLabelValues(subject).Inc()
	m.log.Debug("bad-message", "subject", subject, "bytes", len(msg.Data), "error", err)
}

// instanceState maps a heartbeat state; ok is false for states the
// analysis ignores (STOPPED, DELETED, EVACUATING, ...).
func instanceState(s string) (drift.InstanceState, bool) {
	switch s {
	case protocol.StateStarting:
		return drift.Starting, true
	case protocol.StateRunning:
		return drift.Running, true
	case protocol.StateCrashed:
		return drift.Crashed, true
	}
	return 0, false
}

// epoch converts a DEA's epoch-seconds timestamp, falling back to now for
// a missing one or one in the future (a DEA clock ahead of ours would
// otherwise stretch backoffs and orphan grace).
func epoch(sec float64, now time.Time) time.Time {
	if !(sec > 0) || sec >= float64(now.Unix()) {
		return now
	}
	whole, frac := math.Modf(sec)
	return time.Unix(int64(whole), int64(frac*1e9))
}

// onHeartbeat refreshes the instances a DEA reports. Heartbeats may list
// all of a DEA's instances or just one that turned RUNNING, so instances
// left out are not taken as gone: they expire after Policy.HeartbeatTTL.
func (m *Manager) onHeartbeat(msg *bus.Msg) {
	hb, err := protocol.Decode[protocol.Heartbeat](msg.Data)
	if err != nil {
		m.bad(protocol.DEAHeartbeat, msg, err)
		return
	}
	now := m.clock.Now()
	urgent, changed := false, false
	var p *pass
	m.mu.Lock()
	if hb.DEA != "" {
		m.deas[hb.DEA] = now
	}
	for i := range hb.Droplets {
		u, c := m.observe(hb.DEA, &hb.Droplets[i], now)
		urgent, changed = urgent || u, changed || c
	}
	if urgent {
		p = m.snapshot(false) // with the crash, as in onExited
	}
	m.mu.Unlock()
	switch {
	case p != nil:
		m.finish(p)
	case changed:
		kick(m.kickSoon)
	}
}

// observe records one instance of a heartbeat. It reports whether the
// instance brings a new crash (urgent) or otherwise changes what the
// analysis sees. Callers hold m.mu.
func (m *Manager) observe(dea string, d *protocol.InstanceHeartbeat, now time.Time) (urgent, changed bool) {
	id, appID := d.Instance, string(d.Droplet)
	state, ok := instanceState(d.State)
	if _, exited := m.gone[id]; exited && state != drift.Crashed {
		// An instance that exited (a stop, a DEA shutdown, an evacuation
		// that keeps it serving a while) must not count as live again,
		// nor undo the record of its crash.
		m.gone[id] = now
		return false, false
	}
	if !ok {
		if a := m.apps[appID]; a != nil && a.instances.remove(id) {
			m.dirty[appID] = struct{}{}
			return false, true
		}
		return false, false
	}
	a := m.app(appID)
	in, added := a.instances.getOrAdd(a.id, id)
	changed = added || in.State != state || in.Index != d.Index || in.Version != d.Version || in.DEA != dea
	since := epoch(d.StateTimestamp, now)
	in.Version, in.Index, in.State, in.DEA, in.Since, in.LastSeen = d.Version, d.Index, state, dea, since, now
	if state == drift.Crashed && m.hist.RecordCrash(appID, d.Version, d.Index, id, since) {
		m.m.crashes.Inc()
		urgent = true
	}
	if changed || urgent {
		m.dirty[appID] = struct{}{}
	}
	return urgent, changed
}

// onExited handles droplet.exited: a crash is recorded and analysed at
// once; an instance leaving with its DEA (shutdown, evacuation) is
// replaced at once; a stop is analysed with the next changes.
func (m *Manager) onExited(msg *bus.Msg) {
	ex, err := protocol.Decode[protocol.Exited](msg.Data)
	if err != nil {
		m.bad(protocol.DropletExited, msg, err)
		return
	}
	now := m.clock.Now()
	appID := string(ex.Droplet)
	m.mu.Lock()
	m.gone[ex.Instance] = now
	a := m.app(appID)
	m.dirty[appID] = struct{}{}
	urgent := ex.Reason != protocol.ReasonStopped
	if ex.Reason == protocol.ReasonCrashed {
		in, _ := a.instances.getOrAdd(a.id, ex.Instance)
		in.Version, in.Index, in.State, in.Since, in.LastSeen = ex.Version, ex.Index, drift.Crashed, now, now
		if m.hist.RecordCrash(appID, ex.Version, ex.Index, ex.Instance, now) {
			m.m.crashes.Inc()
		}
	} else {
		a.instances.remove(ex.Instance)
	}
	var p *pass
	if urgent {
		// Analysed here and now rather than by the analysis loop: one
		// goroutine hand-off less between the exit and the request. The
		// snapshot is taken with the change, so a full pass starting
		// meanwhile cannot take the app out of the changed set and make
		// the crash wait for it.
		p = m.snapshot(false)
	}
	m.mu.Unlock()
	m.log.Debug("instance-exited", "app", appID, "index", ex.Index, "instance", ex.Instance, "reason", ex.Reason)
	switch {
	case p != nil:
		m.finish(p)
	case !urgent:
		kick(m.kickSoon)
	}
}

// onAdvertise notes that a DEA is alive.
func (m *Manager) onAdvertise(msg *bus.Msg) {
	ad, err := protocol.Decode[protocol.Advertise](msg.Data)
	if err != nil {
		m.bad(protocol.DEAAdvertise, msg, err)
		return
	}
	now := m.clock.Now()
	m.mu.Lock()
	m.deas[ad.ID] = now
	m.mu.Unlock()
}

// onUpdated reloads an app whose desired state changed: that app alone if
// the source can, else everything after ReloadDebounce.
func (m *Manager) onUpdated(msg *bus.Msg) {
	up, err := protocol.Decode[protocol.Updated](msg.Data)
	if err != nil {
		m.bad(protocol.DropletUpdated, msg, err)
		return
	}
	if m.appSrc == nil {
		kick(m.reloadAll)
		return
	}
	select {
	case m.reloadApp <- string(up.Droplet):
	default:
		kick(m.reloadAll)
	}
}

// onPeerRequest records other managers' requests seen on
// cloudcontrollers.hm.requests as sent, so no manager repeats one within
// Policy.RetryAfter: the controller is already acting on it.
func (m *Manager) onPeerRequest(msg *bus.Msg) {
	req, err := protocol.Decode[protocol.HMRequest](msg.Data)
	if err != nil {
		m.bad(protocol.HMRequests, msg, err)
		return
	}
	var from struct {
		Sender string `json:"hm_id"`
	}
	if json.Unmarshal(msg.Data, &from) == nil && from.Sender == m.ID() {
		return // our own, recorded when sent
	}
	act := drift.Action{App: string(req.Droplet), Indices: req.Indices, Instances: req.Instances, Op: drift.OpStart}
	if req.Op == protocol.OpStop {
		act.Op = drift.OpStop
	}
	now := m.clock.Now()
	m.mu.Lock()
	m.hist.RecordSent(now, []drift.Action{act})
	m.mu.Unlock()
}

// onStatus answers healthmanager.status: FLAPPING gives the flapping
// indices of the version asked (default: the desired one), CRASHED the
// crashed instances; an unknown app gets no answer.
func (m *Manager) onStatus(msg *bus.Msg) {
	req, err := protocol.Decode[protocol.HMStatusRequest](msg.Data)
	if err != nil || msg.Reply == "" {
		if err == nil {
			err = bus.ErrNoReply
		}
		m.bad(protocol.HealthManagerStatus, msg, err)
		return
	}
	now := m.clock.Now()
	id := string(req.Droplet)
	m.mu.Lock()
	a := m.apps[id]
	if a == nil || (!a.known && a.instances.len() == 0) {
		m.mu.Unlock()
		return
	}
	version := req.Version
	if version == "" {
		version = a.desired.Version
	}
	st := m.hist.Status(m.cfg.Policy, id, version, now)
	m.mu.Unlock()
	var reply protocol.HMStatusReply
	if req.State == protocol.StateFlapping {
		reply.Indices = make([]protocol.IndexSince, 0, len(st.Flapping))
		for _, f := range st.Flapping {
			reply.Indices = append(reply.Indices, protocol.IndexSince{Index: f.Index, Since: f.Since.Unix()})
		}
	} else {
		reply.Instances = make([]protocol.InstanceSince, 0, len(st.Crashed))
		for _, c := range st.Crashed {
			reply.Instances = append(reply.Instances, protocol.InstanceSince{Instance: c.ID, Since: c.At.Unix()})
		}
	}
	if err := bus.RespondJSON(m.bus, msg, reply); err != nil {
		m.log.Warn("status-reply-failed", "app", id, "error", err)
	}
}

// onHealth answers healthmanager.health with one reply per known droplet:
// the count of its RUNNING instances of the version asked.
func (m *Manager) onHealth(msg *bus.Msg) {
	req, err := protocol.Decode[protocol.HMHealthRequest](msg.Data)
	if err != nil || msg.Reply == "" {
		if err == nil {
			err = bus.ErrNoReply
		}
		m.bad(protocol.HealthManagerHealth, msg, err)
		return
	}
	now := m.clock.Now()
	cutoff := now.Add(-m.cfg.Policy.HeartbeatTTL)
	replies := make([]protocol.HMHealthReply, 0, len(req.Droplets))
	m.mu.Lock()
	for _, d := range req.Droplets {
		a := m.apps[string(d.Droplet)]
		if a == nil || (!a.known && a.instances.len() == 0) {
			continue
		}
		r := protocol.HMHealthReply{Droplet: d.Droplet, Version: d.Version}
		for _, in := range a.instances.list {
			if in.State == drift.Running && in.Version == d.Version && !in.LastSeen.Before(cutoff) {
				r.Healthy++
			}
		}
		replies = append(replies, r)
	}
	m.mu.Unlock()
	for _, r := range replies {
		if err := bus.RespondJSON(m.bus, msg, r); err != nil {
			m.log.Warn("health-reply-failed", "app", r.Droplet, "error", err)
		}
	}
}
