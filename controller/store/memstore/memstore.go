// Package memstore is an in-memory store.Store: the fake that controller tests
// and single-process kernels run on. It keeps every record in maps behind one
// lock, so every change is atomic and every read is consistent. It passes the
// same conformance suite (store/storetest) as the SQL stores; nothing survives
// Close or the process.
package memstore

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kiln-paas/kiln/controller/store"
)

// Config configures a Store.
type Config struct {
	// Now is the clock used to stamp records; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig returns the default configuration (the wall clock).
func DefaultConfig() Config {
	return Config{Now: time.Now}
}

// Validate reports whether c is usable. Every Config is.
func (c Config) Validate() error {
	return nil
}

type ownerName struct{ owner, name string }

// Store is the in-memory store.Store. The zero value is not usable; call New.
type Store struct {
	now func() time.Time

	mu          sync.RWMutex
	closed      bool
	users       map[string]store.User
	revocations map[string]time.Time
	quotas      map[string]store.Quota
	apps        map[string]store.App
	appNames    map[ownerName]string
	// appIDs indexes apps in ID order for paging: appended to on create
	// and sorted (dropping deleted ids) by the next list when dirty, so
	// creating stays O(1) and a page is a binary search and a scan.
	appIDs    []string
	appsDirty bool
	uris      map[string]string // uri -> app id
	droplets  map[string][]store.Droplet
	events    map[string][]store.AppEvent
	crashes   map[string][]store.Crash
	eventSeq  int64
	crashSeq  int64
	brokers   map[string]store.ServiceBroker
	instances map[string]store.ServiceInstance
	instNames map[ownerName]string
	bindings  map[string]store.Binding
	resources map[string]int64
}

var _ store.Store = (*Store)(nil)

// New returns an empty Store.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("memstore: %w", err)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Store{
		now:         now,
		users:       map[string]store.User{},
		revocations: map[string]time.Time{},
		quotas:      map[string]store.Quota{},
		apps:        map[string]store.App{},
		appNames:    map[ownerName]string{},
		uris:        map[string]string{},
		droplets:    map[string][]store.Droplet{},
		events:      map[string][]store.AppEvent{},
		crashes:     map[string][]store.Crash{},
		brokers:     map[string]store.ServiceBroker{},
		instances:   map[string]store.ServiceInstance{},
		instNames:   map[ownerName]string{},
		bindings:    map[string]store.Binding{},
		resources:   map[string]int64{},
	}, nil
}

// ts reduces t to what the SQL stores keep: UTC, microseconds.
func ts(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMicro(t.UnixMicro()).UTC()
}

func (s *Store) stamp() time.Time { return ts(s.now()) }

// clone copies a slice, returning nil for an empty one.
func clone[T any](xs []T) []T {
	if len(xs) == 0 {
		return nil
	}
	return slices.Clone(xs)
}

func copyApp(a store.App) store.App {
	a.URIs = clone(a.URIs)
	a.Env = clone(a.Env)
	return a
}

// lock takes the write lock and fails on a closed store or ended context.
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return store.ErrClosed
	}
	return nil
}

// rlock is lock for readers.
func (s *Store) rlock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.ErrClosed
	}
	return nil
}

// get returns a copy of m[key], read under the read lock, or an error
// wrapping store.ErrNotFound that names the record as what.
func get[V any](ctx context.Context, s *Store, m map[string]V, key string, cp func(V) V, what string) (V, error) {
	var zero V
	if err := s.rlock(ctx); err != nil {
		return zero, err
	}
	defer s.mu.RUnlock()
	v, ok := m[key]
	if !ok {
		return zero, fmt.Errorf("memstore: %s %q: %w", what, key, store.ErrNotFound)
	}
	return cp(v), nil
}

// getByName is get for records looked up by owner and name through the
// names index.
func getByName[V any](ctx context.Context, s *Store, names map[ownerName]string, m map[string]V, owner, name string, cp func(V) V, what string) (V, error) {
	var zero V
	if err := s.rlock(ctx); err != nil {
		return zero, err
	}
	defer s.mu.RUnlock()
	id, ok := names[ownerName{owner, name}]
	if !ok {
		return zero, fmt.Errorf("memstore: %s %q of %q: %w", what, name, owner, store.ErrNotFound)
	}
	return cp(m[id]), nil
}

