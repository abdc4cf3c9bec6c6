package healthmgr

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/kiln-paas/kiln/bus"
)

// LeaseSubject carries health managers' leader-election announcements
// (a kiln extension): {"id": <manager id>, "since": <start, Unix ns>}.
const LeaseSubject = "healthmanager.lease"

// leaseMsg is one announcement on LeaseSubject.
type leaseMsg struct {
	ID    string `json:"id"`
	Since int64  `json:"since"`
}

// peer is another health manager as last heard.
type peer struct {
	since time.Time
	heard time.Time
}

// leaseLoop announces the manager every LeaseInterval and follows who
// leads. The leader is the manager that started first among those heard
// within LeaseTTL (ties broken by id): a restarted manager never takes over
// from one that has been watching longer, and every manager reaches the
// same verdict from the same announcements.
func (m *Manager) leaseLoop(ctx context.Context) error {
	tick := m.clock.NewTicker(m.cfg.LeaseInterval)
	defer tick.Stop()
	for {
		m.mu.Lock()
		msg := m.lease()
		m.updateLeading(m.clock.Now())
		m.mu.Unlock()
		m.publish(LeaseSubject, msg)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C():
		}
	}
}

var errBadLease = errors.New("lease without id")

// onLease records another manager's announcement.
func (m *Manager) onLease(msg *bus.Msg) {
	var l leaseMsg
	if err := json.Unmarshal(msg.Data, &l); err != nil || l.ID == "" {
		if err == nil {
			err = errBadLease
		}
		m.bad(LeaseSubject, msg, err)
		return
	}
	if l.ID == m.ID() {
		return
	}
	now := m.clock.Now()
	m.mu.Lock()
	_, known := m.peers[l.ID]
	m.peers[l.ID] = peer{since: time.Unix(0, l.Since), heard: now}
	m.updateLeading(now)
	self := m.lease()
	m.mu.Unlock()
	if !known {
		// Answer a newcomer at once, so it learns of its elders well
		// within its startup wait.
		m.publish(LeaseSubject, self)
	}
}

// lease returns this manager's announcement. Callers hold m.mu.
func (m *Manager) lease() leaseMsg { return leaseMsg{ID: m.ID(), Since: m.startedAt.UnixNano()} }

// updateLeading works out whether this manager leads now, forgetting peers
// not heard within LeaseTTL, and returns it. Callers hold m.mu.
func (m *Manager) updateLeading(now time.Time) bool {
	if !m.cfg.LeaderElection {
		return m.leading
	}
	lead := true
	for id, p := range m.peers {
		if now.Sub(p.heard) > m.cfg.LeaseTTL {
			delete(m.peers, id)
			continue
		}
		if p.since.Before(m.startedAt) || (p.since.Equal(m.startedAt) && id < m.ID()) {
			lead = false
		}
	}
	m.m.peers.Set(float64(len(m.peers) + 1))
	m.setLeading(lead)
	return lead
}

// setLeading records a change of leadership; a new leader runs a full
// pass at once. Callers hold m.mu.
func (m *Manager) setLeading(lead bool) {
	if lead == m.leading {
		return
	}
	m.leading = lead
	if lead {
		m.m.leader.Set(1)
		m.log.Info("leader-elected", "id", m.ID(), "peers", len(m.peers))
		kick(m.kickFull)
		return
	}
	m.m.leader.Set(0)
	m.log.Info("leader-standing-by", "id", m.ID(), "peers", len(m.peers))
}
