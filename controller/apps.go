package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/controller/store"
)

// Default resources of a new app (the original's DB defaults).
const (
	defaultMemoryMB = 256
	defaultDiskMB   = 2048
	defaultFDs      = 256
)

var appNameRE = regexp.MustCompile(`^[\w-]+$`)

// appJSON is an app as GET /apps/:name renders it (PROTOCOL.md §1.6).
type appJSON struct {
	Name             string        `json:"name"`
	Staging          stagingJSON   `json:"staging"`
	URIs             []string      `json:"uris"`
	Instances        int           `json:"instances"`
	RunningInstances *int          `json:"runningInstances"`
	Resources        resourcesJSON `json:"resources"`
	State            string        `json:"state"`
	Services         []string      `json:"services"`
	Version          string        `json:"version"`
	Env              []string      `json:"env"`
	Meta             metaJSON      `json:"meta"`
	// kiln extensions.
	PackageState        string `json:"package_state,omitempty"`
	StagingError        string `json:"staging_error,omitempty"`
	HealthCheckType     string `json:"health_check_type,omitempty"`
	HealthCheckEndpoint string `json:"health_check_http_endpoint,omitempty"`
	HealthCheckTimeout  int    `json:"health_check_timeout,omitempty"`
}

type stagingJSON struct {
	Model     string `json:"model"`
	Stack     string `json:"stack"`
	Command   string `json:"command,omitempty"`
	Buildpack string `json:"buildpack,omitempty"`
}

type resourcesJSON struct {
	Memory int `json:"memory"`
	Disk   int `json:"disk"`
	FDs    int `json:"fds"`
}

type metaJSON struct {
	Version int64  `json:"version"`
	Created int64  `json:"created"`
	Command string `json:"command,omitempty"`
}

// appBody is the body of POST /apps and PUT /apps/:name; absent fields are
// nil and left unchanged.
type appBody struct {
	Name    *string `json:"name"`
	Staging *struct {
		Framework *string `json:"framework"`
		Runtime   *string `json:"runtime"`
		Model     *string `json:"model"`
		Stack     *string `json:"stack"`
		Command   *string `json:"command"`
		Buildpack *string `json:"buildpack"`
	} `json:"staging"`
	URIs      *[]string `json:"uris"`
	Instances *int      `json:"instances"`
	Resources *struct {
		Memory *int `json:"memory"`
		Disk   *int `json:"disk"`
		FDs    *int `json:"fds"`
	} `json:"resources"`
	State    *string   `json:"state"`
	Env      *[]string `json:"env"`
	Services *[]string `json:"services"`
	Meta     *struct {
		Version *int64 `json:"version"`
	} `json:"meta"`
	HealthCheckType     *string `json:"health_check_type"`
	HealthCheckEndpoint *string `json:"health_check_http_endpoint"`
	HealthCheckTimeout  *int    `json:"health_check_timeout"`
	// Debug is a debug mode ("run", "suspend"); kiln does not debug apps.
	Debug *string `json:"debug"`
}

// appView renders a.
func (c *Controller) appView(a store.App, bound []string) appJSON {
	running := 0
	if a.State == store.AppStarted {
		running = c.actual.running(a.ID, a.Version, a.Instances, c.now().Add(-c.cfg.HeartbeatTTL))
	}
	return appJSON{
		Name:                a.Name,
		Staging:             stagingJSON{Model: a.Framework, Stack: a.Runtime, Command: a.Command, Buildpack: a.Buildpack},
		URIs:                orEmpty(a.URIs),
		Instances:           a.Instances,
		RunningInstances:    &running,
		Resources:           resourcesJSON{Memory: a.MemoryMB, Disk: a.DiskMB, FDs: a.FDs},
		State:               a.State,
		Services:            orEmpty(bound),
		Version:             a.Version,
		Env:                 orEmpty(a.Env),
		Meta:                metaJSON{Version: a.Revision, Created: a.CreatedAt.Unix(), Command: a.Command},
		PackageState:        a.PackageState,
		StagingError:        a.StagingError,
		HealthCheckType:     a.HealthCheckType,
		HealthCheckEndpoint: a.HealthCheckEndpoint,
		HealthCheckTimeout:  a.HealthCheckTimeout,
	}
}

