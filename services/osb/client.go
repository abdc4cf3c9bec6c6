package osb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/uuid"

	"github.com/kiln-paas/kiln/services"
)

// Client is a services.Broker backed by a remote OSB broker. It is safe for
// concurrent use.
type Client struct {
	cfg     Config
	base    *url.URL
	baseURL string // base without a trailing slash, query or fragment
	hc      *http.Client
}

var _ services.Broker = (*Client)(nil)

// maxResponseBytes bounds how much of a broker's response the client
// reads; catalogs of large brokers run to a few hundred KiB.
const maxResponseBytes = 8 << 20

// NewClient returns a client for the broker at cfg.URL.
func NewClient(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if cfg.URL == "" {
		return nil, errors.New("osb: NewClient: URL is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, _ := url.Parse(cfg.URL) // checked by Validate
	base.RawQuery, base.Fragment = "", ""
	baseURL := strings.TrimRight(base.String(), "/")
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: defaultTimeout}
	}
	return &Client{cfg: cfg, base: base, baseURL: baseURL, hc: hc}, nil
}

// call describes one request and how its error statuses map to sentinels.
type call struct {
	method   string
	path     string // escaped, below the base URL
	query    url.Values
	body     any
	notFound error // sentinel for 404
	conflict error // sentinel for 409
	gone     error // sentinel for 410
}

