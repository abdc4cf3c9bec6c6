package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/store"
)

// Rollout states, as GET /apps/:name/update reports them.
const (
	RolloutNone      = "NONE"
	RolloutUpdating  = "UPDATING"
	RolloutSucceeded = "SUCCEEDED"
	RolloutFailed    = "CANARY_FAILED"
)

// rollouts tracks the rolling update of each app.
type rollouts struct {
	mu sync.Mutex
	m  map[string]*rolloutState
}

type rolloutState struct {
	state   string
	since   time.Time
	message string
	cancel  context.CancelFunc
}

func newRollouts() *rollouts { return &rollouts{m: map[string]*rolloutState{}} }

func (r *rollouts) get(app string) (rolloutState, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.m[app]
	if !ok {
		return rolloutState{}, false
	}
	return *s, true
}

func (r *rollouts) set(app, state, msg string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.m[app]
	if s == nil {
		s = &rolloutState{}
		r.m[app] = s
	}
	s.state, s.message, s.since = state, msg, now
}

func (r *rollouts) forget(app string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.m[app]; s != nil && s.cancel != nil {
		s.cancel()
	}
	delete(r.m, app)
}

func (r *rollouts) cancel(app string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s := r.m[app]; s != nil && s.cancel != nil {
		s.cancel()
		s.cancel = nil
	}
}

// startRollout replaces the instances of oldVersion by newVersion index by
// index in the background: start the new instance, wait until it is
// RUNNING, then stop the old one. A new instance that crashes or does not
// come up in time ends the rollout: the new instances are stopped and the
// app goes back to oldVersion, whose instances kept serving.
func (c *Controller) startRollout(appID, oldVersion, newVersion, reason string) {
	c.rollout.mu.Lock()
	s := c.rollout.m[appID]
	if s == nil {
		s = &rolloutState{}
		c.rollout.m[appID] = s
	}
	if s.cancel != nil {
		s.cancel()
	}
	ctx, cancel := context.WithCancel(c.bgCtx)
	s.cancel = cancel
	s.state, s.since, s.message = RolloutUpdating, c.now(), reason
	c.rollout.mu.Unlock()
	c.log.Info("rollout-started", "app", appID, "from", oldVersion, "to", newVersion, "reason", reason)
	ok := c.goBackground(func(context.Context) {
		defer cancel()
		err := c.runRollout(ctx, appID, oldVersion, newVersion)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.log.Warn("rollout-failed", "app", appID, "to", newVersion, "error", err)
			c.rollout.set(appID, RolloutFailed, err.Error(), c.now())
			c.appLog(appID, -1, "rollout failed: "+err.Error())
			c.event(ctx, appID, "rollout-failed", err.Error())
			return
		}
		c.rollout.set(appID, RolloutSucceeded, "", c.now())
		c.event(ctx, appID, "rollout-succeeded", "version "+newVersion)
		c.log.Info("rollout-succeeded", "app", appID, "version", newVersion)
	})
	if !ok {
		cancel()
	}
}

var errRolloutCrashed = errors.New("new instance crashed")

func (c *Controller) runRollout(ctx context.Context, appID, oldVersion, newVersion string) error {
	a, err := c.deps.Store.GetApp(ctx, appID)
	if err != nil {
		return fmt.Errorf("get app: %w", err)
	}
	if a.Version != newVersion {
		return nil // superseded
	}
	start, err := c.startTemplate(ctx, a)
	if err != nil {
		return err
	}
	for i := 0; i < a.Instances; i++ {
		if err := c.startOne(ctx, a, start, i, nil); err != nil {
			return c.abortRollout(ctx, a, oldVersion, fmt.Errorf("index %d: %w", i, err))
		}
		if err := c.waitRunning(ctx, appID, newVersion, i); err != nil {
			return c.abortRollout(ctx, a, oldVersion, fmt.Errorf("index %d: %w", i, err))
		}
		if oldVersion != "" {
			c.publish(protocol.DEAStop, protocol.Stop{Droplet: protocol.AppID(appID), Version: oldVersion, Indices: []int{i}})
		}
	}
	return nil
}

// waitRunning waits until (version, index) is RUNNING per heartbeats.
func (c *Controller) waitRunning(ctx context.Context, appID, version string, index int) error {
	deadline := time.NewTimer(c.cfg.RolloutTimeout)
	defer deadline.Stop()
	for {
		changed := c.actual.wait()
		switch c.actual.indexState(appID, version, index) {
		case protocol.StateRunning:
			return nil
		case protocol.StateCrashed:
			return errRolloutCrashed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("not running after %s", c.cfg.RolloutTimeout)
		case <-changed:
		}
	}
}

