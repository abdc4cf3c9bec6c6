// Package manifest reads the manifest.yml of kiln's CLI: the file, shaped
// like the ones well-known PaaS CLIs read, that describes the apps a push
// deploys so that their settings live with their code.
//
//	applications:
//	- name: hello
//	  path: ./hello
//	  memory: 256M
//	  instances: 2
//	  buildpack: go
//	  command: ./hello
//	  env: {GREETING: hi}
//	  routes: [{route: hello.vcap.me}]
//	  services: [cache]
//	  health-check-type: http
//	  health-check-http-endpoint: /healthz
//	  timeout: 120
//
// Top-level keys other than applications are defaults every application
// inherits. Memory takes the CLI's sizes (256M, 1G, 512); "url"/"urls" are
// accepted as the old single- and multi-route spellings.
package manifest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrInvalid is wrapped by every error about the manifest's content.
var ErrInvalid = errors.New("manifest: invalid")

// maxSize caps the manifest file: a manifest is a few kilobytes; a bigger
// file is a mistake, not a deployment.
const maxSize = 1 << 20

// App is one application of a manifest, with defaults applied.
type App struct {
	Name      string `json:"name"`
	Path      string `json:"path,omitempty"`
	MemoryMB  int    `json:"memory,omitempty"`
	Instances int    `json:"instances,omitempty"`
	Buildpack string `json:"buildpack,omitempty"`
	Command   string `json:"command,omitempty"`
	// Env is sorted by key when turned into K=V pairs by EnvList.
	Env      map[string]string `json:"env,omitempty"`
	Routes   []string          `json:"routes,omitempty"`
	Services []string          `json:"services,omitempty"`
	// NoRoute asks for an app without routes.
	NoRoute             bool   `json:"no_route,omitempty"`
	HealthCheckType     string `json:"health_check_type,omitempty"`
	HealthCheckEndpoint string `json:"health_check_http_endpoint,omitempty"`
	// Timeout is the start timeout in seconds.
	Timeout int `json:"timeout,omitempty"`
}

// EnvList returns the app's environment as sorted K=V pairs.
func (a App) EnvList() []string {
	keys := make([]string, 0, len(a.Env))
	for k := range a.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+a.Env[k])
	}
	return out
}

// Manifest is a parsed manifest.
type Manifest struct {
	Applications []App `json:"applications"`
}

// Find returns the application called name.
func (m Manifest) Find(name string) (App, bool) {
	for _, a := range m.Applications {
		if a.Name == name {
			return a, true
		}
	}
	return App{}, false
}

// raw is the YAML shape; every field is optional so that defaults can be
// told apart from explicit values.
type raw struct {
	Name      string            `yaml:"name"`
	Path      *string           `yaml:"path"`
	Memory    *scalar           `yaml:"memory"`
	Instances *int              `yaml:"instances"`
	Buildpack *string           `yaml:"buildpack"`
	Command   *string           `yaml:"command"`
	Env       map[string]scalar `yaml:"env"`
	Routes    []struct {
		Route string `yaml:"route"`
	} `yaml:"routes"`
	URL                 *string  `yaml:"url"`
	URLs                []string `yaml:"urls"`
	NoRoute             *bool    `yaml:"no-route"`
	Services            []string `yaml:"services"`
	HealthCheckType     *string  `yaml:"health-check-type"`
	HealthCheckEndpoint *string  `yaml:"health-check-http-endpoint"`
	Timeout             *int     `yaml:"timeout"`
}

// scalar is an env value or a memory size: YAML numbers and booleans
// become their text.
type scalar string

func (s *scalar) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%w: expected a single value (line %d)", ErrInvalid, n.Line)
	}
	*s = scalar(n.Value)
	return nil
}

type file struct {
	raw          `yaml:",inline"`
	Applications []raw `yaml:"applications"`
}

