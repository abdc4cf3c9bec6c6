package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/kiln-paas/kiln/controller/store"
	"github.com/kiln-paas/kiln/services"
)

// offering is one service of a broker's catalog.
type offering struct {
	brokerName string // "" for built-in brokers
	broker     services.Broker
	svc        services.Service
}

// offerings lists every service of the built-in and registered brokers.
func (c *Controller) offerings(ctx context.Context) ([]offering, error) {
	var out []offering
	names := make([]string, 0, len(c.deps.Builtin))
	for n := range c.deps.Builtin {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b := c.deps.Builtin[n]
		cat, err := b.Catalog(ctx)
		if err != nil {
			c.log.Warn("catalog-failed", "broker", n, "error", err)
			continue
		}
		for _, s := range cat.Services {
			out = append(out, offering{broker: b, svc: s})
		}
	}
	if c.deps.Brokers == nil {
		return out, nil
	}
	recs, err := c.deps.Store.ListBrokers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list brokers: %w", err)
	}
	for _, r := range recs {
		var cat services.Catalog
		if len(r.Catalog) == 0 || json.Unmarshal(r.Catalog, &cat) != nil {
			continue
		}
		b, err := c.deps.Brokers(r)
		if err != nil {
			c.log.Warn("broker-client-failed", "broker", r.Name, "error", err)
			continue
		}
		for _, s := range cat.Services {
			out = append(out, offering{brokerName: r.Name, broker: b, svc: s})
		}
	}
	return out, nil
}

// offeringFor finds the offering of an instance.
func (c *Controller) offeringFor(ctx context.Context, si store.ServiceInstance) (offering, services.Plan, error) {
	offs, err := c.offerings(ctx)
	if err != nil {
		return offering{}, services.Plan{}, err
	}
	for _, o := range offs {
		if o.svc.Name == si.Label && o.brokerName == si.BrokerName {
			for _, p := range o.svc.Plans {
				if p.Name == si.Plan {
					return o, p, nil
				}
			}
		}
	}
	return offering{}, services.Plan{}, ErrServiceGateway.with("the service offering " + si.Label + " is gone")
}

// serviceType synthesizes the legacy type from a service name.
func serviceType(name string) string {
	switch name {
	case "mysql", "postgresql", "postgres":
		return "database"
	case "redis", "mongodb":
		return "key-value"
	}
	return "generic"
}

func serviceVersion(s services.Service) string {
	if s.Version != "" {
		return s.Version
	}
	return "1.0"
}

// getServiceInfo is GET /info/services.
func (c *Controller) getServiceInfo(k *call) error {
	offs, err := c.offerings(k.r.Context())
	if err != nil {
		return err
	}
	out := map[string]map[string]map[string]any{}
	for _, o := range offs {
		typ := serviceType(o.svc.Name)
		if out[typ] == nil {
			out[typ] = map[string]map[string]any{}
		}
		if out[typ][o.svc.Name] == nil {
			out[typ][o.svc.Name] = map[string]any{}
		}
		plans := slices.Clone(o.svc.Plans)
		sort.Slice(plans, func(i, j int) bool { return plans[i].Name < plans[j].Name })
		tiers := map[string]any{}
		for i, p := range plans {
			tiers[p.Name] = map[string]any{"options": map[string]any{}, "order": i + 1, "description": p.Description}
		}
		desc := o.svc.Description
		if desc == "" {
			desc = "-"
		}
		v := serviceVersion(o.svc)
		out[typ][o.svc.Name][v] = map[string]any{"id": o.svc.ID, "vendor": o.svc.Name, "version": v, "type": typ, "description": desc, "tiers": tiers}
	}
	writeJSON(k.w, http.StatusOK, out)
	return nil
}

type legacyService struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Vendor     string         `json:"vendor"`
	Version    string         `json:"version"`
	Tier       string         `json:"tier"`
	Properties map[string]any `json:"properties"`
	Meta       map[string]any `json:"meta"`
}

