package services_test

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/services"
)

func testCatalog() services.Catalog {
	return services.Catalog{Services: []services.Service{
		{ID: "pg", Name: "postgresql", Tags: []string{"sql"}, Plans: []services.Plan{{ID: "small"}, {ID: "large"}}},
		{ID: "kv", Name: "memory", Plans: []services.Plan{{ID: "free"}}},
	}}
}

func TestCatalogCheckPlan(t *testing.T) {
	t.Parallel()
	c := testCatalog()
	tests := []struct {
		service, plan string
		ok            bool
	}{
		{"pg", "small", true},
		{"pg", "large", true},
		{"kv", "free", true},
		{"pg", "free", false}, // another service's plan
		{"kv", "small", false},
		{"mysql", "small", false},
		{"", "", false},
	}
	for _, tt := range tests {
		err := c.CheckPlan(tt.service, tt.plan)
		if tt.ok != (err == nil) || (err != nil && !errors.Is(err, services.ErrBadRequest)) {
			t.Errorf("CheckPlan(%q, %q) = %v; want ok=%v or ErrBadRequest", tt.service, tt.plan, err, tt.ok)
		}
	}
}

func TestCatalogClone(t *testing.T) {
	t.Parallel()
	c := testCatalog()
	got := c.Clone()
	if diff := cmp.Diff(c, got); diff != "" {
		t.Fatalf("Clone differs (-orig +clone):\n%s", diff)
	}
	got.Services[0].Tags[0] = "changed"
	got.Services[0].Plans[0].ID = "changed"
	got.Services[1].Name = "changed"
	if diff := cmp.Diff(testCatalog(), c); diff != "" {
		t.Errorf("changing the clone changed the original (-want +got):\n%s", diff)
	}
}