// boundNames returns the names of the service instances bound to app.
func (c *Controller) boundNames(ctx context.Context, appID string) ([]string, error) {
	bs, err := c.deps.Store.ListBindings(ctx, appID, "")
	if err != nil {
		return nil, fmt.Errorf("list bindings: %w", err)
	}
	names := make([]string, 0, len(bs))
	for _, b := range bs {
		si, err := c.deps.Store.GetServiceInstance(ctx, b.InstanceID)
		if err != nil {
			continue
		}
		names = append(names, si.Name)
	}
	slices.Sort(names)
	return names, nil
}

// boundByApp maps each of owner's apps to the names of its bound
// instances, with one query per service instance (users have few).
func (c *Controller) boundByApp(ctx context.Context, owner string) (map[string][]string, error) {
	insts, err := c.allInstances(ctx, owner)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, si := range insts {
		bs, err := c.deps.Store.ListBindings(ctx, "", si.ID)
		if err != nil {
			return nil, fmt.Errorf("list bindings: %w", err)
		}
		for _, b := range bs {
			out[b.AppID] = append(out[b.AppID], si.Name)
		}
	}
	return out, nil
}

// appByName finds the effective user's app named by the :name parameter.
func (c *Controller) appByName(k *call) (store.App, error) {
	a, err := c.deps.Store.GetAppByName(k.r.Context(), k.user.Email, k.param("name"))
	if errors.Is(err, store.ErrNotFound) {
		return store.App{}, ErrAppNotFound
	}
	if err != nil {
		return store.App{}, fmt.Errorf("get app: %w", err)
	}
	return a, nil
}

func (c *Controller) allApps(ctx context.Context, owner string) ([]store.App, error) {
	out, err := listAll(ctx, owner, c.deps.Store.ListApps)
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	return out, nil
}

// listAll gathers every page of owner's records from list.
func listAll[T any](ctx context.Context, owner string, list func(context.Context, string, store.ListOptions) (store.Page[T], error)) ([]T, error) {
	var out []T
	opts := store.ListOptions{Limit: store.MaxLimit}
	for {
		page, err := list(ctx, owner, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Items...)
		if page.Next == "" {
			return out, nil
		}
		opts.Cursor = page.Next
	}
}

// quota returns owner's quota: the stored one, else the configured default.
func (c *Controller) quota(ctx context.Context, u store.User) (store.Quota, error) {
	q, err := c.deps.Store.GetQuota(ctx, u.Email)
	if errors.Is(err, store.ErrNotFound) {
		if c.isAdmin(u) {
			return c.cfg.AdminQuota, nil
		}
		return c.cfg.UserQuota, nil
	}
	if err != nil {
		return store.Quota{}, fmt.Errorf("get quota: %w", err)
	}
	return q, nil
}

// getApp is GET /apps/:name.
func (c *Controller) getApp(k *call) error {
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	bound, err := c.boundNames(k.r.Context(), a.ID)
	if err != nil {
		return err
	}
	writeJSON(k.w, http.StatusOK, c.appView(a, bound))
	return nil
}

// listApps is GET /apps.
func (c *Controller) listApps(k *call) error {
	apps, err := c.allApps(k.r.Context(), k.user.Email)
	if err != nil {
		return err
	}
	bound, err := c.boundByApp(k.r.Context(), k.user.Email)
	if err != nil {
		return err
	}
	// Sort indices, not the large records.
	order := make([]int, len(apps))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(x, y int) int { return strings.Compare(apps[x].Name, apps[y].Name) })
	out := make([]appJSON, 0, len(apps))
	for _, i := range order {
		names := bound[apps[i].ID]
		slices.Sort(names)
		out = append(out, c.appView(apps[i], names))
	}
	writeJSON(k.w, http.StatusOK, out)
	return nil
}

