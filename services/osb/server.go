package osb

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/services"
)

// Server exposes a services.Broker over the OSB API. It is an http.Handler
// serving /v2/catalog, /v2/service_instances/:id (PUT, DELETE),
// .../last_operation (GET) and .../service_bindings/:bid (PUT, DELETE).
// Every request must carry basic-auth credentials (when configured) and an
// X-Broker-API-Version no older than Config.MinAPIVersion.
type Server struct {
	broker services.Broker
	cfg    Config
	minVer version
	log    *slog.Logger
	mux    *http.ServeMux

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewServer returns a Server for broker. It does not start listening:
// mount it on an http.Server (or any mux) of the caller's choosing.
func NewServer(broker services.Broker, cfg Config) (*Server, error) {
	if broker == nil {
		return nil, errors.New("osb: NewServer: nil broker")
	}
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	minVer, _ := parseVersion(cfg.MinAPIVersion) // checked by Validate
	s := &Server{broker: broker, cfg: cfg, minVer: minVer, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kiln_osb_server_requests_total",
		Help: "OSB API requests served, by route and status code.",
	}, []string{"route", "code"})
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kiln_osb_server_request_duration_seconds",
		Help:    "Time to serve OSB API requests, by route.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 9), // 1 ms to ~65 s, the OSB timeout
	}, []string{"route"})
	if r := cfg.Registerer; r != nil {
		for _, c := range []prometheus.Collector{s.requests, s.duration} {
			if err := r.Register(c); err != nil {
				return nil, fmt.Errorf("osb: register metrics: %w", err)
			}
		}
	}
	s.mux = http.NewServeMux()
	s.route("GET /v2/catalog", "catalog", s.catalog)
	s.route("PUT /v2/service_instances/{instance_id}", "provision", s.provision)
	s.route("DELETE /v2/service_instances/{instance_id}", "deprovision", s.deprovision)
	s.route("GET /v2/service_instances/{instance_id}/last_operation", "last_operation", s.lastOperation)
	s.route("PUT /v2/service_instances/{instance_id}/service_bindings/{binding_id}", "bind", s.bind)
	s.route("DELETE /v2/service_instances/{instance_id}/service_bindings/{binding_id}", "unbind", s.unbind)
	s.route("/", "unknown", func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		return 0, nil, fmt.Errorf("osb: no route %s %s: %w", r.Method, r.URL.Path, errNoRoute)
	})
	return s, nil
}

// errNoRoute marks requests for paths the OSB API does not define.
var errNoRoute = errors.New("not found")

// ServeHTTP serves one OSB API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// handlerFunc serves one route: it returns a status and a body to send as
// JSON, or an error to map to an OSB error response.
type handlerFunc func(w http.ResponseWriter, r *http.Request) (int, any, error)

// route mounts h at pattern behind authentication and the version check.
func (s *Server) route(pattern, name string, h handlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if id := r.Header.Get(HeaderRequestIdentity); id != "" {
			w.Header().Set(HeaderRequestIdentity, id)
		}
		status, body, err := s.serve(w, r, h)
		if err != nil {
			status, body = s.errorResponse(name, r, err)
		}
		writeJSON(w, status, body)
		s.requests.WithLabelValues(name, strconv.Itoa(status)).Inc()
		s.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
		s.log.Debug("osb-request", "route", name, "method", r.Method, "path", r.URL.Path, "status", status,
			"duration", time.Since(start), "request_id", r.Header.Get(HeaderRequestIdentity))
	})
}

// serve checks credentials and version, then runs h.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, h handlerFunc) (int, any, error) {
	if s.cfg.Username != "" {
		u, p, ok := r.BasicAuth()
		if !ok || !equal(u, s.cfg.Username) || !equal(p, s.cfg.Password) {
			w.Header().Set("WWW-Authenticate", `Basic realm="kiln service broker"`)
			return 0, nil, fmt.Errorf("osb: bad or missing credentials: %w", ErrUnauthorized)
		}
	}
	v, err := parseVersion(r.Header.Get(HeaderAPIVersion))
	if err != nil {
		return 0, nil, fmt.Errorf("osb: %s header: %w (%w); this broker needs %s or newer", HeaderAPIVersion, ErrAPIVersion, err, s.cfg.MinAPIVersion)
	}
	if v.less(s.minVer) {
		return 0, nil, fmt.Errorf("osb: %s %d.%d: %w; this broker needs %s or newer", HeaderAPIVersion, v.major, v.minor, ErrAPIVersion, s.cfg.MinAPIVersion)
	}
	return h(w, r)
}