// do sends c and returns the status and body of a 2xx response, or an
// error for anything else.
func (cl *Client) do(ctx context.Context, c call) (int, []byte, error) {
	target := cl.baseURL + c.path
	if q := c.query.Encode(); q != "" {
		target += "?" + q
	}
	var body io.Reader
	if c.body != nil {
		data, err := json.Marshal(c.body)
		if err != nil {
			return 0, nil, fmt.Errorf("osb: %s %s: encode body: %w", c.method, c.path, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, target, body)
	if err != nil {
		return 0, nil, fmt.Errorf("osb: %s %s: %w", c.method, c.path, err)
	}
	req.Header.Set(HeaderAPIVersion, cl.cfg.APIVersion)
	req.Header.Set(HeaderRequestIdentity, uuid.NewString())
	req.Header.Set("Accept", "application/json")
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cl.cfg.Username != "" {
		req.SetBasicAuth(cl.cfg.Username, cl.cfg.Password)
	}
	resp, err := cl.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, fmt.Errorf("osb: %s %s: %w", c.method, c.path, context.Cause(ctx))
		}
		return 0, nil, fmt.Errorf("osb: %s %s: %w: %w", c.method, c.path, services.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return 0, nil, fmt.Errorf("osb: %s %s: read response: %w: %w", c.method, c.path, services.ErrUnavailable, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, data, nil
	}
	return resp.StatusCode, nil, c.errorFor(resp.StatusCode, data)
}

// errorFor maps an error response to an *Error.
func (c call) errorFor(status int, data []byte) error {
	var body errorBody
	if json.Unmarshal(data, &body) != nil {
		// Not an OSB error body: keep a bounded excerpt as the description.
		body = errorBody{Description: strings.TrimSpace(string(data[:min(len(data), 512)]))}
	}
	e := &Error{Method: c.method, Path: c.path, StatusCode: status, Code: body.Error, Description: body.Description}
	switch {
	case status == http.StatusBadRequest:
		e.Err = services.ErrBadRequest
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Err = ErrUnauthorized
	case status == http.StatusNotFound:
		e.Err = c.notFound
	case status == http.StatusConflict:
		e.Err = c.conflict
	case status == http.StatusGone:
		e.Err = c.gone
	case status == http.StatusPreconditionFailed:
		e.Err = ErrAPIVersion
	case status == http.StatusUnprocessableEntity:
		switch body.Error {
		case CodeAsyncRequired:
			e.Err = services.ErrAsyncRequired
		case CodeConcurrencyError:
			e.Err = services.ErrConcurrency
		default: // RequiresApp, MaintenanceInfoConflict: the request is at fault
			e.Err = services.ErrBadRequest
		}
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500:
		e.Err = services.ErrUnavailable
	}
	return e
}

// decode unmarshals a successful response body into v.
func decode(c call, data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("osb: %s %s: decode response: %w", c.method, c.path, err)
	}
	return nil
}

// instancePath is the escaped path of an instance.
func instancePath(id string) string {
	return "/v2/service_instances/" + url.PathEscape(id)
}

// Catalog fetches GET /v2/catalog.
func (cl *Client) Catalog(ctx context.Context) (services.Catalog, error) {
	c := call{method: http.MethodGet, path: "/v2/catalog"}
	_, data, err := cl.do(ctx, c)
	if err != nil {
		return services.Catalog{}, err
	}
	var wire catalogResponse
	if err := decode(c, data, &wire); err != nil {
		return services.Catalog{}, err
	}
	return wire.catalog(), nil
}

// Provision sends PUT /v2/service_instances/:id.
func (cl *Client) Provision(ctx context.Context, req services.ProvisionRequest) (services.ProvisionResponse, error) {
	if req.InstanceID == "" {
		return services.ProvisionResponse{}, fmt.Errorf("osb: provision: empty instance id: %w", services.ErrBadRequest)
	}
	c := call{
		method: http.MethodPut,
		path:   instancePath(req.InstanceID),
		query:  incompleteQuery(req.AcceptsIncomplete),
		body: provisionBody{
			ServiceID:        req.ServiceID,
			PlanID:           req.PlanID,
			Context:          kilnContext(req.OrganizationID, req.SpaceID),
			OrganizationGUID: req.OrganizationID,
			SpaceGUID:        req.SpaceID,
			Parameters:       req.Parameters,
		},
		conflict: services.ErrInstanceExists,
		notFound: services.ErrInstanceNotFound,
		gone:     services.ErrInstanceNotFound,
	}
	status, data, err := cl.do(ctx, c)
	if err != nil {
		return services.ProvisionResponse{}, err
	}
	var body provisionResponse
	if err := decode(c, data, &body); err != nil {
		return services.ProvisionResponse{}, err
	}
	return services.ProvisionResponse{
		Async:         status == http.StatusAccepted,
		Operation:     body.Operation,
		DashboardURL:  body.DashboardURL,
		AlreadyExists: status == http.StatusOK,
	}, nil
}

func incompleteQuery(accepts bool) url.Values {
	q := url.Values{}
	if accepts {
		q.Set("accepts_incomplete", "true")
	}
	return q
}

func kilnContext(org, space string) *requestContext {
	return &requestContext{Platform: "kiln", OrganizationGUID: org, SpaceGUID: space}
}

// Deprovision sends DELETE /v2/service_instances/:id.
func (cl *Client) Deprovision(ctx context.Context, req services.DeprovisionRequest) (services.OperationResponse, error) {
	if req.InstanceID == "" {
		return services.OperationResponse{}, fmt.Errorf("osb: deprovision: empty instance id: %w", services.ErrBadRequest)
	}
	q := incompleteQuery(req.AcceptsIncomplete)
	q.Set("service_id", req.ServiceID)
	q.Set("plan_id", req.PlanID)
	c := call{
		method:   http.MethodDelete,
		path:     instancePath(req.InstanceID),
		query:    q,
		notFound: services.ErrInstanceNotFound,
		gone:     services.ErrInstanceNotFound,
	}
	status, data, err := cl.do(ctx, c)
	if err != nil {
		return services.OperationResponse{}, err
	}
	var body operationResponse
	if err := decode(c, data, &body); err != nil {
		return services.OperationResponse{}, err
	}
	return services.OperationResponse{Async: status == http.StatusAccepted, Operation: body.Operation}, nil
}

// LastOperation sends GET /v2/service_instances/:id/last_operation. A 410
// Gone (the instance was deleted) or 404 is services.ErrInstanceNotFound.
func (cl *Client) LastOperation(ctx context.Context, req services.LastOperationRequest) (services.LastOperation, error) {
	if req.InstanceID == "" {
		return services.LastOperation{}, fmt.Errorf("osb: last operation: empty instance id: %w", services.ErrBadRequest)
	}
	q := url.Values{}
	for k, v := range map[string]string{"service_id": req.ServiceID, "plan_id": req.PlanID, "operation": req.Operation} {
		if v != "" {
			q.Set(k, v)
		}
	}
	c := call{
		method:   http.MethodGet,
		path:     instancePath(req.InstanceID) + "/last_operation",
		query:    q,
		notFound: services.ErrInstanceNotFound,
		gone:     services.ErrInstanceNotFound,
	}
	_, data, err := cl.do(ctx, c)
	if err != nil {
		return services.LastOperation{}, err
	}
	var body lastOperationResponse
	if err := decode(c, data, &body); err != nil {
		return services.LastOperation{}, err
	}
	switch body.State {
	case services.StateInProgress, services.StateSucceeded, services.StateFailed:
	default:
		return services.LastOperation{}, fmt.Errorf("osb: %s %s: unknown state %q", c.method, c.path, body.State)
	}
	return services.LastOperation(body), nil
}

// Bind sends PUT /v2/service_instances/:id/service_bindings/:bid. A 404
// (no such instance) is services.ErrInstanceNotFound.
func (cl *Client) Bind(ctx context.Context, req services.BindRequest) (services.Binding, error) {
	if req.InstanceID == "" || req.BindingID == "" {
		return services.Binding{}, fmt.Errorf("osb: bind: empty instance or binding id: %w", services.ErrBadRequest)
	}
	body := bindBody{
		ServiceID:  req.ServiceID,
		PlanID:     req.PlanID,
		AppGUID:    req.AppID,
		Context:    kilnContext("", ""),
		Parameters: req.Parameters,
	}
	if req.AppID != "" {
		body.BindResource = &bindResource{AppGUID: req.AppID}
	}
	c := call{
		method:   http.MethodPut,
		path:     instancePath(req.InstanceID) + "/service_bindings/" + url.PathEscape(req.BindingID),
		body:     body,
		conflict: services.ErrBindingExists,
		notFound: services.ErrInstanceNotFound,
		gone:     services.ErrInstanceNotFound,
	}
	status, data, err := cl.do(ctx, c)
	if err != nil {
		return services.Binding{}, err
	}
	if status == http.StatusAccepted {
		return services.Binding{}, fmt.Errorf("osb: %s %s: the broker bound asynchronously, which kiln does not request", c.method, c.path)
	}
	var res bindingResponse
	if err := decode(c, data, &res); err != nil {
		return services.Binding{}, err
	}
	return services.Binding{Credentials: res.Credentials, AlreadyExists: status == http.StatusOK}, nil
}

// Unbind sends DELETE /v2/service_instances/:id/service_bindings/:bid. A
// 410 Gone is services.ErrBindingNotFound.
func (cl *Client) Unbind(ctx context.Context, req services.UnbindRequest) error {
	if req.InstanceID == "" || req.BindingID == "" {
		return fmt.Errorf("osb: unbind: empty instance or binding id: %w", services.ErrBadRequest)
	}
	q := url.Values{}
	q.Set("service_id", req.ServiceID)
	q.Set("plan_id", req.PlanID)
	c := call{
		method:   http.MethodDelete,
		path:     instancePath(req.InstanceID) + "/service_bindings/" + url.PathEscape(req.BindingID),
		query:    q,
		notFound: services.ErrBindingNotFound,
		gone:     services.ErrBindingNotFound,
	}
	_, _, err := cl.do(ctx, c)
	return err
}

// String names the broker the client talks to, without credentials.
func (cl *Client) String() string {
	return "osb.Client(" + cl.base.Redacted() + ", API " + cl.cfg.APIVersion + ")"
}

var _ fmt.Stringer = (*Client)(nil)
