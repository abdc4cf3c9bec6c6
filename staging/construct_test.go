package staging_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/staging"
	"github.com/kiln-paas/kiln/warden"
	"github.com/kiln-paas/kiln/warden/fake"
)

// TestNewStagerRejects checks that NewStager reports every unusable
// argument as an error, and that New panics on the same with a message
// that says where it came from and why.
func TestNewStagerRejects(t *testing.T) {
	t.Parallel()
	fb, err := fake.New(fake.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	taken := prometheus.NewRegistry()
	if _, err := staging.NewStager(withRegistry(taken), fb, nil); err != nil {
		t.Fatalf("first Stager on a registry: %v", err)
	}
	tests := []struct {
		name    string
		cfg     staging.Config
		backend warden.Backend
		want    string // in the error
	}{
		{"empty stack", func() staging.Config { c := staging.DefaultConfig(); c.Stack = ""; return c }(), fb, "empty Stack"},
		{"no concurrency", func() staging.Config { c := staging.DefaultConfig(); c.MaxConcurrent = 0; return c }(), fb, "MaxConcurrent"},
		{"nil backend", staging.DefaultConfig(), nil, "nil warden.Backend"},
		{"metrics already registered", withRegistry(taken), fb, "register metrics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := staging.NewStager(tt.cfg, tt.backend, nil)
			if err == nil || s != nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewStager = %v, %v; want nil and an error containing %q", s, err, tt.want)
			}
			defer func() {
				msg, _ := recover().(string)
				if !strings.HasPrefix(msg, "staging.New: ") || !strings.Contains(msg, tt.want) {
					t.Errorf("New panicked with %q; want %q and the error", msg, "staging.New: ")
				}
			}()
			staging.New(tt.cfg, tt.backend, nil)
			t.Errorf("New did not panic")
		})
	}
}

func withRegistry(reg prometheus.Registerer) staging.Config {
	c := staging.DefaultConfig()
	c.Registerer = reg
	return c
}