// equal compares secrets in constant time.
func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// errorResponse maps err to an OSB status and error body. Not-found errors
// become 410 Gone on the routes that delete or poll (the platform then
// forgets the resource) and 404 elsewhere.
func (s *Server) errorResponse(route string, r *http.Request, err error) (int, errorBody) {
	body := errorBody{Description: err.Error()}
	gone := route == "deprovision" || route == "unbind" || route == "last_operation"
	var status int
	switch {
	case errors.Is(err, ErrUnauthorized):
		status = http.StatusUnauthorized
	case errors.Is(err, ErrAPIVersion):
		status = http.StatusPreconditionFailed
	case errors.Is(err, errNoRoute):
		status = http.StatusNotFound
	case errors.Is(err, services.ErrAsyncRequired):
		status, body.Error = http.StatusUnprocessableEntity, CodeAsyncRequired
	case errors.Is(err, services.ErrConcurrency):
		status, body.Error = http.StatusUnprocessableEntity, CodeConcurrencyError
	case errors.Is(err, services.ErrBadRequest):
		status = http.StatusBadRequest
	case errors.Is(err, services.ErrInstanceExists), errors.Is(err, services.ErrBindingExists):
		status = http.StatusConflict
	case errors.Is(err, services.ErrInstanceNotFound), errors.Is(err, services.ErrBindingNotFound):
		status = http.StatusNotFound
		if gone {
			status = http.StatusGone
		}
	case errors.Is(err, services.ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	default:
		status = http.StatusInternalServerError
	}
	if status >= 500 {
		s.log.Warn("osb-broker-error", "route", route, "path", r.URL.Path, "status", status, "error", err)
	}
	return status, body
}

// writeJSON writes body (an empty object when nil) with status.
func writeJSON(w http.ResponseWriter, status int, body any) {
	if body == nil {
		body = struct{}{}
	}
	data, err := json.Marshal(body)
	if err != nil {
		status = http.StatusInternalServerError
		data, _ = json.Marshal(errorBody{Description: "osb: encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}

// readBody reads a request body up to the configured limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		return nil, fmt.Errorf("osb: read body: %w: %w", services.ErrBadRequest, err)
	}
	return data, nil
}

// acceptsIncomplete parses the accepts_incomplete query parameter.
func acceptsIncomplete(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("accepts_incomplete")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("osb: accepts_incomplete=%q: %w", v, services.ErrBadRequest)
	}
	return b, nil
}

func (s *Server) catalog(w http.ResponseWriter, r *http.Request) (int, any, error) {
	cat, err := s.broker.Catalog(r.Context())
	if err != nil {
		return 0, nil, err
	}
	if cat.Services == nil {
		cat.Services = []services.Service{}
	}
	return http.StatusOK, cat, nil
}

func (s *Server) provision(w http.ResponseWriter, r *http.Request) (int, any, error) {
	async, err := acceptsIncomplete(r)
	if err != nil {
		return 0, nil, err
	}
	data, err := s.readBody(w, r)
	if err != nil {
		return 0, nil, err
	}
	req, err := decodeProvision(r.PathValue("instance_id"), data)
	if err != nil {
		return 0, nil, err
	}
	req.AcceptsIncomplete = async
	res, err := s.broker.Provision(r.Context(), req)
	if err != nil {
		return 0, nil, err
	}
	body := provisionResponse{DashboardURL: res.DashboardURL}
	switch {
	case res.Async:
		body.Operation = res.Operation
		return http.StatusAccepted, body, nil
	case res.AlreadyExists:
		return http.StatusOK, body, nil
	}
	return http.StatusCreated, body, nil
}

func (s *Server) deprovision(w http.ResponseWriter, r *http.Request) (int, any, error) {
	async, err := acceptsIncomplete(r)
	if err != nil {
		return 0, nil, err
	}
	q := r.URL.Query()
	res, err := s.broker.Deprovision(r.Context(), services.DeprovisionRequest{
		InstanceID:        r.PathValue("instance_id"),
		ServiceID:         q.Get("service_id"),
		PlanID:            q.Get("plan_id"),
		AcceptsIncomplete: async,
	})
	if err != nil {
		return 0, nil, err
	}
	if res.Async {
		return http.StatusAccepted, operationResponse{Operation: res.Operation}, nil
	}
	return http.StatusOK, nil, nil
}

func (s *Server) lastOperation(w http.ResponseWriter, r *http.Request) (int, any, error) {
	q := r.URL.Query()
	op := q.Get("operation")
	if len(op) > maxOperationLen {
		return 0, nil, fmt.Errorf("osb: operation longer than %d characters: %w", maxOperationLen, services.ErrBadRequest)
	}
	res, err := s.broker.LastOperation(r.Context(), services.LastOperationRequest{
		InstanceID: r.PathValue("instance_id"),
		ServiceID:  q.Get("service_id"),
		PlanID:     q.Get("plan_id"),
		Operation:  op,
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, lastOperationResponse(res), nil
}

func (s *Server) bind(w http.ResponseWriter, r *http.Request) (int, any, error) {
	data, err := s.readBody(w, r)
	if err != nil {
		return 0, nil, err
	}
	req, err := decodeBind(r.PathValue("instance_id"), r.PathValue("binding_id"), data)
	if err != nil {
		return 0, nil, err
	}
	res, err := s.broker.Bind(r.Context(), req)
	if err != nil {
		return 0, nil, err
	}
	body := bindingResponse{Credentials: res.Credentials}
	if body.Credentials == nil {
		body.Credentials = map[string]any{}
	}
	if res.AlreadyExists {
		return http.StatusOK, body, nil
	}
	return http.StatusCreated, body, nil
}

func (s *Server) unbind(w http.ResponseWriter, r *http.Request) (int, any, error) {
	q := r.URL.Query()
	err := s.broker.Unbind(r.Context(), services.UnbindRequest{
		InstanceID: r.PathValue("instance_id"),
		BindingID:  r.PathValue("binding_id"),
		ServiceID:  q.Get("service_id"),
		PlanID:     q.Get("plan_id"),
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, nil, nil
}
