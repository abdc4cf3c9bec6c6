package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/store"
)

// actualState is what DEAs report through heartbeats and exits, plus the
// starts the controller has sent and not yet seen reported.
type actualState struct {
	mu      sync.Mutex
	apps    map[string]map[string]*instanceState // app -> instance id
	pending map[string]time.Time                 // app|version|index -> until
	changed chan struct{}
}

type instanceState struct {
	id, version, state, dea string
	index                   int
	since, seen             time.Time
}

func newActualState() *actualState {
	return &actualState{apps: map[string]map[string]*instanceState{}, pending: map[string]time.Time{}, changed: make(chan struct{})}
}

func pendingKey(app, version string, index int) string {
	return app + "|" + version + "|" + strconv.Itoa(index)
}

// notify wakes waiters; the caller holds mu.
func (s *actualState) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// wait returns a channel closed at the next change.
func (s *actualState) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *actualState) observe(dea string, hb protocol.InstanceHeartbeat, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	app := string(hb.Droplet)
	insts := s.apps[app]
	if insts == nil {
		insts = map[string]*instanceState{}
		s.apps[app] = insts
	}
	since := now
	if hb.StateTimestamp > 0 {
		since = time.Unix(0, int64(hb.StateTimestamp*1e9))
	}
	insts[hb.Instance] = &instanceState{id: hb.Instance, version: hb.Version, state: hb.State, dea: dea, index: hb.Index, since: since, seen: now}
	if hb.State == protocol.StateRunning || hb.State == protocol.StateCrashed {
		delete(s.pending, pendingKey(app, hb.Version, hb.Index))
	}
	s.notify()
}

func (s *actualState) exited(e protocol.Exited, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	app := string(e.Droplet)
	insts := s.apps[app]
	if e.Reason == protocol.ReasonCrashed {
		// Keep the crash (even of an instance never heard of) so that a
		// rollout waiting for that index learns of it.
		if insts == nil {
			insts = map[string]*instanceState{}
			s.apps[app] = insts
		}
		insts[e.Instance] = &instanceState{id: e.Instance, version: e.Version, state: protocol.StateCrashed, index: e.Index, since: now, seen: now}
	} else if insts != nil {
		delete(insts, e.Instance)
	}
	delete(s.pending, pendingKey(app, e.Version, e.Index))
	s.notify()
}

func (s *actualState) forget(app string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.apps, app)
	for k := range s.pending {
		if strings.HasPrefix(k, app+"|") {
			delete(s.pending, k)
		}
	}
	s.notify()
}

func (s *actualState) expire(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for app, insts := range s.apps {
		for id, i := range insts {
			if i.seen.Before(before) {
				delete(insts, id)
			}
		}
		if len(insts) == 0 {
			delete(s.apps, app)
		}
	}
	now := before
	for k, until := range s.pending {
		if until.Before(now) {
			delete(s.pending, k)
		}
	}
}

// running counts distinct indices below n of version that are RUNNING.
func (s *actualState) running(app, version string, n int, fresh time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[int]bool{}
	for _, i := range s.apps[app] {
		if i.version == version && i.state == protocol.StateRunning && i.index < n && !i.seen.Before(fresh) {
			seen[i.index] = true
		}
	}
	return len(seen)
}

// indexState returns the best state of (version, index): RUNNING beats
// STARTING beats CRASHED; "" when unknown.
func (s *actualState) indexState(app, version string, index int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	best := ""
	rank := map[string]int{"": 0, protocol.StateCrashed: 1, protocol.StateStarting: 2, protocol.StateRunning: 3}
	for _, i := range s.apps[app] {
		if i.version == version && i.index == index && rank[i.state] > rank[best] {
			best = i.state
		}
	}
	return best
}

func (s *actualState) hasVersion(app, version string, fresh time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, i := range s.apps[app] {
		if i.version == version && !i.seen.Before(fresh) && (i.state == protocol.StateRunning || i.state == protocol.StateStarting) {
			return true
		}
	}
	return false
}

// claim marks (version, index) as being started until until; it reports
// false when a start is already in progress or, with checkRunning, when
// heartbeats say the index is starting or running.
func (s *actualState) claim(app, version string, index int, now, until time.Time, checkRunning bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := pendingKey(app, version, index)
	if t, ok := s.pending[k]; ok && t.After(now) {
		return false
	}
	for _, i := range s.apps[app] {
		if checkRunning && i.version == version && i.index == index && (i.state == protocol.StateRunning || i.state == protocol.StateStarting) {
			return false
		}
	}
	s.pending[k] = until
	return true
}

func (s *actualState) release(app, version string, index int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, pendingKey(app, version, index))
}

