// Package client is a Go client of the kiln cloud controller's REST API
// (the v1 API of the original platform plus kiln's extensions). The CLI and
// the kernel's tests use it. It sends the login token verbatim in the
// Authorization header, percent-encodes every path segment, never follows
// the 302 of app creation, and returns API failures as *Error.
//
//	c, _ := client.New("http://api.vcap.me", nil)
//	_, err := c.Login(ctx, "me@example.com", "secret")
//	err = c.CreateApp(ctx, client.AppRequest{Name: "hello", URIs: []string{"hello.vcap.me"}, Instances: 1, Memory: 128})
//	stats, err := c.Push(ctx, "hello", "./hello")
//	err = c.Start(ctx, "hello")
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-paas/kiln/bus/protocol"
)

// Error is a failed API call: the HTTP status and the {code, description}
// body.
type Error struct {
	Status      int
	Code        int
	Description string
}

// Error implements error.
func (e *Error) Error() string {
	if e.Code == 0 && e.Description == "" {
		return fmt.Sprintf("controller: HTTP %d", e.Status)
	}
	return fmt.Sprintf("controller: error %d: %s (HTTP %d)", e.Code, e.Description, e.Status)
}

// IsCode reports whether err is an *Error with the given v1 code.
func IsCode(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// ErrNotRunning is returned by WaitRunning when the deadline passes.
var ErrNotRunning = errors.New("client: app not running")

// Client calls one controller. Its methods are safe for concurrent use,
// but SetToken must not race with calls.
type Client struct {
	base      *url.URL
	hc        *http.Client
	token     string
	proxyUser string
}

// New returns a client of the controller at target ("http://" is added when
// no scheme is given; a trailing "/" is dropped). A nil hc means a client
// with a 5 minute timeout.
func New(target string, hc *http.Client) (*Client, error) {
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	u, err := url.Parse(strings.TrimRight(target, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("client: bad target %q", target)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Minute}
	}
	// Never follow redirects: POST /apps answers 302 with the app's URL.
	nc := *hc
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Client{base: u, hc: &nc}, nil
}

// SetToken sets the token sent with every request.
func (c *Client) SetToken(tok string) { c.token = tok }

// Token returns the current token.
func (c *Client) Token() string { return c.token }

// AsUser returns a copy of c acting as another user with the Proxy-User
// header (admins only).
func (c *Client) AsUser(email string) *Client {
	cp := *c
	cp.proxyUser = email
	return &cp
}

// path builds an escaped path from segments.
func path(segs ...string) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

func (c *Client) newRequest(ctx context.Context, method, p string, q url.Values, body io.Reader, ctype string) (*http.Request, error) {
	u := *c.base
	u.RawPath = c.base.Path + p
	if unescaped, err := url.PathUnescape(u.RawPath); err == nil {
		u.Path = unescaped
	}
	if q != nil {
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", c.token)
	}
	if c.proxyUser != "" {
		req.Header.Set("Proxy-User", c.proxyUser)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// do sends a request and returns the response if its status is below 400.
func (c *Client) do(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode < 400 {
		return resp, nil
	}
	defer resp.Body.Close()
	e := &Error{Status: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var body struct {
		Code        int    `json:"code"`
		Description string `json:"description"`
	}
	if json.Unmarshal(b, &body) == nil {
		e.Code, e.Description = body.Code, body.Description
	}
	return nil, e
}

// call sends JSON in (if not nil) and decodes the answer into out (if not
// nil).
func (c *Client) call(ctx context.Context, method, p string, q url.Values, in, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: encode: %w", err)
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	req, err := c.newRequest(ctx, method, p, q, body, ctype)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("client: %s %s: decode: %w", method, p, err)
	}
	return nil
}

// Info is GET /info.
type Info struct {
	Name        string `json:"name"`
	Build       int    `json:"build"`
	Support     string `json:"support"`
	Version     string `json:"version"`
	Description string `json:"description"`
	AllowDebug  bool   `json:"allow_debug"`
	// AppDomain is the domain apps get default routes under (a kiln
	// extension; empty from controllers that do not say).
	AppDomain string `json:"app_domain,omitempty"`
	User      string `json:"user,omitempty"`
	Limits    *struct {
		Memory   int `json:"memory"`
		AppURIs  int `json:"app_uris"`
		Services int `json:"services"`
		Apps     int `json:"apps"`
	} `json:"limits,omitempty"`
	Usage *struct {
		Memory   int `json:"memory"`
		Apps     int `json:"apps"`
		Services int `json:"services"`
	} `json:"usage,omitempty"`
	Frameworks map[string]Framework `json:"frameworks,omitempty"`
}

// Framework is one framework of /info.
type Framework struct {
	Name     string `json:"name"`
	Runtimes []struct {
		Name        string `json:"name"`
		Version     string `json:"version"`
		Description string `json:"description"`
	} `json:"runtimes"`
}

// Info returns the controller's description (and the user's limits and
// usage when logged in).
func (c *Client) Info(ctx context.Context) (Info, error) {
	var out Info
	return out, c.call(ctx, "GET", "/info", nil, nil, &out)
}

// Runtime is one entry of /info/runtimes.
type Runtime struct {
	Version     string   `json:"version"`
	Description string   `json:"description,omitempty"`
	DebugModes  []string `json:"debug_modes,omitempty"`
}

// Runtimes is GET /info/runtimes.
func (c *Client) Runtimes(ctx context.Context) (map[string]Runtime, error) {
	var out map[string]Runtime
	return out, c.call(ctx, "GET", "/info/runtimes", nil, nil, &out)
}

// ServiceOffering is one entry of /info/services.
type ServiceOffering struct {
	ID          string                    `json:"id"`
	Vendor      string                    `json:"vendor"`
	Version     string                    `json:"version"`
	Type        string                    `json:"type"`
	Description string                    `json:"description"`
	Tiers       map[string]map[string]any `json:"tiers"`
}

// ServiceOfferings is GET /info/services: type → vendor → version → offering.
func (c *Client) ServiceOfferings(ctx context.Context) (map[string]map[string]map[string]ServiceOffering, error) {
	var out map[string]map[string]map[string]ServiceOffering
	return out, c.call(ctx, "GET", "/info/services", nil, nil, &out)
}

// Register is POST /users.
func (c *Client) Register(ctx context.Context, email, password string) error {
	return c.call(ctx, "POST", "/users", nil, map[string]string{"email": email, "password": password}, nil)
}

// Login is POST /users/:email/tokens; the token is also kept for later calls.
func (c *Client) Login(ctx context.Context, email, password string) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	if err := c.call(ctx, "POST", path("users", email, "tokens"), nil, map[string]string{"password": password}, &out); err != nil {
		return "", err
	}
	c.token = out.Token
	return out.Token, nil
}

// Logout revokes the current token (DELETE /users/:email/tokens).
func (c *Client) Logout(ctx context.Context, email string) error {
	err := c.call(ctx, "DELETE", path("users", email, "tokens"), nil, nil, nil)
	if err == nil {
		c.token = ""
	}
	return err
}

// User is GET /users/:email.
type User struct {
	Email string `json:"email"`
	Admin bool   `json:"admin"`
	Apps  []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"apps,omitempty"`
}

// User returns one user (self or, for admins, anyone).
func (c *Client) User(ctx context.Context, email string) (User, error) {
	var out User
	return out, c.call(ctx, "GET", path("users", email), nil, nil, &out)
}

// ChangePassword is PUT /users/:email.
func (c *Client) ChangePassword(ctx context.Context, email, password string) error {
	return c.call(ctx, "PUT", path("users", email), nil, map[string]string{"email": email, "password": password}, nil)
}

// Users is GET /users (admin).
func (c *Client) Users(ctx context.Context) ([]User, error) {
	var out []User
	return out, c.call(ctx, "GET", "/users", nil, nil, &out)
}

// DeleteUser is DELETE /users/:email (admin).
func (c *Client) DeleteUser(ctx context.Context, email string) error {
	return c.call(ctx, "DELETE", path("users", email), nil, nil, nil)
}

// App is an app as the controller reports it.
type App struct {
	Name    string `json:"name"`
	Staging struct {
		Model     string `json:"model"`
		Stack     string `json:"stack"`
		Command   string `json:"command,omitempty"`
		Buildpack string `json:"buildpack,omitempty"`
	} `json:"staging"`
	URIs             []string `json:"uris"`
	Instances        int      `json:"instances"`
	RunningInstances *int     `json:"runningInstances"`
	Resources        struct {
		Memory int `json:"memory"`
		Disk   int `json:"disk"`
		FDs    int `json:"fds"`
	} `json:"resources"`
	State    string   `json:"state"`
	Services []string `json:"services"`
	Version  string   `json:"version"`
	Env      []string `json:"env"`
	Meta     struct {
		Version int64 `json:"version"`
		Created int64 `json:"created"`
	} `json:"meta"`
	PackageState string `json:"package_state,omitempty"`
	StagingError string `json:"staging_error,omitempty"`
}

// Running returns the number of RUNNING instances (0 when unknown).
func (a App) Running() int {
	if a.RunningInstances == nil {
		return 0
	}
	return *a.RunningInstances
}

// AppRequest creates an app.
type AppRequest struct {
	Name      string
	Framework string
	Runtime   string
	Command   string
	Buildpack string
	URIs      []string
	Instances int
	Memory    int
	Env       []string
	Services  []string
}

// CreateApp is POST /apps.
func (c *Client) CreateApp(ctx context.Context, r AppRequest) error {
	staging := map[string]any{}
	for k, v := range map[string]string{"framework": r.Framework, "runtime": r.Runtime, "command": r.Command, "buildpack": r.Buildpack} {
		if v != "" {
			staging[k] = v
		}
	}
	body := map[string]any{"name": r.Name, "staging": staging, "uris": nonNil(r.URIs), "instances": r.Instances}
	if r.Memory > 0 {
		body["resources"] = map[string]int{"memory": r.Memory}
	}
	if r.Env != nil {
		body["env"] = r.Env
	}
	if r.Services != nil {
		body["services"] = r.Services
	}
	return c.call(ctx, "POST", "/apps", nil, body, nil)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Apps is GET /apps.
func (c *Client) Apps(ctx context.Context) ([]App, error) {
	var out []App
	return out, c.call(ctx, "GET", "/apps", nil, nil, &out)
}

// App is GET /apps/:name.
func (c *Client) App(ctx context.Context, name string) (App, error) {
	var out App
	return out, c.call(ctx, "GET", path("apps", name), nil, nil, &out)
}

// AppUpdate changes an app; nil fields are left alone.
type AppUpdate struct {
	State     *string   `json:"state,omitempty"`
	Instances *int      `json:"instances,omitempty"`
	URIs      *[]string `json:"uris,omitempty"`
	Env       *[]string `json:"env,omitempty"`
	Services  *[]string `json:"services,omitempty"`
	Resources *struct {
		Memory int `json:"memory"`
	} `json:"resources,omitempty"`
	// MetaVersion, when set, makes the update fail with code 102 if the
	// app changed since it was read.
	MetaVersion *int64 `json:"-"`
}

// UpdateApp is PUT /apps/:name.
func (c *Client) UpdateApp(ctx context.Context, name string, u AppUpdate) error {
	b, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("client: encode: %w", err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if u.MetaVersion != nil {
		m["meta"] = map[string]int64{"version": *u.MetaVersion}
	}
	return c.call(ctx, "PUT", path("apps", name), nil, m, nil)
}

// Ptr returns a pointer to v, for AppUpdate fields.
func Ptr[T any](v T) *T { return &v }

// SetMemory returns an AppUpdate changing the memory per instance.
func SetMemory(mb int) AppUpdate {
	return AppUpdate{Resources: &struct {
		Memory int `json:"memory"`
	}{mb}}
}

// Start sets the app STARTED.
func (c *Client) Start(ctx context.Context, name string) error {
	return c.UpdateApp(ctx, name, AppUpdate{State: Ptr("STARTED")})
}

// Stop sets the app STOPPED.
func (c *Client) Stop(ctx context.Context, name string) error {
	return c.UpdateApp(ctx, name, AppUpdate{State: Ptr("STOPPED")})
}

// Scale sets the instance count.
func (c *Client) Scale(ctx context.Context, name string, n int) error {
	return c.UpdateApp(ctx, name, AppUpdate{Instances: &n})
}

// DeleteApp is DELETE /apps/:name.
func (c *Client) DeleteApp(ctx context.Context, name string) error {
	return c.call(ctx, "DELETE", path("apps", name), nil, nil, nil)
}

// WaitRunning polls the app until all its instances run or ctx ends.
func (c *Client) WaitRunning(ctx context.Context, name string, every time.Duration) (App, error) {
	for {
		a, err := c.App(ctx, name)
		if err != nil {
			return a, err
		}
		if a.State == "STARTED" && a.Running() >= a.Instances && a.PackageState != "FAILED" {
			return a, nil
		}
		if a.PackageState == "FAILED" {
			return a, fmt.Errorf("client: staging of %s failed: %s", name, a.StagingError)
		}
		select {
		case <-ctx.Done():
			return a, fmt.Errorf("%w: %s has %d of %d running", ErrNotRunning, name, a.Running(), a.Instances)
		case <-time.After(every):
		}
	}
}

// Instance is one entry of /apps/:name/instances.
type Instance struct {
	Index    int     `json:"index"`
	State    string  `json:"state"`
	Since    float64 `json:"since"`
	Instance string  `json:"instance_id,omitempty"`
	Host     string  `json:"host,omitempty"`
	Port     int     `json:"port,omitempty"`
}

// Instances is GET /apps/:name/instances.
func (c *Client) Instances(ctx context.Context, name string) ([]Instance, error) {
	var out struct {
		Instances []Instance `json:"instances"`
	}
	return out.Instances, c.call(ctx, "GET", path("apps", name, "instances"), nil, nil, &out)
}

// InstanceStats is one entry of /apps/:name/stats.
type InstanceStats struct {
	State string                  `json:"state"`
	Since int64                   `json:"since,omitempty"`
	Stats *protocol.InstanceStats `json:"stats,omitempty"`
}

// Stats is GET /apps/:name/stats, keyed by index.
func (c *Client) Stats(ctx context.Context, name string) (map[string]InstanceStats, error) {
	var out map[string]InstanceStats
	return out, c.call(ctx, "GET", path("apps", name, "stats"), nil, nil, &out)
}

// Crash is one entry of /apps/:name/crashes.
type Crash struct {
	Instance string `json:"instance"`
	Since    int64  `json:"since"`
}

// Crashes is GET /apps/:name/crashes.
func (c *Client) Crashes(ctx context.Context, name string) ([]Crash, error) {
	var out struct {
		Crashes []Crash `json:"crashes"`
	}
	return out.Crashes, c.call(ctx, "GET", path("apps", name, "crashes"), nil, nil, &out)
}

// File is GET /apps/:name/instances/:instance/files/*path; instance is an
// index or an instance id.
func (c *Client) File(ctx context.Context, name, instance, filePath string) ([]byte, error) {
	segs := []string{"apps", name, "instances", instance, "files"}
	for _, s := range strings.Split(strings.Trim(filePath, "/"), "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	req, err := c.newRequest(ctx, "GET", path(segs...), nil, nil, "")
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// Logs is GET /apps/:name/logs: the recent log lines.
func (c *Client) Logs(ctx context.Context, name string) ([]protocol.LogLine, error) {
	var out []protocol.LogLine
	return out, c.call(ctx, "GET", path("apps", name, "logs"), nil, nil, &out)
}

// FollowLogs streams the app's log lines (recent ones first) to f until ctx
// ends or f returns false.
func (c *Client) FollowLogs(ctx context.Context, name string, f func(protocol.LogLine) bool) error {
	req, err := c.newRequest(ctx, "GET", path("apps", name, "logs"), url.Values{"follow": {"true"}}, nil, "")
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var l protocol.LogLine
		if json.Unmarshal([]byte(data), &l) != nil {
			continue
		}
		if !f(l) {
			return nil
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

// StagingLog copies the app's last staging log to w; with follow it waits
// until staging ends.
func (c *Client) StagingLog(ctx context.Context, name string, follow bool, w io.Writer) error {
	q := url.Values{}
	if follow {
		q.Set("follow", "true")
	}
	return c.download(ctx, path("apps", name, "staging_log"), q, w)
}

// download copies the body of a GET of p with query q to w.
func (c *Client) download(ctx context.Context, p string, q url.Values, w io.Writer) error {
	req, err := c.newRequest(ctx, "GET", p, q, nil, "")
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// Restart rolls the app's instances over to a new version, index by index
// (POST /apps/:name/restart).
func (c *Client) Restart(ctx context.Context, name string) error {
	return c.call(ctx, "POST", path("apps", name, "restart"), nil, nil, nil)
}

// RolloutStatus is GET /apps/:name/update.
type RolloutStatus struct {
	State   string `json:"state"`
	Since   int64  `json:"since"`
	Message string `json:"message,omitempty"`
}

// UpdateStatus is GET /apps/:name/update.
func (c *Client) UpdateStatus(ctx context.Context, name string) (RolloutStatus, error) {
	var out RolloutStatus
	return out, c.call(ctx, "GET", path("apps", name, "update"), nil, nil, &out)
}

// Droplet is one kept droplet of an app.
type Droplet struct {
	Hash    string `json:"hash"`
	Created int64  `json:"created"`
	Current bool   `json:"current"`
}

// Droplets is GET /apps/:name/droplets, newest first.
func (c *Client) Droplets(ctx context.Context, name string) ([]Droplet, error) {
	var out []Droplet
	return out, c.call(ctx, "GET", path("apps", name, "droplets"), nil, nil, &out)
}

// Rollback makes a kept droplet current again (POST /apps/:name/rollback).
func (c *Client) Rollback(ctx context.Context, name, hash string) error {
	return c.call(ctx, "POST", path("apps", name, "rollback"), nil, map[string]string{"droplet": hash}, nil)
}

// DownloadApp copies the app's package (a zip) to w.
func (c *Client) DownloadApp(ctx context.Context, name string, w io.Writer) error {
	return c.download(ctx, path("apps", name, "application"), nil, w)
}

// Service is a provisioned service instance (legacy shape).
type Service struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Vendor     string         `json:"vendor"`
	Version    string         `json:"version"`
	Tier       string         `json:"tier"`
	Properties map[string]any `json:"properties"`
}

// Services is GET /services.
func (c *Client) Services(ctx context.Context) ([]Service, error) {
	var out []Service
	return out, c.call(ctx, "GET", "/services", nil, nil, &out)
}

// Service is GET /services/:name.
func (c *Client) Service(ctx context.Context, name string) (Service, error) {
	var out Service
	return out, c.call(ctx, "GET", path("services", name), nil, nil, &out)
}

// CreateService provisions an instance of vendor's tier named name.
func (c *Client) CreateService(ctx context.Context, name, vendor, version, tier string) error {
	return c.call(ctx, "POST", "/services", nil, map[string]string{"name": name, "vendor": vendor, "version": version, "tier": tier, "type": "generic"}, nil)
}

// DeleteService is DELETE /services/:name.
func (c *Client) DeleteService(ctx context.Context, name string) error {
	return c.call(ctx, "DELETE", path("services", name), nil, nil, nil)
}

// BindService adds a service to the app's bindings (GET then PUT the app).
func (c *Client) BindService(ctx context.Context, app, service string) error {
	a, err := c.App(ctx, app)
	if err != nil {
		return err
	}
	for _, s := range a.Services {
		if s == service {
			return nil
		}
	}
	svcs := append(a.Services, service)
	return c.UpdateApp(ctx, app, AppUpdate{Services: &svcs})
}

// UnbindService removes a service from the app's bindings.
func (c *Client) UnbindService(ctx context.Context, app, service string) error {
	a, err := c.App(ctx, app)
	if err != nil {
		return err
	}
	svcs := []string{}
	for _, s := range a.Services {
		if s != service {
			svcs = append(svcs, s)
		}
	}
	return c.UpdateApp(ctx, app, AppUpdate{Services: &svcs})
}

// RegisterBroker registers a service broker (admin).
func (c *Client) RegisterBroker(ctx context.Context, name, brokerURL, username, password string) error {
	return c.call(ctx, "POST", "/services/v1/brokers", nil, map[string]string{"name": name, "url": brokerURL, "username": username, "password": password}, nil)
}

// BulkApps reads one page of the bulk API with basic auth. token is the
// previous page's BulkToken (nil for the first page).
func (c *Client) BulkApps(ctx context.Context, user, password string, batch int, token map[string]any) (protocol.BulkAppsPage, error) {
	q := url.Values{"batch_size": {strconv.Itoa(batch)}}
	if len(token) > 0 {
		b, _ := json.Marshal(token)
		q.Set("bulk_token", string(b))
	}
	req, err := c.newRequest(ctx, "GET", "/bulk/apps", q, nil, "")
	if err != nil {
		return protocol.BulkAppsPage{}, err
	}
	req.Header.Del("Authorization")
	req.SetBasicAuth(user, password)
	resp, err := c.do(req)
	if err != nil {
		return protocol.BulkAppsPage{}, err
	}
	defer resp.Body.Close()
	var out protocol.BulkAppsPage
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return out, fmt.Errorf("client: bulk apps: decode: %w", err)
	}
	return out, nil
}

// Event is one entry of an app's audit trail.
type Event struct {
	Time        int64  `json:"time"`
	Type        string `json:"type"`
	Description string `json:"description"`
}

// Events is GET /apps/:name/events, oldest first.
func (c *Client) Events(ctx context.Context, name string) ([]Event, error) {
	var out []Event
	return out, c.call(ctx, "GET", path("apps", name, "events"), nil, nil, &out)
}