// identity is the copy function of records without shared slices.
func identity[V any](v V) V { return v }

// modify applies change to m[key] under the write lock, stores the result
// and returns a copy of it, or an error wrapping store.ErrNotFound that
// names the record as what.
func modify[V any](ctx context.Context, s *Store, m map[string]V, key string, change func(*V), cp func(V) V, what string) (V, error) {
	var zero V
	if err := s.lock(ctx); err != nil {
		return zero, err
	}
	defer s.mu.Unlock()
	v, ok := m[key]
	if !ok {
		return zero, fmt.Errorf("memstore: %s %q: %w", what, key, store.ErrNotFound)
	}
	change(&v)
	m[key] = v
	return cp(v), nil
}

// remove deletes m[key] under the write lock, or fails with an error
// wrapping store.ErrNotFound that names the record as what. unlink, if not
// nil, runs first with the record: it drops what refers to the record, or
// returns an error that keeps it.
func remove[V any](ctx context.Context, s *Store, m map[string]V, key, what string, unlink func(V) error) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	v, ok := m[key]
	if !ok {
		return fmt.Errorf("memstore: %s %q: %w", what, key, store.ErrNotFound)
	}
	if unlink != nil {
		if err := unlink(v); err != nil {
			return err
		}
	}
	delete(m, key)
	return nil
}

// claimID gives a record without an id a fresh one and checks that
// neither the id nor the owner's name is taken in m and names, the
// record's tables. The caller holds the write lock.
func claimID[V any](m map[string]V, names map[ownerName]string, id *string, key ownerName, what string) error {
	if *id == "" {
		*id = uuid.NewString()
	}
	if _, ok := m[*id]; ok {
		return fmt.Errorf("memstore: %s id %q: %w", what, *id, store.ErrExists)
	}
	if _, ok := names[key]; ok {
		return fmt.Errorf("memstore: %s %q of %q: %w", what, key.name, key.owner, store.ErrExists)
	}
	return nil
}