func (c *Controller) onHeartbeat(m *bus.Msg) {
	hb, err := protocol.Decode[protocol.Heartbeat](m.Data)
	if err != nil {
		c.log.Debug("heartbeat-invalid", "error", err)
		return
	}
	now := c.now()
	for _, d := range hb.Droplets {
		c.actual.observe(hb.DEA, d, now)
	}
}

func (c *Controller) onExited(m *bus.Msg) {
	e, err := protocol.Decode[protocol.Exited](m.Data)
	if err != nil {
		c.log.Debug("exited-invalid", "error", err)
		return
	}
	c.actual.exited(e, c.now())
	if e.Reason == protocol.ReasonCrashed {
		ts := time.Unix(e.CrashTimestamp, 0)
		if e.CrashTimestamp == 0 {
			ts = c.now()
		}
		_, err := c.deps.Store.AddCrash(context.Background(), store.Crash{AppID: string(e.Droplet), InstanceID: e.Instance, Index: e.Index, Time: ts, ExitStatus: e.ExitStatus, Reason: e.Reason})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			c.log.Warn("crash-record-failed", "app", e.Droplet, "error", err)
		}
	}
}

func (c *Controller) publish(subject string, v any) {
	if err := bus.PublishJSON(c.deps.Bus, subject, v); err != nil {
		c.log.Warn("publish-failed", "subject", subject, "error", err)
	}
}

// publishUpdated tells health managers to reload the app's desired state.
func (c *Controller) publishUpdated(appID string) {
	c.publish(protocol.DropletUpdated, protocol.Updated{Droplet: protocol.AppID(appID)})
}

func (c *Controller) stopAll(appID string) {
	c.publish(protocol.DEAStop, protocol.Stop{Droplet: protocol.AppID(appID)})
}

// startIndices places and starts the given indices of a one after the
// other. Placing them one at a time lets each winner's reservation weigh in
// the next placement (a DEA already running an instance of the app answers
// later), so the instances of one app spread over DEAs; concurrent discovers
// would all see the same idle DEAs and could pile onto one. The best DEA
// answers a discover at once, so this costs about a bus round trip per
// instance. It returns ErrNoPlaceToRun if any index could not be placed.
func (c *Controller) startIndices(ctx context.Context, a store.App, indices []int) error {
	if len(indices) == 0 {
		return nil
	}
	start, err := c.startTemplate(ctx, a)
	if err != nil {
		return err
	}
	var failed []int
	for _, i := range indices {
		if err := c.startOne(ctx, a, start, i, nil); err != nil {
			failed = append(failed, i)
		}
	}
	if len(failed) > 0 {
		return ErrNoPlaceToRun.with(fmt.Sprintf("no DEA can run %s (indices %v)", a.Name, failed))
	}
	return nil
}

// startOne places index i of a and sends it the start message; a start
// already in progress for that index is skipped.
//
// hm is the health manager's request that asked for the start, or nil when
// the controller acts on its own. A START whose reason is a crash is trusted
// over the controller's heartbeat view: the health manager reacts to the
// DEA's droplet.exited at once, so its request can arrive before that same
// message reaches this controller, and refusing it would leave the index
// down until the health manager retries. Only a start already in flight is
// de-duplicated then.
func (c *Controller) startOne(ctx context.Context, a store.App, start protocol.Start, i int, hm *protocol.HMRequest) error {
	now := c.now()
	flapping := hm != nil && hm.Flapping
	checkRunning := hm == nil || hm.Reason != hmReasonCrashed
	if !c.actual.claim(a.ID, a.Version, i, now, now.Add(c.cfg.StartPending), checkRunning) {
		c.log.Debug("start-skipped-in-progress", "app", a.ID, "index", i)
		return nil
	}
	dea, err := c.discover(ctx, a, i)
	if err != nil {
		c.actual.release(a.ID, a.Version, i)
		c.log.Warn("placement-failed", "app", a.ID, "index", i, "error", err)
		c.appLog(a.ID, i, fmt.Sprintf("placement of instance %d failed: %v", i, err))
		c.m.placements.WithLabelValues("failed").Inc()
		return err
	}
	start.Index = i
	start.Flapping = flapping
	c.publish(protocol.DEAStartSubject(dea), start)
	c.m.placements.WithLabelValues("placed").Inc()
	c.log.Info("instance-start-sent", "app", a.ID, "index", i, "version", a.Version, "dea", dea)
	return nil
}