// Parse decodes a manifest. Paths stay as written; Load resolves them.
func Parse(b []byte) (Manifest, error) {
	if len(b) > maxSize {
		return Manifest{}, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, maxSize)
	}
	var f file
	if err := yaml.Unmarshal(b, &f); err != nil {
		if errors.Is(err, ErrInvalid) {
			return Manifest{}, err
		}
		return Manifest{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(f.Applications) == 0 && f.Name != "" {
		// A manifest may describe one app at the top level.
		f.Applications = []raw{{}}
	}
	var m Manifest
	seen := map[string]bool{}
	for i, r := range f.Applications {
		a, err := merge(f.raw, r)
		if err != nil {
			return Manifest{}, fmt.Errorf("application %d: %w", i+1, err)
		}
		if seen[a.Name] {
			return Manifest{}, fmt.Errorf("%w: application %q appears twice", ErrInvalid, a.Name)
		}
		seen[a.Name] = true
		m.Applications = append(m.Applications, a)
	}
	return m, nil
}

// merge applies app's fields over the top-level defaults.
func merge(def, app raw) (App, error) {
	var a App
	a.Name = pick(app.Name, def.Name)
	if a.Name == "" {
		return a, fmt.Errorf("%w: no name", ErrInvalid)
	}
	a.Path = deref(firstPtr(app.Path, def.Path))
	a.Buildpack = deref(firstPtr(app.Buildpack, def.Buildpack))
	a.Command = deref(firstPtr(app.Command, def.Command))
	a.HealthCheckType = deref(firstPtr(app.HealthCheckType, def.HealthCheckType))
	a.HealthCheckEndpoint = deref(firstPtr(app.HealthCheckEndpoint, def.HealthCheckEndpoint))
	switch a.HealthCheckType {
	case "", "port", "http", "process", "none":
	default:
		return a, fmt.Errorf("%w: unknown health-check-type %q", ErrInvalid, a.HealthCheckType)
	}
	if a.HealthCheckEndpoint != "" && !strings.HasPrefix(a.HealthCheckEndpoint, "/") {
		return a, fmt.Errorf("%w: health-check-http-endpoint must start with /", ErrInvalid)
	}
	if n := firstPtr(app.Instances, def.Instances); n != nil {
		if *n < 0 {
			return a, fmt.Errorf("%w: negative instances", ErrInvalid)
		}
		a.Instances = *n
	}
	if t := firstPtr(app.Timeout, def.Timeout); t != nil {
		if *t < 0 {
			return a, fmt.Errorf("%w: negative timeout", ErrInvalid)
		}
		a.Timeout = *t
	}
	if m := app.Memory; m != nil || def.Memory != nil {
		if m == nil {
			m = def.Memory
		}
		mb, err := ParseMemory(string(*m))
		if err != nil {
			return a, err
		}
		a.MemoryMB = mb
	}
	if len(def.Env)+len(app.Env) > 0 {
		a.Env = map[string]string{}
		for _, env := range []map[string]scalar{def.Env, app.Env} {
			for k, v := range env {
				if k == "" || strings.Contains(k, "=") {
					return a, fmt.Errorf("%w: bad env name %q", ErrInvalid, k)
				}
				a.Env[k] = string(v)
			}
		}
	}
	a.Routes = routes(app)
	if a.Routes == nil {
		a.Routes = routes(def)
	}
	a.Services = app.Services
	if a.Services == nil {
		a.Services = def.Services
	}
	a.NoRoute = deref(firstPtr(app.NoRoute, def.NoRoute))
	if a.NoRoute && len(a.Routes) > 0 {
		return a, fmt.Errorf("%w: no-route with routes", ErrInvalid)
	}
	return a, nil
}

func routes(r raw) []string {
	var out []string
	for _, rt := range r.Routes {
		if rt.Route != "" {
			out = append(out, rt.Route)
		}
	}
	if r.URL != nil && *r.URL != "" {
		out = append(out, *r.URL)
	}
	out = append(out, r.URLs...)
	return out
}

func pick(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func firstPtr[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// ParseMemory reads a memory size in megabytes: "256M", "256MB", "1G",
// "1GB" or a bare number of megabytes.
func ParseMemory(s string) (int, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := 1
	switch {
	case strings.HasSuffix(t, "GB"), strings.HasSuffix(t, "G"):
		mult = 1024
		t = strings.TrimRight(t, "GB")
	case strings.HasSuffix(t, "MB"), strings.HasSuffix(t, "M"):
		t = strings.TrimRight(t, "MB")
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 || n > 1<<20/mult {
		return 0, fmt.Errorf("%w: memory size %q", ErrInvalid, s)
	}
	return n * mult, nil
}

// Load reads the manifest at path and resolves every app's path against
// the manifest's directory ("." when none is given).
func Load(path string) (Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("manifest: %w", err)
	}
	m, err := Parse(b)
	if err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for i := range m.Applications {
		p := m.Applications[i].Path
		if p == "" {
			p = "."
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		m.Applications[i].Path = p
	}
	return m, nil
}