// abortRollout stops the new version and restores the old one.
func (c *Controller) abortRollout(ctx context.Context, a store.App, oldVersion string, cause error) error {
	c.publish(protocol.DEAStop, protocol.Stop{Droplet: protocol.AppID(a.ID), Version: a.Version})
	if oldVersion == "" {
		return cause
	}
	prevDroplet := ""
	if ds, err := c.deps.Store.Droplets(ctx, a.ID); err == nil {
		for _, d := range ds {
			if len(oldVersion) > len(d.Hash) && oldVersion[:len(d.Hash)] == d.Hash {
				prevDroplet = d.Hash
				break
			}
		}
	}
	_, err := c.mutateApp(context.WithoutCancel(ctx), a.ID, func(x *store.App) error {
		if x.Version != a.Version {
			return errStale
		}
		x.Version = oldVersion
		if prevDroplet != "" {
			x.DropletHash = prevDroplet
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStale) {
		c.log.Warn("rollout-revert-failed", "app", a.ID, "error", err)
	}
	c.publishUpdated(a.ID)
	return fmt.Errorf("%w; kept version %s serving", cause, oldVersion)
}

// restart is PUT /apps/:name/update (legacy rolling restart) and
// POST /apps/:name/restart: a new version of the same droplet rolled out
// index by index.
func (c *Controller) restart(k *call) error {
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	if a.State != store.AppStarted {
		return ErrAppStopped
	}
	if a.PackageState != store.PackageStaged {
		c.stager.enqueue(a.ID, a.PackageHash)
		k.w.WriteHeader(http.StatusNoContent)
		return nil
	}
	old := a.Version
	saved, err := c.mutateApp(k.r.Context(), a.ID, func(x *store.App) error {
		x.Version = newVersion(versionSeed(*x), x.Version)
		return nil
	})
	if err != nil {
		return err
	}
	c.publishUpdated(a.ID)
	c.startRollout(a.ID, old, saved.Version, "restart")
	k.w.WriteHeader(http.StatusNoContent)
	return nil
}

// updateStatus is GET /apps/:name/update.
func (c *Controller) updateStatus(k *call) error {
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	s, ok := c.rollout.get(a.ID)
	out := map[string]any{"state": RolloutNone, "since": a.UpdatedAt.Unix()}
	if ok {
		out["state"], out["since"] = s.state, s.since.Unix()
		if s.message != "" {
			out["message"] = s.message
		}
	}
	writeJSON(k.w, http.StatusOK, out)
	return nil
}

// listDroplets is GET /apps/:name/droplets (kiln extension).
func (c *Controller) listDroplets(k *call) error {
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	ds, err := c.deps.Store.Droplets(k.r.Context(), a.ID)
	if err != nil {
		return fmt.Errorf("droplets: %w", err)
	}
	out := []map[string]any{}
	for _, d := range ds {
		out = append(out, map[string]any{"hash": d.Hash, "created": d.CreatedAt.Unix(), "current": d.Hash == a.DropletHash})
	}
	writeJSON(k.w, http.StatusOK, out)
	return nil
}

// listEvents is GET /apps/:name/events (kiln extension): the app's audit
// trail, oldest first.
func (c *Controller) listEvents(k *call) error {
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	page, err := c.deps.Store.ListEvents(k.r.Context(), a.ID, store.ListOptions{Limit: store.MaxLimit})
	if err != nil {
		return fmt.Errorf("events: %w", err)
	}
	out := []map[string]any{}
	for _, ev := range page.Items {
		out = append(out, map[string]any{"time": ev.Time.Unix(), "type": ev.Type, "description": ev.Description})
	}
	writeJSON(k.w, http.StatusOK, out)
	return nil
}

// rollback is POST /apps/:name/rollback {"droplet": hash} (kiln extension):
// make a kept droplet current again, rolled out if the app is STARTED.
func (c *Controller) rollback(k *call) error {
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	var body struct {
		Droplet string `json:"droplet"`
	}
	if err := c.decodeBody(k, &body); err != nil {
		return err
	}
	ds, err := c.deps.Store.Droplets(k.r.Context(), a.ID)
	if err != nil {
		return fmt.Errorf("droplets: %w", err)
	}
	found := false
	for _, d := range ds {
		found = found || d.Hash == body.Droplet
	}
	if !found || body.Droplet == "" {
		return ErrDropletNotFound.with(clip(body.Droplet))
	}
	old := a.Version
	saved, err := c.mutateApp(k.r.Context(), a.ID, func(x *store.App) error {
		x.DropletHash = body.Droplet
		x.PackageState = store.PackageStaged
		x.StagingError = ""
		if x.State == store.AppStarted {
			x.Version = newVersion(body.Droplet, x.Version)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := c.deps.Store.AddDroplet(k.r.Context(), store.Droplet{AppID: a.ID, Hash: body.Droplet}, c.cfg.DropletHistory); err != nil {
		c.log.Warn("droplet-history-failed", "app", a.ID, "error", err)
	}
	c.event(k.r.Context(), a.ID, "app-rolled-back", "droplet "+body.Droplet)
	c.publishUpdated(a.ID)
	if saved.State == store.AppStarted {
		c.startRollout(a.ID, old, saved.Version, "rollback")
	}
	k.w.WriteHeader(http.StatusOK)
	return nil
}
