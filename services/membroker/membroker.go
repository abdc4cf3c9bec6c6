// Package membroker is an in-memory service broker: the fake kiln's own
// tests (and embedders' tests) bind apps to. It keeps instances and bindings
// in maps, validates requests against a configurable catalog exactly as a
// real broker would, can work asynchronously (operations finish after a set
// number of polls, deterministically), and records every call it receives.
package membroker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"

	"github.com/kiln-paas/kiln/services"
)

// Config configures a Broker.
type Config struct {
	// Catalog is what the broker offers; DefaultCatalog() when it has no
	// services.
	Catalog services.Catalog
	// Async makes Provision and Deprovision asynchronous: they require
	// AcceptsIncomplete (else services.ErrAsyncRequired) and return an
	// operation that LastOperation reports "in progress" AsyncPolls times
	// before it completes.
	Async bool
	// AsyncPolls is how many polls an asynchronous operation stays in
	// progress; 0 means the first poll already sees it finished.
	AsyncPolls int
	// Fail, if set, is consulted before every call; a non-nil error is
	// returned as the call's result (after recording the call). Tests use
	// it to inject broker failures.
	Fail func(Call) error
}

// DefaultCatalog is one bindable service "memory" with one free plan
// "free".
func DefaultCatalog() services.Catalog {
	return services.Catalog{Services: []services.Service{{
		ID:          "kiln-memory-service",
		Name:        "memory",
		Description: "In-memory test service",
		Version:     "1.0",
		Bindable:    true,
		Tags:        []string{"memory", "test"},
		Plans: []services.Plan{{
			ID:          "kiln-memory-free",
			Name:        "free",
			Description: "Free in-memory plan",
			Free:        true,
		}},
	}}}
}

// DefaultConfig is a synchronous broker with DefaultCatalog.
func DefaultConfig() Config {
	return Config{Catalog: DefaultCatalog()}
}

// Validate reports whether c is usable.
func (c Config) Validate() error {
	if c.AsyncPolls < 0 {
		return fmt.Errorf("membroker: AsyncPolls %d is negative", c.AsyncPolls)
	}
	seen := map[string]bool{}
	for _, s := range c.Catalog.Services {
		if s.ID == "" || s.Name == "" {
			return fmt.Errorf("membroker: catalog service %q needs an id and a name", s.Name)
		}
		for _, p := range s.Plans {
			if p.ID == "" || p.Name == "" {
				return fmt.Errorf("membroker: plan %q of %s needs an id and a name", p.Name, s.Name)
			}
			if seen[p.ID] {
				return fmt.Errorf("membroker: duplicate plan id %q", p.ID)
			}
			seen[p.ID] = true
		}
	}
	return nil
}

// Call operations recorded in Call.Op.
const (
	OpCatalog       = "catalog"
	OpProvision     = "provision"
	OpDeprovision   = "deprovision"
	OpLastOperation = "last_operation"
	OpBind          = "bind"
	OpUnbind        = "unbind"
)

// Call is one recorded call to the broker.
type Call struct {
	Op                string
	InstanceID        string
	BindingID         string
	ServiceID         string
	PlanID            string
	AppID             string
	Operation         string
	AcceptsIncomplete bool
	Parameters        map[string]any
}

// instance states.
const (
	stateProvisioning   = "provisioning"
	stateReady          = "ready"
	stateDeprovisioning = "deprovisioning"
)

type instance struct {
	req      services.ProvisionRequest
	state    string
	op       string // the current or last operation id
	bindings map[string]binding
}

type binding struct {
	req   services.BindRequest
	creds map[string]any
}

type operation struct {
	instanceID string
	kind       string // OpProvision or OpDeprovision
	pollsLeft  int
	state      string
}

// Broker is an in-memory services.Broker. It is safe for concurrent use.
type Broker struct {
	cfg Config

	mu        sync.Mutex
	instances map[string]*instance
	ops       map[string]*operation
	nextOp    int
	calls     []Call
}

var _ services.Broker = (*Broker)(nil)