// createApp is POST /apps.
func (c *Controller) createApp(k *call) error {
	ctx := k.r.Context()
	var body appBody
	if err := c.decodeBody(k, &body); err != nil {
		return err
	}
	if body.Name == nil || !appNameRE.MatchString(*body.Name) || len(*body.Name) > 255 {
		return ErrInvalidApp.with("name must match ^[\\w-]+$")
	}
	a := store.App{
		Name: *body.Name, Owner: k.user.Email, State: store.AppStopped, Instances: 1,
		MemoryMB: defaultMemoryMB, DiskMB: defaultDiskMB, FDs: defaultFDs, PackageState: store.PackagePending,
	}
	q, usage, err := c.quotaUsage(ctx, *k.user)
	if err != nil {
		return err
	}
	if usage.Apps >= q.Apps {
		return ErrTooManyApps.with(strconv.Itoa(usage.Apps+1), strconv.Itoa(q.Apps))
	}
	if err := c.applyBody(k, &a, &body, q); err != nil {
		return err
	}
	// New apps start STOPPED whatever the body says.
	a.State = store.AppStopped
	a.Version = newVersion(hex12(), "")
	created, err := c.deps.Store.CreateApp(ctx, a)
	switch {
	case errors.Is(err, store.ErrExists):
		return ErrInvalidApp.with(fmt.Sprintf("an app named %q already exists", a.Name))
	case errors.Is(err, store.ErrURITaken):
		return ErrURITaken.with(strings.Join(a.URIs, ", "))
	case errors.Is(err, store.ErrInvalid):
		return ErrInvalidApp.with(clip(err.Error()))
	case err != nil:
		return fmt.Errorf("create app: %w", err)
	}
	if body.Services != nil {
		if err := c.setBindings(ctx, created, *body.Services); err != nil {
			_ = c.deps.Store.DeleteApp(context.WithoutCancel(ctx), created.ID)
			return err
		}
	}
	c.event(ctx, created.ID, "app-created", "created by "+k.caller.Email)
	c.log.Info("app-created", "app", created.ID, "name", created.Name, "owner", created.Owner)
	loc := strings.TrimRight(c.cfg.ExternalURL, "/") + "/apps/" + url.PathEscape(created.Name)
	k.w.Header().Set("Location", loc)
	writeJSON(k.w, http.StatusFound, map[string]string{"result": "success", "redirect": loc})
	return nil
}

// applyBody copies the fields of body present into a, validating them.
// It does not touch State, Instances quota or services.
func (c *Controller) applyBody(k *call, a *store.App, body *appBody, q store.Quota) error {
	if st := body.Staging; st != nil {
		fw, rt := a.Framework, a.Runtime
		if st.Model != nil {
			fw = *st.Model
		}
		if st.Framework != nil {
			fw = *st.Framework
		}
		if st.Stack != nil {
			rt = *st.Stack
		}
		if st.Runtime != nil {
			rt = *st.Runtime
		}
		fw, rt, bp, err := c.checkFramework(fw, rt)
		if err != nil {
			return err
		}
		if fw != a.Framework || a.CreatedAt.IsZero() {
			// The framework picks the buildpack; a body echoing the same
			// framework back (as clients do on every update) keeps the one
			// chosen before.
			a.Buildpack = bp
		}
		a.Framework, a.Runtime = fw, rt
		if st.Buildpack != nil {
			a.Buildpack = *st.Buildpack
		}
		if st.Command != nil {
			a.Command = *st.Command
		}
	}
	if body.Instances != nil {
		if *body.Instances < 0 || *body.Instances > 1000 {
			return ErrInvalidApp.with("instances must be 0 to 1000")
		}
		a.Instances = *body.Instances
	}
	if r := body.Resources; r != nil {
		if r.Memory != nil {
			if *r.Memory <= 0 {
				return ErrInvalidApp.with("memory must be positive")
			}
			a.MemoryMB = *r.Memory
		}
		if r.Disk != nil {
			if *r.Disk <= 0 {
				return ErrInvalidApp.with("disk must be positive")
			}
			a.DiskMB = *r.Disk
		}
		if r.FDs != nil {
			if *r.FDs <= 0 {
				return ErrInvalidApp.with("fds must be positive")
			}
			a.FDs = *r.FDs
		}
	}
	if body.URIs != nil {
		uris, err := c.checkURIs(k, *body.URIs, q)
		if err != nil {
			return err
		}
		a.URIs = uris
	}
	if body.Env != nil {
		env, err := checkEnv(*body.Env)
		if err != nil {
			return err
		}
		a.Env = env
	}
	if body.HealthCheckType != nil {
		switch *body.HealthCheckType {
		case "", protocol.HealthCheckPort, protocol.HealthCheckHTTP, protocol.HealthCheckProcess, protocol.HealthCheckNone:
			a.HealthCheckType = *body.HealthCheckType
		default:
			return ErrInvalidApp.with("unknown health_check_type")
		}
	}
	if body.HealthCheckEndpoint != nil {
		if e := *body.HealthCheckEndpoint; e != "" && !strings.HasPrefix(e, "/") {
			return ErrInvalidApp.with("health_check_http_endpoint must start with /")
		}
		a.HealthCheckEndpoint = *body.HealthCheckEndpoint
	}
	if body.HealthCheckTimeout != nil {
		if *body.HealthCheckTimeout < 0 {
			return ErrInvalidApp.with("negative health_check_timeout")
		}
		a.HealthCheckTimeout = *body.HealthCheckTimeout
	}
	return nil
}