func legacyView(si store.ServiceInstance) legacyService {
	return legacyService{
		Name: si.Name, Type: serviceType(si.Label), Vendor: si.Label, Version: "1.0", Tier: si.Plan,
		Properties: map[string]any{},
		Meta:       map[string]any{"created": si.CreatedAt.Unix(), "updated": si.UpdatedAt.Unix(), "tags": []string{si.Label}, "version": 1},
	}
}

func (c *Controller) allInstances(ctx context.Context, owner string) ([]store.ServiceInstance, error) {
	out, err := listAll(ctx, owner, c.deps.Store.ListServiceInstances)
	if err != nil {
		return nil, fmt.Errorf("list service instances: %w", err)
	}
	return out, nil
}

// listServices is GET /services.
func (c *Controller) listServices(k *call) error {
	insts, err := c.allInstances(k.r.Context(), k.user.Email)
	if err != nil {
		return err
	}
	out := []legacyService{}
	for _, si := range insts {
		out = append(out, legacyView(si))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(k.w, http.StatusOK, out)
	return nil
}

func (c *Controller) instanceByAlias(k *call) (store.ServiceInstance, error) {
	si, err := c.deps.Store.GetServiceInstanceByName(k.r.Context(), k.user.Email, k.param("alias"))
	if errors.Is(err, store.ErrNotFound) {
		return si, ErrServiceNotFound
	}
	if err != nil {
		return si, fmt.Errorf("get service: %w", err)
	}
	return si, nil
}

// getService is GET /services/:alias.
func (c *Controller) getService(k *call) error {
	si, err := c.instanceByAlias(k)
	if err != nil {
		return err
	}
	writeJSON(k.w, http.StatusOK, legacyView(si))
	return nil
}

// createService is POST /services: provision an instance.
func (c *Controller) createService(k *call) error {
	ctx := k.r.Context()
	var body struct {
		Name    string `json:"name"`
		Vendor  string `json:"vendor"`
		Version string `json:"version"`
		Tier    string `json:"tier"`
	}
	if err := c.decodeBody(k, &body); err != nil {
		return err
	}
	if body.Name == "" || body.Vendor == "" || !appNameRE.MatchString(body.Name) {
		return ErrBadRequest.with("name and vendor are required")
	}
	q, usage, err := c.quotaUsage(ctx, *k.user)
	if err != nil {
		return err
	}
	if usage.Services >= q.Services {
		return ErrTooManyServices.with(strconv.Itoa(usage.Services+1), strconv.Itoa(q.Services))
	}
	offs, err := c.offerings(ctx)
	if err != nil {
		return err
	}
	var (
		off  *offering
		plan services.Plan
	)
	for i := range offs {
		o := &offs[i]
		if o.svc.Name != body.Vendor || (body.Version != "" && o.svc.Version != "" && serviceVersion(o.svc) != body.Version) {
			continue
		}
		for _, p := range o.svc.Plans {
			if p.Name == body.Tier || ((body.Tier == "" || body.Tier == "free") && off == nil) {
				off, plan = o, p
				if p.Name == body.Tier {
					break
				}
			}
		}
		if off != nil {
			break
		}
	}
	if off == nil {
		return ErrServiceNotFound
	}
	if _, err := c.deps.Store.GetServiceInstanceByName(ctx, k.user.Email, body.Name); err == nil {
		return ErrAlreadyExists.with("service " + body.Name)
	}
	id := uuid.NewString()
	resp, err := off.broker.Provision(ctx, services.ProvisionRequest{InstanceID: id, ServiceID: off.svc.ID, PlanID: plan.ID, AcceptsIncomplete: true})
	if err != nil {
		return ErrServiceGateway.with(clip(err.Error()))
	}
	si := store.ServiceInstance{ID: id, Name: body.Name, Owner: k.user.Email, Label: off.svc.Name, Plan: plan.Name, BrokerName: off.brokerName, DashboardURL: resp.DashboardURL, State: "ready"}
	if resp.Async {
		si.State = "provisioning"
	}
	if _, err := c.deps.Store.CreateServiceInstance(ctx, si); err != nil {
		_, _ = off.broker.Deprovision(context.WithoutCancel(ctx), services.DeprovisionRequest{InstanceID: id, ServiceID: off.svc.ID, PlanID: plan.ID})
		if errors.Is(err, store.ErrExists) {
			return ErrAlreadyExists.with("service " + body.Name)
		}
		return fmt.Errorf("create service instance: %w", err)
	}
	c.log.Info("service-provisioned", "name", si.Name, "label", si.Label, "plan", si.Plan, "owner", si.Owner, "async", resp.Async)
	if resp.Async {
		o, p := *off, plan
		c.goBackground(func(ctx context.Context) { c.pollProvision(ctx, o, p, si, resp.Operation) })
	}
	writeJSON(k.w, http.StatusOK, map[string]any{})
	return nil
}

// pollProvision follows an asynchronous provisioning until it ends and
// records the outcome in the instance's State.
func (c *Controller) pollProvision(ctx context.Context, o offering, p services.Plan, si store.ServiceInstance, op string) {
	t := time.NewTicker(c.cfg.ProvisionPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		lo, err := o.broker.LastOperation(ctx, services.LastOperationRequest{InstanceID: si.ID, ServiceID: o.svc.ID, PlanID: p.ID, Operation: op})
		if err != nil {
			c.log.Warn("provision-poll-failed", "service", si.Name, "error", err)
			continue
		}
		state := ""
		switch lo.State {
		case services.StateSucceeded:
			state = "ready"
		case services.StateFailed:
			state = "failed"
		default:
			continue
		}
		cur, err := c.deps.Store.GetServiceInstance(ctx, si.ID)
		if err != nil {
			return
		}
		cur.State = state
		if _, err := c.deps.Store.UpdateServiceInstance(ctx, cur); err != nil {
			c.log.Warn("provision-record-failed", "service", si.Name, "error", err)
		}
		c.log.Info("service-provision-finished", "service", si.Name, "state", state, "description", lo.Description)
		return
	}
}

// deleteService is DELETE /services/:alias.
func (c *Controller) deleteService(k *call) error {
	si, err := c.instanceByAlias(k)
	if err != nil {
		return err
	}
	if err := c.deprovision(k.r.Context(), si); err != nil {
		return err
	}
	writeJSON(k.w, http.StatusOK, map[string]any{})
	return nil
}

// deprovision deletes an unbound instance at its broker and in the store.
func (c *Controller) deprovision(ctx context.Context, si store.ServiceInstance) error {
	bs, err := c.deps.Store.ListBindings(ctx, "", si.ID)
	if err != nil {
		return fmt.Errorf("list bindings: %w", err)
	}
	if len(bs) > 0 {
		var apps []string
		for _, b := range bs {
			if a, err := c.deps.Store.GetApp(ctx, b.AppID); err == nil {
				apps = append(apps, a.Name)
			}
		}
		return ErrServiceBound.with(si.Name, strings.Join(apps, ", "))
	}
	if off, plan, err := c.offeringFor(ctx, si); err == nil {
		_, err := off.broker.Deprovision(ctx, services.DeprovisionRequest{InstanceID: si.ID, ServiceID: off.svc.ID, PlanID: plan.ID})
		if err != nil && !errors.Is(err, services.ErrInstanceNotFound) {
			return ErrServiceGateway.with(clip(err.Error()))
		}
	}
	if err := c.deps.Store.DeleteServiceInstance(ctx, si.ID); err != nil {
		if errors.Is(err, store.ErrInUse) {
			return ErrServiceBound.with(si.Name, "?")
		}
		return fmt.Errorf("delete service instance: %w", err)
	}
	c.log.Info("service-deprovisioned", "name", si.Name, "owner", si.Owner)
	return nil
}

// setBindings makes the app's bound instances exactly names.
func (c *Controller) setBindings(ctx context.Context, a store.App, names []string) error {
	current, err := c.deps.Store.ListBindings(ctx, a.ID, "")
	if err != nil {
		return fmt.Errorf("list bindings: %w", err)
	}
	want := map[string]store.ServiceInstance{}
	for _, n := range names {
		si, err := c.deps.Store.GetServiceInstanceByName(ctx, a.Owner, n)
		if errors.Is(err, store.ErrNotFound) {
			return ErrServiceNotFound
		}
		if err != nil {
			return fmt.Errorf("get service: %w", err)
		}
		if si.State != "" && si.State != "ready" {
			return ErrBadRequest.with(fmt.Sprintf("service %s is %s", si.Name, si.State))
		}
		want[si.ID] = si
	}
	have := map[string]bool{}
	for _, b := range current {
		have[b.InstanceID] = true
		if _, keep := want[b.InstanceID]; !keep {
			if err := c.unbind(ctx, b); err != nil {
				return err
			}
		}
	}
	for id, si := range want {
		if have[id] {
			continue
		}
		off, plan, err := c.offeringFor(ctx, si)
		if err != nil {
			return err
		}
		bid := uuid.NewString()
		bd, err := off.broker.Bind(ctx, services.BindRequest{InstanceID: si.ID, BindingID: bid, ServiceID: off.svc.ID, PlanID: plan.ID, AppID: a.ID})
		if err != nil {
			return ErrServiceGateway.with(clip(err.Error()))
		}
		creds, _ := json.Marshal(bd.Credentials)
		if _, err := c.deps.Store.CreateBinding(ctx, store.Binding{ID: bid, AppID: a.ID, InstanceID: si.ID, Credentials: creds}); err != nil {
			_ = off.broker.Unbind(context.WithoutCancel(ctx), services.UnbindRequest{InstanceID: si.ID, BindingID: bid, ServiceID: off.svc.ID, PlanID: plan.ID})
			return fmt.Errorf("create binding: %w", err)
		}
		c.log.Info("service-bound", "app", a.ID, "service", si.Name)
	}
	return nil
}

// unbind revokes a binding at the broker and deletes it.
func (c *Controller) unbind(ctx context.Context, b store.Binding) error {
	si, err := c.deps.Store.GetServiceInstance(ctx, b.InstanceID)
	if err == nil {
		if off, plan, err := c.offeringFor(ctx, si); err == nil {
			err := off.broker.Unbind(ctx, services.UnbindRequest{InstanceID: si.ID, BindingID: b.ID, ServiceID: off.svc.ID, PlanID: plan.ID})
			if err != nil && !errors.Is(err, services.ErrBindingNotFound) {
				return ErrServiceGateway.with(clip(err.Error()))
			}
		}
	}
	if err := c.deps.Store.DeleteBinding(ctx, b.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("delete binding: %w", err)
	}
	return nil
}

// registerBroker is POST /services/v1/brokers (kiln extension, admin):
// register an Open Service Broker by URL and fetch its catalog.
func (c *Controller) registerBroker(k *call) error {
	if c.deps.Brokers == nil {
		return &Error{Status: http.StatusNotImplemented, Code: 505, Description: "Service broker registration is not enabled"}
	}
	var body struct {
		Name     string `json:"name"`
		URL      string `json:"url"`
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := c.decodeBody(k, &body); err != nil {
		return err
	}
	if body.Name == "" || !(strings.HasPrefix(body.URL, "http://") || strings.HasPrefix(body.URL, "https://")) {
		return ErrBadRequest.with("name and an http(s) url are required")
	}
	rec := store.ServiceBroker{Name: body.Name, URL: body.URL, Username: body.Username, Password: body.Password}
	b, err := c.deps.Brokers(rec)
	if err != nil {
		return ErrBadRequest.with(clip(err.Error()))
	}
	cat, err := b.Catalog(k.r.Context())
	if err != nil {
		return ErrServiceGateway.with(clip(err.Error()))
	}
	rec.Catalog, _ = json.Marshal(cat)
	if _, err := c.deps.Store.CreateBroker(k.r.Context(), rec); err != nil {
		if errors.Is(err, store.ErrExists) {
			if _, err := c.deps.Store.UpdateBroker(k.r.Context(), rec); err != nil {
				return fmt.Errorf("update broker: %w", err)
			}
		} else {
			return fmt.Errorf("create broker: %w", err)
		}
	}
	c.log.Info("broker-registered", "name", rec.Name, "url", rec.URL, "services", len(cat.Services))
	writeJSON(k.w, http.StatusOK, map[string]any{"name": rec.Name, "services": len(cat.Services)})
	return nil
}
