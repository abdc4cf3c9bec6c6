package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    Manifest
		wantErr bool
	}{
		{
			name: "full",
			in: `applications:
- name: web
  path: ./web
  memory: 256M
  instances: 2
  buildpack: go
  command: ./web -port $PORT
  env:
    A: one
    N: 3
    B: true
  routes:
  - route: web.vcap.me
  - route: www.vcap.me
  services: [cache, db]
  health-check-type: http
  health-check-http-endpoint: /healthz
  timeout: 90
`,
			want: Manifest{Applications: []App{{Name: "web", Path: "./web", MemoryMB: 256, Instances: 2, Buildpack: "go", Command: "./web -port $PORT",
				Env: map[string]string{"A": "one", "N": "3", "B": "true"}, Routes: []string{"web.vcap.me", "www.vcap.me"}, Services: []string{"cache", "db"},
				HealthCheckType: "http", HealthCheckEndpoint: "/healthz", Timeout: 90}}},
		},
		{
			name: "top-level defaults inherited and overridden",
			in: `memory: 1G
instances: 3
env: {SHARED: x, OVER: top}
applications:
- name: a
- name: b
  memory: 128
  instances: 0
  env: {OVER: app}
`,
			want: Manifest{Applications: []App{
				{Name: "a", MemoryMB: 1024, Instances: 3, Env: map[string]string{"SHARED": "x", "OVER": "top"}},
				{Name: "b", MemoryMB: 128, Instances: 0, Env: map[string]string{"SHARED": "x", "OVER": "app"}},
			}},
		},
		{
			name: "single app at top level with old url keys",
			in:   "name: solo\nurl: solo.vcap.me\nurls: [alt.vcap.me]\n",
			want: Manifest{Applications: []App{{Name: "solo", Routes: []string{"solo.vcap.me", "alt.vcap.me"}}}},
		},
		{name: "no-route", in: "applications: [{name: w, no-route: true}]", want: Manifest{Applications: []App{{Name: "w", NoRoute: true}}}},
		{name: "empty", in: "", want: Manifest{}},
		{name: "missing name", in: "applications: [{memory: 1G}]", wantErr: true},
		{name: "duplicate", in: "applications: [{name: a}, {name: a}]", wantErr: true},
		{name: "bad memory", in: "applications: [{name: a, memory: lots}]", wantErr: true},
		{name: "memory not scalar", in: "applications: [{name: a, memory: [1]}]", wantErr: true},
		{name: "negative instances", in: "applications: [{name: a, instances: -1}]", wantErr: true},
		{name: "bad health check", in: "applications: [{name: a, health-check-type: ping}]", wantErr: true},
		{name: "endpoint without slash", in: "applications: [{name: a, health-check-http-endpoint: healthz}]", wantErr: true},
		{name: "env not scalar", in: "applications: [{name: a, env: {A: [1]}}]", wantErr: true},
		{name: "no-route with routes", in: "applications: [{name: a, no-route: true, url: a.b}]", wantErr: true},
		{name: "not yaml", in: "applications: [", wantErr: true},
		{name: "wrong type", in: "applications: {name: a}", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Parse error = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Parse (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseMemory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"64M", 64, true}, {"64MB", 64, true}, {"128", 128, true}, {"1G", 1024, true}, {"2gb", 2048, true}, {" 512m ", 512, true},
		{"", 0, false}, {"0", 0, false}, {"-1M", 0, false}, {"1T", 0, false}, {"G", 0, false}, {"99999999G", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseMemory(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestLoadResolvesPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "manifest.yml")
	abs := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(p, []byte("applications:\n- name: a\n- name: b\n  path: sub\n- name: c\n  path: "+abs+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range m.Applications {
		got = append(got, a.Path)
	}
	want := []string{dir, filepath.Join(dir, "sub"), abs}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("paths (-want +got):\n%s", d)
	}
	if _, err := Load(filepath.Join(dir, "missing.yml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
}

func TestEnvListSorted(t *testing.T) {
	t.Parallel()
	a := App{Env: map[string]string{"B": "2", "A": "1=1"}}
	if d := cmp.Diff([]string{"A=1=1", "B=2"}, a.EnvList()); d != "" {
		t.Error(d)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("applications: [{name: a, memory: 1G, env: {A: b}, routes: [{route: x}]}]"))
	f.Add([]byte("name: a\nurl: b\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		for _, a := range m.Applications {
			if a.Name == "" || a.Instances < 0 || a.MemoryMB < 0 {
				t.Fatalf("invalid app accepted: %+v", a)
			}
		}
	})
}