// checkFramework normalizes and validates a framework and runtime and
// returns the buildpack the framework stages with.
func (c *Controller) checkFramework(fw, rt string) (string, string, string, error) {
	if legacy, ok := legacyFrameworks()[fw]; ok {
		fw = legacy[0]
		if rt == "" {
			rt = legacy[1]
		}
	}
	if fw == "" {
		if rt != "" {
			if _, ok := c.cfg.Runtimes[rt]; !ok {
				return "", "", "", ErrInvalidRuntime.with(rt, fw)
			}
		}
		return "", rt, "", nil
	}
	def, ok := c.cfg.Frameworks[fw]
	if !ok {
		return "", "", "", ErrInvalidFramework.with(fw)
	}
	if rt == "" {
		rt = def.Runtimes[0]
	}
	if !slices.Contains(def.Runtimes, rt) {
		return "", "", "", ErrInvalidRuntime.with(rt, fw)
	}
	return fw, rt, def.Buildpack, nil
}

// checkURIs normalizes URIs (scheme stripped, lowercased, sorted, unique)
// and checks their syntax, the quota and the domain.
func (c *Controller) checkURIs(k *call, in []string, q store.Quota) ([]string, error) {
	var out []string
	for _, u := range in {
		u = strings.ToLower(strings.TrimSpace(u))
		u = strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
		u = strings.TrimRight(u, "/")
		host, _, _ := strings.Cut(u, "/")
		if host == "" || len(u) > 255 || strings.ContainsAny(u, " \t\r\n?#\\@") {
			return nil, ErrInvalidURI.with(clip(u))
		}
		if c.cfg.Domain != "" && !k.admin && host != c.cfg.Domain && !strings.HasSuffix(host, "."+c.cfg.Domain) {
			return nil, ErrExternalURIs
		}
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	if len(out) > q.URIs {
		return nil, ErrTooManyURIs.with(strconv.Itoa(len(out)), strconv.Itoa(q.URIs))
	}
	slices.Sort(out)
	return out, nil
}

// checkEnv validates KEY=VALUE entries, keeping the first of duplicates.
func checkEnv(in []string) ([]string, error) {
	var out []string
	for _, e := range in {
		key, _, ok := strings.Cut(e, "=")
		if !ok || strings.TrimSpace(key) == "" {
			return nil, ErrInvalidApp.with(fmt.Sprintf("env entry %q is not KEY=VALUE", clip(e)))
		}
		lk := strings.ToLower(key)
		if strings.HasPrefix(lk, "vcap_") || strings.HasPrefix(lk, "vmc_") {
			return nil, ErrForbidden
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// quotaUsage returns u's quota (see quota) and what u uses of it.
func (c *Controller) quotaUsage(ctx context.Context, u store.User) (store.Quota, store.Usage, error) {
	q, err := c.quota(ctx, u)
	if err != nil {
		return store.Quota{}, store.Usage{}, err
	}
	usage, err := c.deps.Store.Usage(ctx, u.Email)
	if err != nil {
		return store.Quota{}, store.Usage{}, fmt.Errorf("usage: %w", err)
	}
	return q, usage, nil
}

// memoryCheck enforces the memory quota for an app going to a's state.
func (c *Controller) memoryCheck(ctx context.Context, u store.User, old, a store.App, q store.Quota) error {
	if a.State != store.AppStarted {
		return nil
	}
	usage, err := c.deps.Store.Usage(ctx, u.Email)
	if err != nil {
		return fmt.Errorf("usage: %w", err)
	}
	need := a.MemoryMB * a.Instances
	if old.State == store.AppStarted {
		need -= old.MemoryMB * old.Instances
	}
	if need > q.MemoryMB-usage.MemoryMB {
		return ErrNotEnoughMemory.with(fmt.Sprintf("%dM", q.MemoryMB))
	}
	return nil
}

// updateApp is PUT /apps/:name.
func (c *Controller) updateApp(k *call) error {
	ctx := k.r.Context()
	var body appBody
	if err := c.decodeBody(k, &body); err != nil {
		return err
	}
	old, err := c.appByName(k)
	if err != nil {
		return err
	}
	if body.Meta != nil && body.Meta.Version != nil && *body.Meta.Version != old.Revision {
		return ErrLocking
	}
	a := old
	a.URIs = slices.Clone(old.URIs)
	a.Env = slices.Clone(old.Env)
	if body.State != nil {
		switch strings.ToUpper(*body.State) {
		case store.AppStarted:
			a.State = store.AppStarted
		case store.AppStopped:
			a.State = store.AppStopped
		default:
			return ErrInvalidApp.with("state must be STARTED or STOPPED")
		}
	}
	q, err := c.quota(ctx, *k.user)
	if err != nil {
		return err
	}
	if body.Name != nil && *body.Name != old.Name {
		return ErrInvalidApp.with("an app cannot be renamed")
	}
	if err := c.applyBody(k, &a, &body, q); err != nil {
		return err
	}
	if body.Debug != nil && *body.Debug != "" && a.State == store.AppStarted {
		return ErrDebugDisallowed
	}
	if err := c.memoryCheck(ctx, *k.user, old, a, q); err != nil {
		return err
	}
	starting := old.State != store.AppStarted && a.State == store.AppStarted
	stopping := old.State == store.AppStarted && a.State != store.AppStarted
	if starting && a.PackageHash == "" {
		return ErrInvalidApp.with("no application bits uploaded")
	}
	restart := a.State == store.AppStarted && !starting && a.PackageState == store.PackageStaged && needsRestart(old, a)
	if starting || restart {
		a.Version = newVersion(versionSeed(a), old.Version)
	}
	if starting && a.PackageState == store.PackageFailed {
		a.PackageState = store.PackagePending
	}
	saved, err := c.deps.Store.UpdateApp(ctx, a)
	switch {
	case errors.Is(err, store.ErrURITaken):
		return ErrURITaken.with(strings.Join(a.URIs, ", "))
	case errors.Is(err, store.ErrInvalid):
		return ErrInvalidApp.with(clip(err.Error()))
	case err != nil:
		return fmt.Errorf("update app: %w", err)
	}
	if body.Services != nil {
		if err := c.setBindings(ctx, saved, *body.Services); err != nil {
			return err
		}
	}
	if err := c.applyChanges(ctx, old, saved, starting, stopping, restart); err != nil {
		return err
	}
	k.w.WriteHeader(http.StatusOK)
	return nil
}

// applyChanges sends the messages a desired-state change needs.
func (c *Controller) applyChanges(ctx context.Context, old, a store.App, starting, stopping, restart bool) error {
	defer c.publishUpdated(a.ID)
	switch {
	case stopping:
		c.rollout.cancel(a.ID)
		c.stopAll(a.ID)
		c.event(ctx, a.ID, "app-stopped", "")
		return nil
	case starting:
		c.event(ctx, a.ID, "app-started", "version "+a.Version)
		if a.PackageState != store.PackageStaged {
			c.stager.enqueue(a.ID, a.PackageHash)
			return nil
		}
		return c.startIndices(ctx, a, seq(0, a.Instances))
	case a.State != store.AppStarted:
		return nil
	}
	if restart {
		c.startRollout(a.ID, old.Version, a.Version, "settings changed")
	}
	if a.Instances > old.Instances && a.PackageState == store.PackageStaged && !restart {
		if err := c.startIndices(ctx, a, seq(old.Instances, a.Instances)); err != nil {
			return err
		}
	}
	if a.Instances < old.Instances {
		c.publish(protocol.DEAStop, protocol.Stop{Droplet: protocol.AppID(a.ID), Indices: seq(a.Instances, old.Instances)})
	}
	if !slices.Equal(old.URIs, a.URIs) && a.PackageState == store.PackageStaged {
		c.publish(protocol.DEAUpdate, protocol.Update{Droplet: protocol.AppID(a.ID), URIs: orEmpty(a.URIs)})
	}
	return nil
}

// orEmpty returns xs, or an empty slice for nil: JSON has [] where a nil
// slice would be null.
func orEmpty[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}

// needsRestart reports whether changes between old and a need new instances.
func needsRestart(old, a store.App) bool {
	return !slices.Equal(old.Env, a.Env) || old.MemoryMB != a.MemoryMB || old.DiskMB != a.DiskMB ||
		old.FDs != a.FDs || old.Command != a.Command || old.HealthCheckType != a.HealthCheckType ||
		old.HealthCheckEndpoint != a.HealthCheckEndpoint || old.HealthCheckTimeout != a.HealthCheckTimeout
}

// deleteApp is DELETE /apps/:name.
func (c *Controller) deleteApp(k *call) error {
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	if err := c.removeApp(k.r.Context(), a); err != nil {
		return err
	}
	k.w.WriteHeader(http.StatusOK)
	return nil
}

// removeApp stops an app's instances, unbinds its services and deletes it.
func (c *Controller) removeApp(ctx context.Context, a store.App) error {
	c.rollout.forget(a.ID)
	c.stager.cancel(a.ID)
	c.stopAll(a.ID)
	bs, err := c.deps.Store.ListBindings(ctx, a.ID, "")
	if err != nil {
		return fmt.Errorf("list bindings: %w", err)
	}
	for _, b := range bs {
		if err := c.unbind(ctx, b); err != nil {
			return err
		}
	}
	if err := c.deps.Store.DeleteApp(ctx, a.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete app: %w", err)
	}
	c.actual.forget(a.ID)
	c.logs.forget(a.ID)
	c.publishUpdated(a.ID)
	c.log.Info("app-deleted", "app", a.ID, "name", a.Name)
	return nil
}

// versionSeed is the hash a version starts with.
func versionSeed(a store.App) string {
	switch {
	case a.DropletHash != "":
		return a.DropletHash
	case a.PackageHash != "":
		return a.PackageHash
	}
	return hex12()
}

// newVersion returns "<seed>-<n>": n is the previous run count plus one
// when prev has the same seed, else 0.
func newVersion(seed, prev string) string {
	if rest, ok := strings.CutPrefix(prev, seed+"-"); ok {
		if n, err := strconv.Atoi(rest); err == nil {
			return seed + "-" + strconv.Itoa(n+1)
		}
	}
	return seed + "-0"
}

func hex12() string { return fmt.Sprintf("%x", randomBytes(6)) }

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// mutateApp applies f to the current app and saves it, retrying when
// someone else changed it meanwhile. f returning an error aborts.
func (c *Controller) mutateApp(ctx context.Context, id string, f func(*store.App) error) (store.App, error) {
	for attempt := 0; ; attempt++ {
		a, err := c.deps.Store.GetApp(ctx, id)
		if err != nil {
			return store.App{}, fmt.Errorf("get app %s: %w", id, err)
		}
		if err := f(&a); err != nil {
			return store.App{}, err
		}
		saved, err := c.deps.Store.UpdateApp(ctx, a)
		if errors.Is(err, store.ErrConflict) && attempt < 20 {
			continue
		}
		if err != nil {
			return store.App{}, fmt.Errorf("update app %s: %w", id, err)
		}
		return saved, nil
	}
}

func (c *Controller) event(ctx context.Context, appID, typ, desc string) {
	if _, err := c.deps.Store.AddEvent(context.WithoutCancel(ctx), store.AppEvent{AppID: appID, Type: typ, Description: desc}); err != nil && !errors.Is(err, store.ErrNotFound) {
		c.log.Warn("event-failed", "app", appID, "type", typ, "error", err)
	}
}