// discover asks dea.discover for index i until a DEA answers.
func (c *Controller) discover(ctx context.Context, a store.App, i int) (string, error) {
	q := protocol.Discover{
		Droplet: protocol.AppID(a.ID), Name: a.Name, Runtime: a.Runtime, Sha: a.DropletHash, Stack: a.Stack, Index: i,
		Limits: protocol.Limits{Mem: a.MemoryMB, Disk: a.DiskMB, FDs: a.FDs},
	}
	var last error
	for attempt := 0; attempt < c.cfg.DiscoverAttempts; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, c.cfg.DiscoverTimeout)
		var hello protocol.DEAHello
		err := bus.RequestJSON(rctx, c.deps.Bus, protocol.DEADiscover, q, &hello)
		cancel()
		if err == nil && hello.ID != "" {
			return hello.ID, nil
		}
		if err == nil {
			err = errors.New("reply without id")
		}
		last = err
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, bus.ErrNoResponders) {
			// Nobody listens: wait a little before asking again, so that a
			// DEA coming up in the meantime can be found.
			select {
			case <-ctx.Done():
			case <-time.After(c.cfg.DiscoverTimeout / 4):
			}
		}
	}
	return "", fmt.Errorf("%w after %d attempts: %v", ErrNoDEA, c.cfg.DiscoverAttempts, last)
}

// startTemplate builds the start message of a without the index.
func (c *Controller) startTemplate(ctx context.Context, a store.App) (protocol.Start, error) {
	if a.DropletHash == "" {
		return protocol.Start{}, ErrInvalidApp.with("app is not staged")
	}
	svcs, err := c.serviceBindings(ctx, a.ID)
	if err != nil {
		return protocol.Start{}, err
	}
	return protocol.Start{
		Droplet: protocol.AppID(a.ID), Name: a.Name, URIs: orEmpty(a.URIs), Runtime: a.Runtime, Framework: a.Framework,
		SHA1: a.DropletHash, ExecutableURI: c.dropletURL(a.ID, a.DropletHash), Version: a.Version,
		Services: svcs, Limits: protocol.Limits{Mem: a.MemoryMB, Disk: a.DiskMB, FDs: a.FDs}, Env: orEmpty(a.Env),
		Users: []string{a.Owner}, Stack: a.Stack, Command: a.Command,
		HealthCheckType: a.HealthCheckType, HealthCheckEndpoint: a.HealthCheckEndpoint, HealthCheckTimeout: a.HealthCheckTimeout,
	}, nil
}

// serviceBindings returns the services bound to an app in the start
// message's shape (the DEA turns them into VCAP_SERVICES).
func (c *Controller) serviceBindings(ctx context.Context, appID string) ([]protocol.ServiceBinding, error) {
	bs, err := c.deps.Store.ListBindings(ctx, appID, "")
	if err != nil {
		return nil, fmt.Errorf("list bindings: %w", err)
	}
	out := []protocol.ServiceBinding{}
	for _, b := range bs {
		si, err := c.deps.Store.GetServiceInstance(ctx, b.InstanceID)
		if err != nil {
			continue
		}
		creds := map[string]any{}
		if len(b.Credentials) > 0 {
			_ = json.Unmarshal(b.Credentials, &creds)
		}
		out = append(out, protocol.ServiceBinding{Name: si.Name, Label: si.Label, Vendor: si.Label, Plan: si.Plan, Type: serviceType(si.Label), Credentials: creds})
	}
	return out, nil
}

// dropletURL returns a signed, expiring URL of a droplet for DEAs.
func (c *Controller) dropletURL(appID, hash string) string {
	exp := c.now().Add(c.cfg.DropletURLTTL).Unix()
	sig := fmt.Sprintf("%x", c.mac("droplet", appID+"/"+hash+"/"+strconv.FormatInt(exp, 10)))
	return fmt.Sprintf("%s/staged_droplets/%s/%s?expires=%d&signature=%s", strings.TrimRight(c.cfg.ExternalURL, "/"), url.PathEscape(appID), hash, exp, sig)
}

