package healthmgr

import (
	"context"
	"log/slog"
	"time"

	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/healthmgr/drift"
)

// packageStaged is the controller's package_state of an app with a droplet.
const packageStaged = "STAGED"

// appState is what the manager knows of one app.
type appState struct {
	// id is the app's id; its instances and desired entry share this
	// string, so the analysis compares ids by pointer.
	id string
	// known: the app is in the desired state, as desired (and bulk, as
	// read). ignored: its desired entry is unusable, so the app is left
	// alone altogether rather than taken as deleted.
	known, ignored bool
	desired        drift.App
	bulk           protocol.BulkApp
	instances      instanceSet
}

// startable reports whether START requests for the app make sense: the
// controller has a droplet to start (sources that do not report a package
// state are trusted).
func (a *appState) startable() bool {
	return a == nil || a.bulk.PackageState == "" || a.bulk.PackageState == packageStaged
}

// app returns the state of id, creating it. Callers hold m.mu.
func (m *Manager) app(id string) *appState {
	a := m.apps[id]
	if a == nil {
		a = &appState{id: id}
		m.apps[id] = a
	}
	return a
}

// desiredLoop reads the whole desired state at start, every
// DesiredInterval, after failures every DesiredRetry, and after
// droplet.updated notices; single apps are read at once when the source
// allows it.
func (m *Manager) desiredLoop(ctx context.Context) error {
	tick := m.clock.NewTicker(m.cfg.DesiredInterval)
	defer tick.Stop()
	var retry, debounce Timer
	defer func() {
		for _, t := range []Timer{retry, debounce} {
			if t != nil {
				t.Stop()
			}
		}
	}()
	load := func() {
		if !m.loadAll(ctx) && retry == nil && ctx.Err() == nil {
			retry = m.clock.NewTimer(m.cfg.DesiredRetry)
		}
	}
	load()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C():
			load()
		case <-timerC(retry):
			retry = nil
			load()
		case <-m.reloadAll:
			if debounce == nil {
				debounce = m.clock.NewTimer(m.cfg.ReloadDebounce)
			}
		case <-timerC(debounce):
			debounce = nil
			load()
		case id := <-m.reloadApp:
			if !m.loadApp(ctx, id) && retry == nil && ctx.Err() == nil {
				retry = m.clock.NewTimer(m.cfg.DesiredRetry)
			}
		}
	}
}

// loadAll replaces the desired state with the source's; it reports
// success. On failure the last known state is kept.
func (m *Manager) loadAll(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.DesiredTimeout)
	defer cancel()
	apps, err := m.src.Desired(ctx)
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.m.desiredLoads.WithLabelValues("all", "error").Inc()
		level := slog.LevelDebug // the source is known to be down
		if m.desiredOK || !m.desiredLoaded {
			level = slog.LevelWarn
		}
		m.log.Log(ctx, level, "desired-load-failed", "error", err, "keeping_apps", m.knownApps())
		m.setDesiredOK(false)
		return false
	}
	m.m.desiredLoads.WithLabelValues("all", "ok").Inc()
	seen := make(map[string]bool, len(apps))
	for i := range apps {
		if id := string(apps[i].ID); id != "" && !seen[id] {
			seen[id] = true
			m.putDesired(&apps[i])
		}
	}
	for id, a := range m.apps {
		if a.known && !seen[id] {
			m.dropDesired(id, a)
		}
	}
	first := !m.desiredLoaded
	m.setDesiredOK(true)
	m.desiredLoaded, m.desiredAt = true, now
	if first {
		m.log.Info("desired-loaded", "apps", len(seen))
		kick(m.kickFull)
	} else if len(m.dirty) > 0 {
		kick(m.kickSoon)
	}
	return true
}

// loadApp reads one app's desired state; it reports success.
func (m *Manager) loadApp(ctx context.Context, id string) bool {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.DesiredTimeout)
	defer cancel()
	app, ok, err := m.appSrc.DesiredApp(ctx, id)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.m.desiredLoads.WithLabelValues("app", "error").Inc()
		m.log.Warn("desired-load-failed", "app", id, "error", err)
		m.setDesiredOK(false)
		return false
	}
	m.m.desiredLoads.WithLabelValues("app", "ok").Inc()
	if ok && string(app.ID) == id {
		m.putDesired(&app)
	} else if a := m.apps[id]; a != nil && a.known {
		m.dropDesired(id, a)
	}
	m.setDesiredOK(true)
	if len(m.dirty) > 0 {
		kick(m.kickSoon)
	}
	return true
}

// putDesired records one app's desired state, marking it changed if it
// is. Callers hold m.mu.
func (m *Manager) putDesired(b *protocol.BulkApp) {
	id := string(b.ID)
	a := m.app(id)
	d := drift.App{ID: a.id, Version: b.Version, Instances: b.Instances, UpdatedAt: time.Unix(b.UpdatedAt, 0)}
	switch b.State {
	case drift.AppStarted.String():
		d.State = drift.AppStarted
	case drift.AppStopped.String():
		d.State = drift.AppStopped
	}
	ignored := d.State == 0 || b.Instances < 0
	if ignored && (!a.ignored || a.bulk != *b) {
		m.log.Warn("desired-app-ignored", "app", id, "state", b.State, "instances", b.Instances)
	}
	if a.known && a.ignored == ignored && a.bulk == *b {
		return
	}
	a.known, a.ignored, a.desired, a.bulk = true, ignored, d, *b
	m.dirty[id] = struct{}{}
}

// dropDesired forgets a deleted app's desired state and crash history;
// its instances are now orphans. Callers hold m.mu.
func (m *Manager) dropDesired(id string, a *appState) {
	a.known, a.ignored, a.desired, a.bulk = false, false, drift.App{}, protocol.BulkApp{}
	m.hist.Forget(id)
	m.dirty[id] = struct{}{}
	m.log.Info("desired-app-deleted", "app", id, "instances", a.instances.len())
}

// setDesiredOK records whether the source answered; on recovery a full
// pass sends the STOPs held back meanwhile. Callers hold m.mu.
func (m *Manager) setDesiredOK(ok bool) {
	if ok == m.desiredOK {
		return
	}
	m.desiredOK = ok
	if ok {
		m.m.desiredUp.Set(1)
		if m.desiredLoaded {
			m.log.Info("desired-source-recovered")
			kick(m.kickFull)
		}
		return
	}
	m.m.desiredUp.Set(0)
	m.log.Warn("desired-source-down", "effect", "no STOP requests until it answers")
}

func (m *Manager) knownApps() int {
	n := 0
	for _, a := range m.apps {
		if a.known {
			n++
		}
	}
	return n
}
