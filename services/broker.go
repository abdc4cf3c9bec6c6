// Package services is the second half of kiln's unit of currency: the
// services apps bind to. It defines the Broker interface (catalog,
// provision, deprovision, bind, unbind, each possibly asynchronous with
// last-operation polling) in the shape of the Open Service Broker API, the
// catalog types, and the VCAP_SERVICES document apps read their credentials
// from. Subpackages hold an OSB client and server and built-in brokers.
package services

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Broker provisions and binds service instances. Implementations must be
// safe for concurrent use and idempotent where the OSB API says so: a
// repeated provision or bind with identical arguments succeeds again.
type Broker interface {
	// Catalog lists the services and plans the broker offers.
	Catalog(ctx context.Context) (Catalog, error)
	// Provision creates a service instance. When the broker works
	// asynchronously it returns Async=true and an Operation to poll with
	// LastOperation; it may do so only when req.AcceptsIncomplete is set,
	// else it returns ErrAsyncRequired.
	Provision(ctx context.Context, req ProvisionRequest) (ProvisionResponse, error)
	// Deprovision deletes a service instance (ErrInstanceNotFound if
	// unknown), possibly asynchronously.
	Deprovision(ctx context.Context, req DeprovisionRequest) (OperationResponse, error)
	// LastOperation reports the state of an asynchronous operation.
	LastOperation(ctx context.Context, req LastOperationRequest) (LastOperation, error)
	// Bind creates credentials for an app to use the instance.
	Bind(ctx context.Context, req BindRequest) (Binding, error)
	// Unbind revokes a binding's credentials (ErrBindingNotFound if unknown).
	Unbind(ctx context.Context, req UnbindRequest) error
}

// Catalog is a broker's offering.
type Catalog struct {
	Services []Service `json:"services"`
}

// Clone returns a copy of c that shares no slices with it, for a broker to
// hand out its configured catalog without letting callers change it.
func (c Catalog) Clone() Catalog {
	out := Catalog{Services: make([]Service, len(c.Services))}
	for i, s := range c.Services {
		s.Tags = slices.Clone(s.Tags)
		s.Plans = slices.Clone(s.Plans)
		out.Services[i] = s
	}
	return out
}

// CheckPlan reports, wrapping ErrBadRequest, a service id c does not offer
// or a plan id that service does not have; nil when both are offered.
func (c Catalog) CheckPlan(serviceID, planID string) error {
	for _, s := range c.Services {
		if s.ID != serviceID {
			continue
		}
		for _, p := range s.Plans {
			if p.ID == planID {
				return nil
			}
		}
		return fmt.Errorf("service %s has no plan %q: %w", serviceID, planID, ErrBadRequest)
	}
	return fmt.Errorf("unknown service %q: %w", serviceID, ErrBadRequest)
}

// Service is one offered service. Name is the label apps see in
// VCAP_SERVICES (e.g. "postgresql").
type Service struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Version     string   `json:"version,omitempty"`
	Bindable    bool     `json:"bindable"`
	Tags        []string `json:"tags,omitempty"`
	Plans       []Plan   `json:"plans"`
}

// Plan is one plan of a service.
type Plan struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Free        bool   `json:"free"`
}

// ProvisionRequest asks for a new service instance.
type ProvisionRequest struct {
	InstanceID        string         `json:"-"`
	ServiceID         string         `json:"service_id"`
	PlanID            string         `json:"plan_id"`
	OrganizationID    string         `json:"organization_guid,omitempty"`
	SpaceID           string         `json:"space_guid,omitempty"`
	Parameters        map[string]any `json:"parameters,omitempty"`
	AcceptsIncomplete bool           `json:"-"`
}

// ProvisionResponse is a broker's answer to a provision.
type ProvisionResponse struct {
	Async        bool   `json:"-"`
	Operation    string `json:"operation,omitempty"`
	DashboardURL string `json:"dashboard_url,omitempty"`
	// AlreadyExists reports that an identical instance existed before the
	// request (OSB "200 OK" rather than "201 Created").
	AlreadyExists bool `json:"-"`
}

// DeprovisionRequest asks to delete a service instance.
type DeprovisionRequest struct {
	InstanceID        string
	ServiceID         string
	PlanID            string
	AcceptsIncomplete bool
}

// OperationResponse answers a possibly asynchronous request.
type OperationResponse struct {
	Async     bool   `json:"-"`
	Operation string `json:"operation,omitempty"`
}

// LastOperationRequest polls an asynchronous operation.
type LastOperationRequest struct {
	InstanceID string
	ServiceID  string
	PlanID     string
	Operation  string
}

// Operation states.
const (
	StateInProgress = "in progress"
	StateSucceeded  = "succeeded"
	StateFailed     = "failed"
)

// LastOperation is the state of an asynchronous operation.
type LastOperation struct {
	State       string `json:"state"`
	Description string `json:"description,omitempty"`
}

// BindRequest asks for credentials for an app.
type BindRequest struct {
	InstanceID string         `json:"-"`
	BindingID  string         `json:"-"`
	ServiceID  string         `json:"service_id"`
	PlanID     string         `json:"plan_id"`
	AppID      string         `json:"app_guid,omitempty"`
	Parameters map[string]any `json:"parameters,omitempty"`
}

// Binding holds the credentials of a binding.
type Binding struct {
	Credentials map[string]any `json:"credentials"`
	// AlreadyExists reports that an identical binding existed before the
	// request (OSB "200 OK" rather than "201 Created").
	AlreadyExists bool `json:"-"`
}

// UnbindRequest revokes a binding.
type UnbindRequest struct {
	InstanceID string
	BindingID  string
	ServiceID  string
	PlanID     string
}

var (
	// ErrInstanceExists: an instance with that id exists with other attributes.
	ErrInstanceExists = errors.New("services: instance already exists")
	// ErrInstanceNotFound: no such service instance.
	ErrInstanceNotFound = errors.New("services: instance not found")
	// ErrBindingExists: a binding with that id exists with other attributes.
	ErrBindingExists = errors.New("services: binding already exists")
	// ErrBindingNotFound: no such binding.
	ErrBindingNotFound = errors.New("services: binding not found")
	// ErrAsyncRequired: the broker only works asynchronously.
	ErrAsyncRequired = errors.New("services: broker requires accepts_incomplete")
	// ErrBadRequest: the request names an unknown service or plan, or is malformed.
	ErrBadRequest = errors.New("services: bad request")
	// ErrUnavailable: the broker or its backing service cannot be reached.
	ErrUnavailable = errors.New("services: broker unavailable")
	// ErrConcurrency: another operation on the same instance is in progress
	// (OSB "ConcurrencyError"); retry later.
	ErrConcurrency = errors.New("services: another operation is in progress")
	// ErrOperationFailed: an asynchronous operation ended in state "failed".
	ErrOperationFailed = errors.New("services: operation failed")
)

// Credential is one bound service as an app sees it in VCAP_SERVICES.
type Credential struct {
	Name        string         `json:"name"`
	Label       string         `json:"label"`
	Plan        string         `json:"plan"`
	Tags        []string       `json:"tags"`
	Credentials map[string]any `json:"credentials"`
}

// VCAPServices builds the VCAP_SERVICES document: bound services keyed by
// label, each a list, in the order given.
func VCAPServices(bound []Credential) map[string][]Credential {
	out := make(map[string][]Credential, len(bound))
	for _, c := range bound {
		if c.Tags == nil {
			c.Tags = []string{}
		}
		out[c.Label] = append(out[c.Label], c)
	}
	return out
}
