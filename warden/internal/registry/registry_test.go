package registry

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/kiln-paas/kiln/warden"
)

// box is a minimal warden.Container for the table; only Handle is used.
type box struct {
	warden.Container
	handle string
	tag    string
}

func (b *box) Handle() string { return b.handle }

func TestLookup(t *testing.T) {
	m := map[string]*box{"a": {handle: "a"}, "reserved": nil}
	tests := []struct {
		handle string
		found  bool
	}{{"a", true}, {"reserved", false}, {"missing", false}}
	for _, tt := range tests {
		c, err := Lookup(context.Background(), m, "test", tt.handle)
		if tt.found != (err == nil) {
			t.Fatalf("Lookup(%q) = %v, %v; want found=%v", tt.handle, c, err, tt.found)
		}
		if err != nil && !errors.Is(err, warden.ErrNotFound) {
			t.Errorf("Lookup(%q) error %v does not wrap ErrNotFound", tt.handle, err)
		}
		if err == nil && c.Handle() != tt.handle {
			t.Errorf("Lookup(%q) returned %q", tt.handle, c.Handle())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Lookup(ctx, m, "test", "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("Lookup with a cancelled context = %v", err)
	}
}

func TestSelect(t *testing.T) {
	m := map[string]*box{"a": {handle: "a", tag: "x"}, "b": {handle: "b", tag: "y"}, "c": {handle: "c", tag: "x"}, "r": nil}
	got, err := Select(context.Background(), m, func(b *box) bool { return b.tag == "x" })
	if err != nil {
		t.Fatal(err)
	}
	var handles []string
	for _, c := range got {
		handles = append(handles, c.Handle())
	}
	slices.Sort(handles)
	if !slices.Equal(handles, []string{"a", "c"}) {
		t.Errorf("Select = %v, want [a c]", handles)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Select(ctx, m, func(*box) bool { return true }); !errors.Is(err, context.Canceled) {
		t.Errorf("Select with a cancelled context = %v", err)
	}
}