// pageOf cuts the sorted keys after the cursor into one page of copies of
// their records in m.
func pageOf[V any](m map[string]V, keys []string, opts store.ListOptions, cp func(V) V) store.Page[V] {
	keys, next := page(keys, opts)
	p := store.Page[V]{Next: next}
	for _, k := range keys {
		p.Items = append(p.Items, cp(m[k]))
	}
	return p
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// page cuts the sorted keys after cursor into one page.
func page(keys []string, opts store.ListOptions) (sel []string, next string) {
	sort.Strings(keys)
	i := sort.SearchStrings(keys, opts.Cursor)
	if opts.Cursor != "" && i < len(keys) && keys[i] == opts.Cursor {
		i++
	}
	keys = keys[i:]
	if n := opts.EffectiveLimit(); len(keys) > n {
		return keys[:n], keys[n-1]
	}
	return keys, ""
}

// seqCursor decodes a cursor of a sequence-ordered list.
func seqCursor(c string) (int64, error) {
	if c == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(c, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("memstore: cursor %q: %w", c, store.ErrInvalid)
	}
	return n, nil
}

// CreateUser implements store.Store.
func (s *Store) CreateUser(ctx context.Context, u store.User) (store.User, error) {
	if err := u.Validate(); err != nil {
		return store.User{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.User{}, err
	}
	defer s.mu.Unlock()
	if _, ok := s.users[u.Email]; ok {
		return store.User{}, fmt.Errorf("memstore: user %q: %w", u.Email, store.ErrExists)
	}
	u.CreatedAt = s.stamp()
	s.users[u.Email] = u
	return u, nil
}

// GetUser implements store.Store.
func (s *Store) GetUser(ctx context.Context, email string) (store.User, error) {
	return get(ctx, s, s.users, email, identity[store.User], "user")
}

// UpdateUser implements store.Store.
func (s *Store) UpdateUser(ctx context.Context, u store.User) (store.User, error) {
	return modify(ctx, s, s.users, u.Email, func(old *store.User) {
		old.PasswordHash, old.Admin = u.PasswordHash, u.Admin
	}, identity[store.User], "user")
}

// DeleteUser implements store.Store.
func (s *Store) DeleteUser(ctx context.Context, email string) error {
	return remove(ctx, s, s.users, email, "user", func(store.User) error {
		delete(s.quotas, email)
		return nil
	})
}

// ListUsers implements store.Store.
func (s *Store) ListUsers(ctx context.Context, opts store.ListOptions) (store.Page[store.User], error) {
	if err := s.rlock(ctx); err != nil {
		return store.Page[store.User]{}, err
	}
	defer s.mu.RUnlock()
	return pageOf(s.users, keysOf(s.users), opts, identity[store.User]), nil
}

func keysOf[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// RevokeToken implements store.Store.
func (s *Store) RevokeToken(ctx context.Context, r store.TokenRevocation) error {
	if r.TokenID == "" {
		return fmt.Errorf("memstore: revoke: empty token id: %w", store.ErrInvalid)
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	exp := ts(r.ExpiresAt)
	if old, ok := s.revocations[r.TokenID]; !ok || exp.After(old) {
		s.revocations[r.TokenID] = exp
	}
	return nil
}

// TokenRevoked implements store.Store.
func (s *Store) TokenRevoked(ctx context.Context, tokenID string) (bool, error) {
	if err := s.rlock(ctx); err != nil {
		return false, err
	}
	defer s.mu.RUnlock()
	_, ok := s.revocations[tokenID]
	return ok, nil
}

// PruneRevocations implements store.Store.
func (s *Store) PruneRevocations(ctx context.Context, now time.Time) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	now = ts(now)
	n := 0
	for id, exp := range s.revocations {
		if !exp.After(now) {
			delete(s.revocations, id)
			n++
		}
	}
	return n, nil
}

// SetQuota implements store.Store.
func (s *Store) SetQuota(ctx context.Context, owner string, q store.Quota) error {
	if owner == "" {
		return fmt.Errorf("memstore: quota: empty owner: %w", store.ErrInvalid)
	}
	if err := q.Validate(); err != nil {
		return err
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.quotas[owner] = q
	return nil
}

// GetQuota implements store.Store.
func (s *Store) GetQuota(ctx context.Context, owner string) (store.Quota, error) {
	if err := s.rlock(ctx); err != nil {
		return store.Quota{}, err
	}
	defer s.mu.RUnlock()
	q, ok := s.quotas[owner]
	if !ok {
		return store.Quota{}, fmt.Errorf("memstore: quota of %q: %w", owner, store.ErrNotFound)
	}
	return q, nil
}

// Usage implements store.Store.
func (s *Store) Usage(ctx context.Context, owner string) (store.Usage, error) {
	if err := s.rlock(ctx); err != nil {
		return store.Usage{}, err
	}
	defer s.mu.RUnlock()
	var u store.Usage
	for _, a := range s.apps {
		if a.Owner != owner {
			continue
		}
		u.Apps++
		if a.State == store.AppStarted {
			u.MemoryMB += a.MemoryMB * a.Instances
		}
	}
	for _, si := range s.instances {
		if si.Owner == owner {
			u.Services++
		}
	}
	return u, nil
}

// claimURIs checks that every uri is free or already id's.
func (s *Store) claimURIs(id string, uris []string) error {
	for _, u := range uris {
		if holder, ok := s.uris[u]; ok && holder != id {
			return fmt.Errorf("memstore: uri %q: %w", u, store.ErrURITaken)
		}
	}
	return nil
}

// CreateApp implements store.Store.
func (s *Store) CreateApp(ctx context.Context, a store.App) (store.App, error) {
	if err := a.Validate(); err != nil {
		return store.App{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.App{}, err
	}
	defer s.mu.Unlock()
	key := ownerName{a.Owner, a.Name}
	if err := claimID(s.apps, s.appNames, &a.ID, key, "app"); err != nil {
		return store.App{}, err
	}
	if err := s.claimURIs(a.ID, a.URIs); err != nil {
		return store.App{}, err
	}
	a = copyApp(a)
	if a.PackageState == "" {
		a.PackageState = store.PackagePending
	}
	a.Revision = 1
	a.CreatedAt = s.stamp()
	a.UpdatedAt = a.CreatedAt
	a.StagedAt = ts(a.StagedAt)
	s.apps[a.ID] = a
	s.appNames[key] = a.ID
	s.appIDs = append(s.appIDs, a.ID)
	s.appsDirty = true
	for _, u := range a.URIs {
		s.uris[u] = a.ID
	}
	return copyApp(a), nil
}

// GetApp implements store.Store.
func (s *Store) GetApp(ctx context.Context, id string) (store.App, error) {
	return get(ctx, s, s.apps, id, copyApp, "app")
}

// GetAppByName implements store.Store.
func (s *Store) GetAppByName(ctx context.Context, owner, name string) (store.App, error) {
	return getByName(ctx, s, s.appNames, s.apps, owner, name, copyApp, "app")
}

// UpdateApp implements store.Store.
func (s *Store) UpdateApp(ctx context.Context, a store.App) (store.App, error) {
	if err := s.lock(ctx); err != nil {
		return store.App{}, err
	}
	defer s.mu.Unlock()
	old, ok := s.apps[a.ID]
	if !ok {
		return store.App{}, fmt.Errorf("memstore: app %q: %w", a.ID, store.ErrNotFound)
	}
	a.Owner = old.Owner
	if err := a.Validate(); err != nil {
		return store.App{}, err
	}
	if a.Revision != old.Revision {
		return store.App{}, fmt.Errorf("memstore: app %q at revision %d, not %d: %w", a.ID, old.Revision, a.Revision, store.ErrConflict)
	}
	key := ownerName{a.Owner, a.Name}
	if id, ok := s.appNames[key]; ok && id != a.ID {
		return store.App{}, fmt.Errorf("memstore: app %q of %q: %w", a.Name, a.Owner, store.ErrExists)
	}
	if err := s.claimURIs(a.ID, a.URIs); err != nil {
		return store.App{}, err
	}
	a = copyApp(a)
	if a.PackageState == "" {
		a.PackageState = store.PackagePending
	}
	a.Revision = old.Revision + 1
	a.CreatedAt = old.CreatedAt
	a.UpdatedAt = s.stamp()
	a.StagedAt = ts(a.StagedAt)
	delete(s.appNames, ownerName{old.Owner, old.Name})
	s.appNames[key] = a.ID
	for _, u := range old.URIs {
		delete(s.uris, u)
	}
	for _, u := range a.URIs {
		s.uris[u] = a.ID
	}
	s.apps[a.ID] = a
	return copyApp(a), nil
}

// DeleteApp implements store.Store.
func (s *Store) DeleteApp(ctx context.Context, id string) error {
	return remove(ctx, s, s.apps, id, "app", func(a store.App) error {
		for _, u := range a.URIs {
			delete(s.uris, u)
		}
		for bid, b := range s.bindings {
			if b.AppID == id {
				delete(s.bindings, bid)
			}
		}
		delete(s.appNames, ownerName{a.Owner, a.Name})
		s.appsDirty = true
		delete(s.droplets, id)
		delete(s.events, id)
		delete(s.crashes, id)
		return nil
	})
}

// ListApps implements store.Store.
func (s *Store) ListApps(ctx context.Context, owner string, opts store.ListOptions) (store.Page[store.App], error) {
	// The write lock, because the read may tidy the index.
	if err := s.lock(ctx); err != nil {
		return store.Page[store.App]{}, err
	}
	defer s.mu.Unlock()
	items, next := scanApps(s, opts, func(a *store.App) (store.App, bool) {
		if owner != "" && a.Owner != owner {
			return store.App{}, false
		}
		return copyApp(*a), true
	})
	return store.Page[store.App]{Items: items, Next: next}, nil
}

// scanApps walks the app ids after the cursor in order, keeping what pick
// selects, up to one page. The caller holds the write lock.
func scanApps[T any](s *Store, opts store.ListOptions, pick func(*store.App) (T, bool)) ([]T, string) {
	if s.appsDirty {
		s.appIDs = slices.DeleteFunc(s.appIDs, func(id string) bool { _, ok := s.apps[id]; return !ok })
		slices.Sort(s.appIDs)
		// An id deleted and created again before this list is there twice.
		s.appIDs = slices.Compact(s.appIDs)
		s.appsDirty = false
	}
	limit := opts.EffectiveLimit()
	i, found := slices.BinarySearch(s.appIDs, opts.Cursor)
	if found {
		i++
	}
	var out []T
	for ; i < len(s.appIDs); i++ {
		a := s.apps[s.appIDs[i]]
		v, ok := pick(&a)
		if !ok {
			continue
		}
		if len(out) == limit {
			return out, s.appIDs[i-1]
		}
		out = append(out, v)
	}
	return out, ""
}

// DesiredStates implements store.Store.
func (s *Store) DesiredStates(ctx context.Context, opts store.ListOptions) (store.Page[store.DesiredState], error) {
	if err := s.lock(ctx); err != nil {
		return store.Page[store.DesiredState]{}, err
	}
	defer s.mu.Unlock()
	items, next := scanApps(s, opts, func(a *store.App) (store.DesiredState, bool) {
		if a.State != store.AppStarted {
			return store.DesiredState{}, false
		}
		return store.DesiredState{
			AppID: a.ID, Name: a.Name, Owner: a.Owner, State: a.State,
			Instances: a.Instances, MemoryMB: a.MemoryMB, Version: a.Version,
			PackageState: a.PackageState, DropletHash: a.DropletHash, UpdatedAt: a.UpdatedAt,
		}, true
	})
	return store.Page[store.DesiredState]{Items: items, Next: next}, nil
}

// AddDroplet implements store.Store.
func (s *Store) AddDroplet(ctx context.Context, d store.Droplet, keep int) ([]store.Droplet, error) {
	if d.AppID == "" || d.Hash == "" {
		return nil, fmt.Errorf("memstore: droplet: empty app id or hash: %w", store.ErrInvalid)
	}
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if _, ok := s.apps[d.AppID]; !ok {
		return nil, fmt.Errorf("memstore: droplet of app %q: %w", d.AppID, store.ErrNotFound)
	}
	hist := slices.DeleteFunc(s.droplets[d.AppID], func(o store.Droplet) bool { return o.Hash == d.Hash })
	d.CreatedAt = s.stamp()
	hist = append([]store.Droplet{d}, hist...)
	var pruned []store.Droplet
	if keep > 0 && len(hist) > keep {
		pruned = slices.Clone(hist[keep:])
		hist = hist[:keep]
	}
	s.droplets[d.AppID] = hist
	return pruned, nil
}

// Droplets implements store.Store.
func (s *Store) Droplets(ctx context.Context, appID string) ([]store.Droplet, error) {
	if err := s.rlock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	if _, ok := s.apps[appID]; !ok {
		return nil, fmt.Errorf("memstore: droplets of app %q: %w", appID, store.ErrNotFound)
	}
	return clone(s.droplets[appID]), nil
}

// AddEvent implements store.Store.
func (s *Store) AddEvent(ctx context.Context, e store.AppEvent) (store.AppEvent, error) {
	if e.AppID == "" || e.Type == "" {
		return store.AppEvent{}, fmt.Errorf("memstore: event: empty app id or type: %w", store.ErrInvalid)
	}
	if err := s.lock(ctx); err != nil {
		return store.AppEvent{}, err
	}
	defer s.mu.Unlock()
	if _, ok := s.apps[e.AppID]; !ok {
		return store.AppEvent{}, fmt.Errorf("memstore: event of app %q: %w", e.AppID, store.ErrNotFound)
	}
	s.eventSeq++
	e.Seq = s.eventSeq
	e.Time = ts(e.Time)
	if e.Time.IsZero() {
		e.Time = s.stamp()
	}
	s.events[e.AppID] = append(s.events[e.AppID], e)
	return e, nil
}

// ListEvents implements store.Store.
func (s *Store) ListEvents(ctx context.Context, appID string, opts store.ListOptions) (store.Page[store.AppEvent], error) {
	after, err := seqCursor(opts.Cursor)
	if err != nil {
		return store.Page[store.AppEvent]{}, err
	}
	if err := s.rlock(ctx); err != nil {
		return store.Page[store.AppEvent]{}, err
	}
	defer s.mu.RUnlock()
	evs := s.events[appID]
	i := sort.Search(len(evs), func(i int) bool { return evs[i].Seq > after })
	items, next := seqPage(evs[i:], opts.EffectiveLimit(), func(e store.AppEvent) int64 { return e.Seq })
	return store.Page[store.AppEvent]{Items: items, Next: next}, nil
}

// seqPage cuts one page off xs (ordered by seq) and returns the next cursor.
func seqPage[T any](xs []T, limit int, seq func(T) int64) ([]T, string) {
	if len(xs) > limit {
		return clone(xs[:limit]), strconv.FormatInt(seq(xs[limit-1]), 10)
	}
	return clone(xs), ""
}

// AddCrash implements store.Store.
func (s *Store) AddCrash(ctx context.Context, c store.Crash) (store.Crash, error) {
	if c.AppID == "" {
		return store.Crash{}, fmt.Errorf("memstore: crash: empty app id: %w", store.ErrInvalid)
	}
	if err := s.lock(ctx); err != nil {
		return store.Crash{}, err
	}
	defer s.mu.Unlock()
	if _, ok := s.apps[c.AppID]; !ok {
		return store.Crash{}, fmt.Errorf("memstore: crash of app %q: %w", c.AppID, store.ErrNotFound)
	}
	s.crashSeq++
	c.Seq = s.crashSeq
	c.Time = ts(c.Time)
	if c.Time.IsZero() {
		c.Time = s.stamp()
	}
	s.crashes[c.AppID] = append(s.crashes[c.AppID], c)
	return c, nil
}

// ListCrashes implements store.Store.
func (s *Store) ListCrashes(ctx context.Context, appID string, since time.Time, opts store.ListOptions) (store.Page[store.Crash], error) {
	after, err := seqCursor(opts.Cursor)
	if err != nil {
		return store.Page[store.Crash]{}, err
	}
	if err := s.rlock(ctx); err != nil {
		return store.Page[store.Crash]{}, err
	}
	defer s.mu.RUnlock()
	since = ts(since)
	var sel []store.Crash
	for _, c := range s.crashes[appID] {
		if c.Seq > after && !c.Time.Before(since) {
			sel = append(sel, c)
		}
	}
	items, next := seqPage(sel, opts.EffectiveLimit(), func(c store.Crash) int64 { return c.Seq })
	return store.Page[store.Crash]{Items: items, Next: next}, nil
}

// CreateBroker implements store.Store.
func (s *Store) CreateBroker(ctx context.Context, b store.ServiceBroker) (store.ServiceBroker, error) {
	if err := b.Validate(); err != nil {
		return store.ServiceBroker{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.ServiceBroker{}, err
	}
	defer s.mu.Unlock()
	if _, ok := s.brokers[b.Name]; ok {
		return store.ServiceBroker{}, fmt.Errorf("memstore: broker %q: %w", b.Name, store.ErrExists)
	}
	b.Catalog = clone(b.Catalog)
	b.CreatedAt = s.stamp()
	b.UpdatedAt = b.CreatedAt
	s.brokers[b.Name] = b
	return copyBroker(b), nil
}

func copyBroker(b store.ServiceBroker) store.ServiceBroker {
	b.Catalog = clone(b.Catalog)
	return b
}

// GetBroker implements store.Store.
func (s *Store) GetBroker(ctx context.Context, name string) (store.ServiceBroker, error) {
	return get(ctx, s, s.brokers, name, copyBroker, "broker")
}

// UpdateBroker implements store.Store.
func (s *Store) UpdateBroker(ctx context.Context, b store.ServiceBroker) (store.ServiceBroker, error) {
	if err := b.Validate(); err != nil {
		return store.ServiceBroker{}, err
	}
	return modify(ctx, s, s.brokers, b.Name, func(old *store.ServiceBroker) {
		old.URL, old.Username, old.Password, old.Catalog = b.URL, b.Username, b.Password, clone(b.Catalog)
		old.UpdatedAt = s.stamp()
	}, copyBroker, "broker")
}

// DeleteBroker implements store.Store.
func (s *Store) DeleteBroker(ctx context.Context, name string) error {
	return remove(ctx, s, s.brokers, name, "broker", func(store.ServiceBroker) error {
		for _, si := range s.instances {
			if si.BrokerName == name {
				return fmt.Errorf("memstore: broker %q has instance %q: %w", name, si.ID, store.ErrInUse)
			}
		}
		return nil
	})
}

// ListBrokers implements store.Store.
func (s *Store) ListBrokers(ctx context.Context) ([]store.ServiceBroker, error) {
	if err := s.rlock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	keys := keysOf(s.brokers)
	sort.Strings(keys)
	var out []store.ServiceBroker
	for _, k := range keys {
		out = append(out, copyBroker(s.brokers[k]))
	}
	return out, nil
}

func copyInstance(si store.ServiceInstance) store.ServiceInstance {
	si.Credentials = clone(si.Credentials)
	return si
}

// CreateServiceInstance implements store.Store.
func (s *Store) CreateServiceInstance(ctx context.Context, si store.ServiceInstance) (store.ServiceInstance, error) {
	if err := si.Validate(); err != nil {
		return store.ServiceInstance{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.ServiceInstance{}, err
	}
	defer s.mu.Unlock()
	key := ownerName{si.Owner, si.Name}
	if err := claimID(s.instances, s.instNames, &si.ID, key, "service instance"); err != nil {
		return store.ServiceInstance{}, err
	}
	if _, ok := s.brokers[si.BrokerName]; si.BrokerName != "" && !ok {
		return store.ServiceInstance{}, fmt.Errorf("memstore: service instance %q: broker %q: %w", si.Name, si.BrokerName, store.ErrNotFound)
	}
	si = copyInstance(si)
	si.CreatedAt = s.stamp()
	si.UpdatedAt = si.CreatedAt
	s.instances[si.ID] = si
	s.instNames[key] = si.ID
	return copyInstance(si), nil
}

// GetServiceInstance implements store.Store.
func (s *Store) GetServiceInstance(ctx context.Context, id string) (store.ServiceInstance, error) {
	return get(ctx, s, s.instances, id, copyInstance, "service instance")
}

// GetServiceInstanceByName implements store.Store.
func (s *Store) GetServiceInstanceByName(ctx context.Context, owner, name string) (store.ServiceInstance, error) {
	return getByName(ctx, s, s.instNames, s.instances, owner, name, copyInstance, "service instance")
}

// UpdateServiceInstance implements store.Store.
func (s *Store) UpdateServiceInstance(ctx context.Context, si store.ServiceInstance) (store.ServiceInstance, error) {
	return modify(ctx, s, s.instances, si.ID, func(old *store.ServiceInstance) {
		old.Plan, old.Credentials, old.DashboardURL, old.State = si.Plan, clone(si.Credentials), si.DashboardURL, si.State
		old.UpdatedAt = s.stamp()
	}, copyInstance, "service instance")
}

// DeleteServiceInstance implements store.Store.
func (s *Store) DeleteServiceInstance(ctx context.Context, id string) error {
	return remove(ctx, s, s.instances, id, "service instance", func(si store.ServiceInstance) error {
		for _, b := range s.bindings {
			if b.InstanceID == id {
				return fmt.Errorf("memstore: service instance %q bound to app %q: %w", id, b.AppID, store.ErrInUse)
			}
		}
		delete(s.instNames, ownerName{si.Owner, si.Name})
		return nil
	})
}

// ListServiceInstances implements store.Store.
func (s *Store) ListServiceInstances(ctx context.Context, owner string, opts store.ListOptions) (store.Page[store.ServiceInstance], error) {
	if err := s.rlock(ctx); err != nil {
		return store.Page[store.ServiceInstance]{}, err
	}
	defer s.mu.RUnlock()
	var keys []string
	for id, si := range s.instances {
		if owner == "" || si.Owner == owner {
			keys = append(keys, id)
		}
	}
	return pageOf(s.instances, keys, opts, copyInstance), nil
}

func copyBinding(b store.Binding) store.Binding {
	b.Credentials = clone(b.Credentials)
	return b
}

// CreateBinding implements store.Store.
func (s *Store) CreateBinding(ctx context.Context, b store.Binding) (store.Binding, error) {
	if err := b.Validate(); err != nil {
		return store.Binding{}, err
	}
	if err := s.lock(ctx); err != nil {
		return store.Binding{}, err
	}
	defer s.mu.Unlock()
	if b.ID == "" {
		b.ID = uuid.NewString()
	}
	if _, ok := s.apps[b.AppID]; !ok {
		return store.Binding{}, fmt.Errorf("memstore: binding: app %q: %w", b.AppID, store.ErrNotFound)
	}
	if _, ok := s.instances[b.InstanceID]; !ok {
		return store.Binding{}, fmt.Errorf("memstore: binding: service instance %q: %w", b.InstanceID, store.ErrNotFound)
	}
	if _, ok := s.bindings[b.ID]; ok {
		return store.Binding{}, fmt.Errorf("memstore: binding id %q: %w", b.ID, store.ErrExists)
	}
	for _, o := range s.bindings {
		if o.AppID == b.AppID && o.InstanceID == b.InstanceID {
			return store.Binding{}, fmt.Errorf("memstore: binding of app %q to %q: %w", b.AppID, b.InstanceID, store.ErrExists)
		}
	}
	b = copyBinding(b)
	b.CreatedAt = s.stamp()
	s.bindings[b.ID] = b
	return copyBinding(b), nil
}

// GetBinding implements store.Store.
func (s *Store) GetBinding(ctx context.Context, id string) (store.Binding, error) {
	return get(ctx, s, s.bindings, id, copyBinding, "binding")
}

// DeleteBinding implements store.Store.
func (s *Store) DeleteBinding(ctx context.Context, id string) error {
	return remove(ctx, s, s.bindings, id, "binding", nil)
}

// ListBindings implements store.Store.
func (s *Store) ListBindings(ctx context.Context, appID, instanceID string) ([]store.Binding, error) {
	if err := s.rlock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []store.Binding
	for _, b := range s.bindings {
		if (appID == "" || b.AppID == appID) && (instanceID == "" || b.InstanceID == instanceID) {
			out = append(out, copyBinding(b))
		}
	}
	slices.SortFunc(out, func(a, b store.Binding) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out, nil
}

// PutResources implements store.Store.
func (s *Store) PutResources(ctx context.Context, rs []store.Resource) error {
	for _, r := range rs {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, r := range rs {
		s.resources[r.SHA1] = r.Size
	}
	return nil
}

// HaveResources implements store.Store.
func (s *Store) HaveResources(ctx context.Context, sha1s []string) ([]store.Resource, error) {
	if err := s.rlock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	var out []store.Resource
	seen := map[string]bool{}
	for _, h := range sha1s {
		if size, ok := s.resources[h]; ok && !seen[h] {
			seen[h] = true
			out = append(out, store.Resource{SHA1: h, Size: size})
		}
	}
	return out, nil
}

// DeleteResources implements store.Store.
func (s *Store) DeleteResources(ctx context.Context, sha1s []string) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, h := range sha1s {
		delete(s.resources, h)
	}
	return nil
}
