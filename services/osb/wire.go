package osb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/kiln-paas/kiln/services"
)

// requestContext is the OSB "context" object. kiln sends platform "kiln"
// and reads the organization and space guids back from any platform that
// sends them there instead of at the top level.
type requestContext struct {
	Platform         string `json:"platform,omitempty"`
	OrganizationGUID string `json:"organization_guid,omitempty"`
	SpaceGUID        string `json:"space_guid,omitempty"`
}

// provisionBody is the body of PUT /v2/service_instances/:id.
type provisionBody struct {
	ServiceID        string          `json:"service_id"`
	PlanID           string          `json:"plan_id"`
	Context          *requestContext `json:"context,omitempty"`
	OrganizationGUID string          `json:"organization_guid,omitempty"`
	SpaceGUID        string          `json:"space_guid,omitempty"`
	Parameters       map[string]any  `json:"parameters,omitempty"`
}

// bindResource is the OSB bind_resource object.
type bindResource struct {
	AppGUID string `json:"app_guid,omitempty"`
}

// bindBody is the body of PUT .../service_bindings/:bid.
type bindBody struct {
	ServiceID    string          `json:"service_id"`
	PlanID       string          `json:"plan_id"`
	AppGUID      string          `json:"app_guid,omitempty"`
	BindResource *bindResource   `json:"bind_resource,omitempty"`
	Context      *requestContext `json:"context,omitempty"`
	Parameters   map[string]any  `json:"parameters,omitempty"`
}

// provisionResponse is the body of a provision's 200, 201 or 202.
type provisionResponse struct {
	DashboardURL string `json:"dashboard_url,omitempty"`
	Operation    string `json:"operation,omitempty"`
}

// operationResponse is the body of a deprovision's 200 or 202.
type operationResponse struct {
	Operation string `json:"operation,omitempty"`
}

// lastOperationResponse is the body of GET .../last_operation.
type lastOperationResponse struct {
	State       string `json:"state"`
	Description string `json:"description,omitempty"`
}

// bindingResponse is the body of a bind's 200 or 201.
type bindingResponse struct {
	Credentials map[string]any `json:"credentials"`
}

// catalogResponse is a catalog as brokers send it. It differs from
// services.Catalog only where the OSB API gives an absent field a default
// that is not Go's zero value: a plan is free unless it says otherwise.
type catalogResponse struct {
	Services []struct {
		services.Service
		Plans []struct {
			services.Plan
			Free *bool `json:"free"`
		} `json:"plans"`
	} `json:"services"`
}

// catalog converts the wire catalog, applying the OSB defaults.
func (w catalogResponse) catalog() services.Catalog {
	out := services.Catalog{Services: make([]services.Service, 0, len(w.Services))}
	for _, ws := range w.Services {
		s := ws.Service
		s.Plans = make([]services.Plan, 0, len(ws.Plans))
		for _, wp := range ws.Plans {
			p := wp.Plan
			p.Free = wp.Free == nil || *wp.Free
			s.Plans = append(s.Plans, p)
		}
		out.Services = append(out.Services, s)
	}
	return out
}

// maxOperationLen bounds operation strings; the OSB API allows up to
// 10,000 characters.
const maxOperationLen = 10000

// decodeJSON decodes exactly one JSON object from data into v.
func decodeJSON(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("empty body")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// decodeProvision parses a provision body for instanceID.
func decodeProvision(instanceID string, data []byte) (services.ProvisionRequest, error) {
	var body provisionBody
	if err := decodeJSON(data, &body); err != nil {
		return services.ProvisionRequest{}, fmt.Errorf("osb: provision body: %w: %w", services.ErrBadRequest, err)
	}
	if body.ServiceID == "" || body.PlanID == "" {
		return services.ProvisionRequest{}, fmt.Errorf("osb: provision body: service_id and plan_id are required: %w", services.ErrBadRequest)
	}
	req := services.ProvisionRequest{
		InstanceID:     instanceID,
		ServiceID:      body.ServiceID,
		PlanID:         body.PlanID,
		OrganizationID: body.OrganizationGUID,
		SpaceID:        body.SpaceGUID,
		Parameters:     nonEmpty(body.Parameters),
	}
	if c := body.Context; c != nil {
		if req.OrganizationID == "" {
			req.OrganizationID = c.OrganizationGUID
		}
		if req.SpaceID == "" {
			req.SpaceID = c.SpaceGUID
		}
	}
	return req, nil
}

// decodeBind parses a bind body for instanceID and bindingID.
func decodeBind(instanceID, bindingID string, data []byte) (services.BindRequest, error) {
	var body bindBody
	if err := decodeJSON(data, &body); err != nil {
		return services.BindRequest{}, fmt.Errorf("osb: bind body: %w: %w", services.ErrBadRequest, err)
	}
	if body.ServiceID == "" || body.PlanID == "" {
		return services.BindRequest{}, fmt.Errorf("osb: bind body: service_id and plan_id are required: %w", services.ErrBadRequest)
	}
	req := services.BindRequest{
		InstanceID: instanceID,
		BindingID:  bindingID,
		ServiceID:  body.ServiceID,
		PlanID:     body.PlanID,
		AppID:      body.AppGUID,
		Parameters: nonEmpty(body.Parameters),
	}
	if req.AppID == "" && body.BindResource != nil {
		req.AppID = body.BindResource.AppGUID
	}
	return req, nil
}

// nonEmpty normalises an empty parameters object to nil, so that "{}" and
// an absent object mean the same to brokers comparing repeated requests.
func nonEmpty(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	return m
}
