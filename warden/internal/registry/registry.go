// Package registry looks up the containers a host backend (warden/process,
// warden/linux) keeps by handle. The backend owns the map and its lock;
// these functions hold the lookup logic both backends share, including the
// rule that a nil entry is a handle reserved by a create still in progress
// and so not yet a container.
package registry

import (
	"context"
	"fmt"

	"github.com/kiln-paas/kiln/warden"
)

// Lookup returns the container with the given handle, or an error wrapping
// warden.ErrNotFound naming the backend. The caller holds the map's lock.
func Lookup[C interface {
	comparable
	warden.Container
}](ctx context.Context, m map[string]C, backend, handle string) (warden.Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var none C
	c, ok := m[handle]
	if !ok || c == none {
		return nil, fmt.Errorf("%s: container %q: %w", backend, handle, warden.ErrNotFound)
	}
	return c, nil
}

// Select returns the containers of m for which keep is true, skipping
// reserved (nil) entries. The caller holds the map's lock.
func Select[C interface {
	comparable
	warden.Container
}](ctx context.Context, m map[string]C, keep func(C) bool) ([]warden.Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var none C
	var out []warden.Container
	for _, c := range m {
		if c != none && keep(c) {
			out = append(out, c)
		}
	}
	return out, nil
}