// stagedDroplet is GET /staged_droplets/:id/:hash: the droplet, for a DEA
// holding a valid signed URL.
func (c *Controller) stagedDroplet(k *call) error {
	id, hash := k.param("id"), k.param("hash")
	q := k.r.URL.Query()
	exp, err := strconv.ParseInt(q.Get("expires"), 10, 64)
	want := fmt.Sprintf("%x", c.mac("droplet", id+"/"+hash+"/"+q.Get("expires")))
	if err != nil || c.now().Unix() > exp || !constantEqual(want, q.Get("signature")) {
		return ErrForbidden
	}
	ds, err := c.deps.Store.Droplets(k.r.Context(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("droplets: %w", err)
	}
	known := false
	for _, d := range ds {
		known = known || d.Hash == hash
	}
	if !known {
		return ErrAppNotFound
	}
	b, err := c.deps.Blobs.Open(k.r.Context(), blobstore.KindDroplet, hash)
	if errors.Is(err, blobstore.ErrNotFound) {
		return ErrAppNotFound
	}
	if err != nil {
		return fmt.Errorf("open droplet: %w", err)
	}
	defer b.Close()
	k.w.Header().Set("Content-Type", "application/octet-stream")
	k.w.Header().Set("ETag", `"`+hash+`"`)
	http.ServeContent(k.w, k.r, hash+".tgz", time.Time{}, b)
	return nil
}

// onHMRequest handles a health manager's START or STOP, idempotently.
func (c *Controller) onHMRequest(m *bus.Msg) {
	req, err := protocol.Decode[protocol.HMRequest](m.Data)
	if err != nil {
		c.log.Debug("hm-request-invalid", "error", err)
		return
	}
	c.m.hmRequests.WithLabelValues(req.Op).Inc()
	// Bound the requests handled at once; the health manager asks again
	// for what is still wrong at its next analysis.
	select {
	case c.hmSem <- struct{}{}:
	default:
		c.log.Warn("hm-request-dropped", "app", req.Droplet, "op", req.Op)
		return
	}
	if !c.goBackground(func(ctx context.Context) {
		defer func() { <-c.hmSem }()
		c.handleHMRequest(ctx, req)
	}) {
		<-c.hmSem
	}
}

// hmReasonCrashed is the reason health managers give a START for an index
// whose instance crashed (healthmgr/drift's ReasonCrashed).
const hmReasonCrashed = "crashed"

func (c *Controller) handleHMRequest(ctx context.Context, req protocol.HMRequest) {
	id := string(req.Droplet)
	a, err := c.deps.Store.GetApp(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		if req.Op == protocol.OpStop {
			c.stopAll(id)
		}
		c.log.Info("hm-request-ignored", "app", id, "op", req.Op, "reason", "no such app")
		return
	}
	if err != nil {
		c.log.Warn("hm-request-failed", "app", id, "error", err)
		return
	}
	switch req.Op {
	case protocol.OpStart:
		if a.State != store.AppStarted || a.Version != req.Version || a.PackageState != store.PackageStaged {
			c.log.Info("hm-request-ignored", "app", id, "op", req.Op, "version", req.Version, "reason", "app stopped or other version")
			return
		}
		start, err := c.startTemplate(ctx, a)
		if err != nil {
			c.log.Warn("hm-request-failed", "app", id, "error", err)
			return
		}
		for _, i := range req.Indices {
			if i >= a.Instances {
				c.log.Info("hm-request-ignored", "app", id, "index", i, "reason", "index beyond instances")
				continue
			}
			_ = c.startOne(ctx, a, start, i, &req)
		}
	case protocol.OpStop:
		// Every instance of a STOPPED app is extra, whatever the health
		// manager last read; for a STARTED app the request must be based
		// on the current desired state.
		if a.State == store.AppStarted && req.LastUpdated != a.UpdatedAt.Unix() {
			c.log.Info("hm-request-ignored", "app", id, "op", req.Op, "reason", "stale last_updated")
			return
		}
		c.publish(protocol.DEAStop, protocol.Stop{Droplet: protocol.AppID(id), Instances: req.Instances})
	}
}

// bulkApps is GET /bulk/apps?batch_size=&bulk_token=.
func (c *Controller) bulkApps(k *call) error {
	q := k.r.URL.Query()
	size := 200
	if s := q.Get("batch_size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return ErrBadRequest.with("batch_size must be a positive integer")
		}
		size = n
	}
	var cursor string
	if t := q.Get("bulk_token"); t != "" {
		var tok map[string]any
		if err := json.Unmarshal([]byte(t), &tok); err != nil {
			return ErrBadRequest.with("bulk_token must be a JSON object")
		}
		if s, ok := tok["cursor"].(string); ok {
			cursor = s
		}
	}
	page, err := c.deps.Store.DesiredStates(k.r.Context(), store.ListOptions{Limit: size, Cursor: cursor})
	if errors.Is(err, store.ErrInvalid) {
		return ErrBadRequest.with("bad bulk_token")
	}
	if err != nil {
		return fmt.Errorf("desired states: %w", err)
	}
	out := protocol.BulkAppsPage{Results: map[string]protocol.BulkApp{}, BulkToken: map[string]any{}}
	for _, d := range page.Items {
		out.Results[d.AppID] = protocol.BulkApp{
			ID: protocol.AppID(d.AppID), Name: d.Name, Version: d.Version, Instances: d.Instances,
			State: d.State, PackageState: d.PackageState, UpdatedAt: d.UpdatedAt.Unix(),
		}
	}
	if page.Next != "" {
		out.BulkToken["cursor"] = page.Next
	}
	writeJSON(k.w, http.StatusOK, out)
	return nil
}
