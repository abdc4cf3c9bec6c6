package healthmgr

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/kiln-paas/kiln/bus/protocol"
)

// DesiredSource tells the manager what the controller wants running. The
// manager calls it from one goroutine at a time, at start, every
// Config.DesiredInterval and after droplet.updated notices.
type DesiredSource interface {
	// Desired returns the desired state of every app the controller
	// knows. An app it leaves out is taken as deleted, so an error must be
	// returned rather than a partial list. Errors that mean "cannot reach
	// the controller" should wrap ErrDesiredUnavailable.
	Desired(ctx context.Context) ([]protocol.BulkApp, error)
}

// AppSource is an optional extension of DesiredSource for sources that can
// read one app cheaply. With it, a droplet.updated notice reloads that app
// at once; without it, notices trigger a debounced full reload.
type AppSource interface {
	DesiredSource
	// DesiredApp returns one app's desired state; ok is false when the
	// app does not exist (it was deleted).
	DesiredApp(ctx context.Context, id string) (app protocol.BulkApp, ok bool, err error)
}

// MemSource is an in-memory DesiredSource and AppSource: the double for
// tests and for embedders that hold the desired state themselves. Its zero
// value is an empty, reachable source. It is safe for concurrent use.
type MemSource struct {
	mu   sync.Mutex
	apps map[protocol.AppID]protocol.BulkApp
	err  error
}

var _ AppSource = (*MemSource)(nil)

// NewMemSource returns a source holding apps.
func NewMemSource(apps ...protocol.BulkApp) *MemSource {
	s := &MemSource{}
	s.Put(apps...)
	return s
}

// Put adds or replaces apps (keyed by ID).
func (s *MemSource) Put(apps ...protocol.BulkApp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.apps == nil {
		s.apps = make(map[protocol.AppID]protocol.BulkApp)
	}
	for _, a := range apps {
		s.apps[a.ID] = a
	}
}

// Delete removes apps.
func (s *MemSource) Delete(ids ...protocol.AppID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.apps, id)
	}
}

// SetErr makes every read fail with err until it is called with nil: a
// controller that cannot be reached.
func (s *MemSource) SetErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// Desired implements DesiredSource; apps come ordered by id.
func (s *MemSource) Desired(ctx context.Context) ([]protocol.BulkApp, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	ids := slices.Sorted(maps.Keys(s.apps))
	out := make([]protocol.BulkApp, len(ids))
	for i, id := range ids {
		out[i] = s.apps[id]
	}
	return out, nil
}

// DesiredApp implements AppSource.
func (s *MemSource) DesiredApp(ctx context.Context, id string) (protocol.BulkApp, bool, error) {
	if err := ctx.Err(); err != nil {
		return protocol.BulkApp{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return protocol.BulkApp{}, false, s.err
	}
	a, ok := s.apps[protocol.AppID(id)]
	return a, ok, nil
}
