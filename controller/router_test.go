package controller

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRouteMatch(t *testing.T) {
	t.Parallel()
	c := &Controller{}
	routes := c.routeTable()
	find := func(method, path string) (string, map[string]string) {
		segs, ok := splitPath(path)
		if !ok {
			return "", nil
		}
		for _, rt := range routes {
			if rt.method != method {
				continue
			}
			if p, ok := rt.match(segs); ok {
				return rt.name, p
			}
		}
		return "", nil
	}
	tests := []struct {
		method, path string
		route        string
		params       map[string]string
	}{
		{"GET", "/info", "GET /info", map[string]string{}},
		{"GET", "/", "GET /", map[string]string{}},
		{"POST", "/services/redis/tokens", "POST /services/:label/tokens", map[string]string{"label": "redis"}},
		{"POST", "/users/a.b@c.io/tokens", "POST /users/*email/tokens", map[string]string{"email": "a.b@c.io"}},
		{"GET", "/users/a.b@c.io", "GET /users/*email", map[string]string{"email": "a.b@c.io"}},
		{"GET", "/users/a%2Fb@c.io", "GET /users/*email", map[string]string{"email": "a/b@c.io"}},
		{"POST", "/users/tokens", "", nil},
		{"GET", "/apps/my%20app", "GET /apps/:name", map[string]string{"name": "my app"}},
		{"GET", "/apps/a%2Fb/instances", "GET /apps/:name/instances", map[string]string{"name": "a/b"}},
		{"PUT", "/apps/x/application", "PUT /apps/:name/application", map[string]string{"name": "x"}},
		{"POST", "/apps/x/application", "POST /apps/:name/application", map[string]string{"name": "x"}},
		{"GET", "/apps/x/instances/0/files", "GET /apps/:name/instances/:index/files", map[string]string{"name": "x", "index": "0"}},
		{"GET", "/apps/x/instances/0/files/logs/a.log", "GET /apps/:name/instances/:index/files/*path", map[string]string{"name": "x", "index": "0", "path": "logs/a.log"}},
		{"GET", "/staged_droplets/id/hash", "GET /staged_droplets/:id/:hash", map[string]string{"id": "id", "hash": "hash"}},
		{"PATCH", "/apps/x", "", nil},
		{"GET", "/apps/x/y/z", "", nil},
		{"GET", "/apps/%zz", "", nil},
		{"DELETE", "/services/db", "DELETE /services/:alias", map[string]string{"alias": "db"}},
		{"POST", "/services/v1/brokers", "POST /services/v1/brokers", map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			name, params := find(tt.method, tt.path)
			if name != tt.route {
				t.Fatalf("route = %q, want %q", name, tt.route)
			}
			if diff := cmp.Diff(tt.params, params); tt.route != "" && diff != "" {
				t.Fatalf("params (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewVersion(t *testing.T) {
	t.Parallel()
	tests := []struct{ seed, prev, want string }{
		{"abc", "", "abc-0"},
		{"abc", "abc-0", "abc-1"},
		{"abc", "abc-41", "abc-42"},
		{"abc", "def-3", "abc-0"},
		{"abc", "abc-x", "abc-0"},
	}
	for _, tt := range tests {
		if got := newVersion(tt.seed, tt.prev); got != tt.want {
			t.Errorf("newVersion(%q, %q) = %q, want %q", tt.seed, tt.prev, got, tt.want)
		}
	}
}