// New returns an empty broker configured by cfg.
func New(cfg Config) (*Broker, error) {
	if len(cfg.Catalog.Services) == 0 {
		cfg.Catalog = DefaultCatalog()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Broker{
		cfg:       cfg,
		instances: map[string]*instance{},
		ops:       map[string]*operation{},
	}, nil
}

// Calls returns a copy of the calls received so far, oldest first.
func (b *Broker) Calls() []Call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// Instances returns the ids of the instances that exist (including those
// still being provisioned or deprovisioned), sorted.
func (b *Broker) Instances() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	ids := make([]string, 0, len(b.instances))
	for id := range b.instances {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// record appends c and runs the failure hook; callers hold b.mu.
func (b *Broker) record(c Call) error {
	b.calls = append(b.calls, c)
	if b.cfg.Fail != nil {
		return b.cfg.Fail(c)
	}
	return nil
}

// Catalog returns a deep copy of the configured catalog.
func (b *Broker) Catalog(ctx context.Context) (services.Catalog, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(Call{Op: OpCatalog}); err != nil {
		return services.Catalog{}, err
	}
	return b.cfg.Catalog.Clone(), nil
}

// checkPlan validates a service and plan id pair against the catalog.
func (b *Broker) checkPlan(serviceID, planID string) error {
	if err := b.cfg.Catalog.CheckPlan(serviceID, planID); err != nil {
		return fmt.Errorf("membroker: %w", err)
	}
	return nil
}

func (b *Broker) bindable(serviceID string) bool {
	for _, s := range b.cfg.Catalog.Services {
		if s.ID == serviceID {
			return s.Bindable
		}
	}
	return false
}

// startOp registers a new asynchronous operation; callers hold b.mu.
func (b *Broker) startOp(instanceID, kind string) string {
	b.nextOp++
	id := kind + "-" + strconv.Itoa(b.nextOp)
	b.ops[id] = &operation{instanceID: instanceID, kind: kind, pollsLeft: b.cfg.AsyncPolls, state: services.StateInProgress}
	return id
}

// Provision creates an instance; see services.Broker.
func (b *Broker) Provision(ctx context.Context, req services.ProvisionRequest) (services.ProvisionResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(Call{Op: OpProvision, InstanceID: req.InstanceID, ServiceID: req.ServiceID, PlanID: req.PlanID,
		AcceptsIncomplete: req.AcceptsIncomplete, Parameters: req.Parameters}); err != nil {
		return services.ProvisionResponse{}, err
	}
	if req.InstanceID == "" {
		return services.ProvisionResponse{}, fmt.Errorf("membroker: provision: empty instance id: %w", services.ErrBadRequest)
	}
	if err := b.checkPlan(req.ServiceID, req.PlanID); err != nil {
		return services.ProvisionResponse{}, err
	}
	if b.cfg.Async && !req.AcceptsIncomplete {
		return services.ProvisionResponse{}, fmt.Errorf("membroker: provision %s: %w", req.InstanceID, services.ErrAsyncRequired)
	}
	if in, ok := b.instances[req.InstanceID]; ok {
		if !sameProvision(in.req, req) {
			return services.ProvisionResponse{}, fmt.Errorf("membroker: provision %s: %w", req.InstanceID, services.ErrInstanceExists)
		}
		switch in.state {
		case stateProvisioning:
			return services.ProvisionResponse{Async: true, Operation: in.op}, nil
		case stateDeprovisioning:
			return services.ProvisionResponse{}, fmt.Errorf("membroker: provision %s: %w", req.InstanceID, services.ErrConcurrency)
		}
		return services.ProvisionResponse{AlreadyExists: true, DashboardURL: dashboard(req.InstanceID)}, nil
	}
	in := &instance{req: req, state: stateReady, bindings: map[string]binding{}}
	in.req.AcceptsIncomplete = false
	b.instances[req.InstanceID] = in
	if !b.cfg.Async {
		return services.ProvisionResponse{DashboardURL: dashboard(req.InstanceID)}, nil
	}
	in.state = stateProvisioning
	in.op = b.startOp(req.InstanceID, OpProvision)
	return services.ProvisionResponse{Async: true, Operation: in.op, DashboardURL: dashboard(req.InstanceID)}, nil
}

func dashboard(id string) string { return "memory://dashboard/" + id }

func sameProvision(a, b services.ProvisionRequest) bool {
	return a.ServiceID == b.ServiceID && a.PlanID == b.PlanID &&
		a.OrganizationID == b.OrganizationID && a.SpaceID == b.SpaceID &&
		sameParams(a.Parameters, b.Parameters)
}

func sameParams(a, b map[string]any) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// Deprovision deletes an instance and its bindings; see services.Broker.
func (b *Broker) Deprovision(ctx context.Context, req services.DeprovisionRequest) (services.OperationResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(Call{Op: OpDeprovision, InstanceID: req.InstanceID, ServiceID: req.ServiceID, PlanID: req.PlanID,
		AcceptsIncomplete: req.AcceptsIncomplete}); err != nil {
		return services.OperationResponse{}, err
	}
	in, ok := b.instances[req.InstanceID]
	if !ok {
		return services.OperationResponse{}, fmt.Errorf("membroker: deprovision %s: %w", req.InstanceID, services.ErrInstanceNotFound)
	}
	if (req.ServiceID != "" && req.ServiceID != in.req.ServiceID) || (req.PlanID != "" && req.PlanID != in.req.PlanID) {
		return services.OperationResponse{}, fmt.Errorf("membroker: deprovision %s: service or plan does not match: %w", req.InstanceID, services.ErrBadRequest)
	}
	if b.cfg.Async && !req.AcceptsIncomplete {
		return services.OperationResponse{}, fmt.Errorf("membroker: deprovision %s: %w", req.InstanceID, services.ErrAsyncRequired)
	}
	switch in.state {
	case stateDeprovisioning:
		return services.OperationResponse{Async: true, Operation: in.op}, nil
	case stateProvisioning:
		return services.OperationResponse{}, fmt.Errorf("membroker: deprovision %s: %w", req.InstanceID, services.ErrConcurrency)
	}
	if !b.cfg.Async {
		delete(b.instances, req.InstanceID)
		return services.OperationResponse{}, nil
	}
	in.state = stateDeprovisioning
	in.op = b.startOp(req.InstanceID, OpDeprovision)
	return services.OperationResponse{Async: true, Operation: in.op}, nil
}

// LastOperation reports an asynchronous operation's state. An empty
// req.Operation means the instance's latest operation. A finished
// deprovision still reports "succeeded" when polled by its operation id;
// without one, polls for the deleted instance report
// services.ErrInstanceNotFound, as OSB brokers answer "410 Gone".
func (b *Broker) LastOperation(ctx context.Context, req services.LastOperationRequest) (services.LastOperation, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(Call{Op: OpLastOperation, InstanceID: req.InstanceID, ServiceID: req.ServiceID, PlanID: req.PlanID,
		Operation: req.Operation}); err != nil {
		return services.LastOperation{}, err
	}
	opID := req.Operation
	in, exists := b.instances[req.InstanceID]
	if opID == "" {
		if !exists {
			return services.LastOperation{}, fmt.Errorf("membroker: last operation of %s: %w", req.InstanceID, services.ErrInstanceNotFound)
		}
		if in.op == "" {
			return services.LastOperation{State: services.StateSucceeded, Description: "provisioned"}, nil
		}
		opID = in.op
	}
	op, ok := b.ops[opID]
	if !ok || op.instanceID != req.InstanceID {
		if !exists {
			return services.LastOperation{}, fmt.Errorf("membroker: last operation of %s: %w", req.InstanceID, services.ErrInstanceNotFound)
		}
		return services.LastOperation{}, fmt.Errorf("membroker: instance %s has no operation %q: %w", req.InstanceID, opID, services.ErrBadRequest)
	}
	if op.state == services.StateInProgress {
		if op.pollsLeft > 0 {
			op.pollsLeft--
			return services.LastOperation{State: services.StateInProgress, Description: op.kind + " in progress"}, nil
		}
		op.state = services.StateSucceeded
		if exists && in.op == opID {
			if op.kind == OpDeprovision {
				delete(b.instances, req.InstanceID)
			} else {
				in.state = stateReady
			}
		}
	}
	return services.LastOperation{State: op.state, Description: op.kind + " " + op.state}, nil
}

// Bind returns credentials for the instance: a "uri" of the form
// memory://<binding>:<password>@memory/<instance> plus "name", "username"
// and "password". The password is derived from the ids so that a repeated
// bind returns identical credentials.
func (b *Broker) Bind(ctx context.Context, req services.BindRequest) (services.Binding, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(Call{Op: OpBind, InstanceID: req.InstanceID, BindingID: req.BindingID, ServiceID: req.ServiceID,
		PlanID: req.PlanID, AppID: req.AppID, Parameters: req.Parameters}); err != nil {
		return services.Binding{}, err
	}
	if req.BindingID == "" {
		return services.Binding{}, fmt.Errorf("membroker: bind: empty binding id: %w", services.ErrBadRequest)
	}
	in, ok := b.instances[req.InstanceID]
	if !ok {
		return services.Binding{}, fmt.Errorf("membroker: bind %s to %s: %w", req.BindingID, req.InstanceID, services.ErrInstanceNotFound)
	}
	if in.state != stateReady {
		return services.Binding{}, fmt.Errorf("membroker: bind %s to %s: %w", req.BindingID, req.InstanceID, services.ErrConcurrency)
	}
	if req.ServiceID != in.req.ServiceID || req.PlanID != in.req.PlanID {
		return services.Binding{}, fmt.Errorf("membroker: bind %s: service or plan does not match the instance: %w", req.BindingID, services.ErrBadRequest)
	}
	if !b.bindable(req.ServiceID) {
		return services.Binding{}, fmt.Errorf("membroker: bind %s: service %s is not bindable: %w", req.BindingID, req.ServiceID, services.ErrBadRequest)
	}
	for id, other := range b.instances {
		if _, taken := other.bindings[req.BindingID]; taken && id != req.InstanceID {
			return services.Binding{}, fmt.Errorf("membroker: bind %s: %w", req.BindingID, services.ErrBindingExists)
		}
	}
	if old, ok := in.bindings[req.BindingID]; ok {
		if old.req.AppID != req.AppID || !sameParams(old.req.Parameters, req.Parameters) {
			return services.Binding{}, fmt.Errorf("membroker: bind %s: %w", req.BindingID, services.ErrBindingExists)
		}
		return services.Binding{Credentials: cloneCreds(old.creds), AlreadyExists: true}, nil
	}
	sum := sha256.Sum256([]byte(req.InstanceID + "\x00" + req.BindingID))
	pw := hex.EncodeToString(sum[:8])
	creds := map[string]any{
		"uri":      "memory://" + req.BindingID + ":" + pw + "@memory/" + req.InstanceID,
		"name":     req.InstanceID,
		"username": req.BindingID,
		"password": pw,
	}
	in.bindings[req.BindingID] = binding{req: req, creds: creds}
	return services.Binding{Credentials: cloneCreds(creds)}, nil
}

func cloneCreds(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Unbind deletes a binding; see services.Broker.
func (b *Broker) Unbind(ctx context.Context, req services.UnbindRequest) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.record(Call{Op: OpUnbind, InstanceID: req.InstanceID, BindingID: req.BindingID, ServiceID: req.ServiceID,
		PlanID: req.PlanID}); err != nil {
		return err
	}
	in, ok := b.instances[req.InstanceID]
	if !ok {
		return fmt.Errorf("membroker: unbind %s from %s: %w", req.BindingID, req.InstanceID, services.ErrBindingNotFound)
	}
	if _, ok := in.bindings[req.BindingID]; !ok {
		return fmt.Errorf("membroker: unbind %s from %s: %w", req.BindingID, req.InstanceID, services.ErrBindingNotFound)
	}
	delete(in.bindings, req.BindingID)
	return nil
}
