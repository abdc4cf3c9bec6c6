package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/kiln-paas/kiln/controller/store"
)

// appCols lists the apps columns in the order scanApp reads them.
const appCols = `id, name, owner, state, instances, memory_mb, disk_mb, fds, uris, env,
	stack, buildpack, runtime, framework, command, health_check_type, health_check_endpoint,
	health_check_timeout, package_hash, droplet_hash, package_state, staging_error,
	staging_log_ref, version, revision, created_at, updated_at, staged_at`

// encodeList stores a string list as JSON text ("[]" when empty).
func encodeList(xs []string) string {
	if len(xs) == 0 {
		return "[]"
	}
	b, err := json.Marshal(xs)
	if err != nil {
		// A []string always marshals.
		panic(fmt.Sprintf("sqlstore: marshal list: %v", err))
	}
	return string(b)
}

func decodeList(s string) ([]string, error) {
	var xs []string
	if err := json.Unmarshal([]byte(s), &xs); err != nil {
		return nil, fmt.Errorf("decode list %q: %w", s, err)
	}
	if len(xs) == 0 {
		return nil, nil
	}
	return xs, nil
}

func scanApp(row interface{ Scan(...any) error }) (store.App, error) {
	var (
		a                        store.App
		uris, env                string
		created, updated, staged int64
	)
	err := row.Scan(&a.ID, &a.Name, &a.Owner, &a.State, &a.Instances, &a.MemoryMB, &a.DiskMB, &a.FDs,
		&uris, &env, &a.Stack, &a.Buildpack, &a.Runtime, &a.Framework, &a.Command,
		&a.HealthCheckType, &a.HealthCheckEndpoint, &a.HealthCheckTimeout, &a.PackageHash,
		&a.DropletHash, &a.PackageState, &a.StagingError, &a.StagingLogRef, &a.Version,
		&a.Revision, &created, &updated, &staged)
	if err != nil {
		return store.App{}, err
	}
	if a.URIs, err = decodeList(uris); err != nil {
		return store.App{}, err
	}
	if a.Env, err = decodeList(env); err != nil {
		return store.App{}, err
	}
	a.CreatedAt, a.UpdatedAt, a.StagedAt = fromMicro(created), fromMicro(updated), fromMicro(staged)
	return a, nil
}

// normalise gives a the shape it comes back from the database in.
func normalise(a store.App) store.App {
	if a.PackageState == "" {
		a.PackageState = store.PackagePending
	}
	if len(a.URIs) == 0 {
		a.URIs = nil
	} else {
		a.URIs = append([]string(nil), a.URIs...)
	}
	if len(a.Env) == 0 {
		a.Env = nil
	} else {
		a.Env = append([]string(nil), a.Env...)
	}
	a.StagedAt = fromMicro(micro(a.StagedAt))
	return a
}

// claimURIs inserts the app's URIs; a URI held by another app is ErrURITaken.
func (s *Store) claimURIs(ctx context.Context, tx *sql.Tx, a store.App) error {
	for _, u := range a.URIs {
		_, err := tx.ExecContext(ctx, s.q("INSERT INTO app_uris (uri, app_id) VALUES (?, ?)"), u, a.ID)
		if s.dialect.violation(err) == uniqueViolation {
			return fmt.Errorf("sqlstore: uri %q: %w", u, store.ErrURITaken)
		}
		if err != nil {
			return fmt.Errorf("sqlstore: claim uri %q: %w", u, err)
		}
	}
	return nil
}

// CreateApp implements store.Store.
func (s *Store) CreateApp(ctx context.Context, a store.App) (_ store.App, err error) {
	done, err := s.begin("create_app")
	if err != nil {
		return store.App{}, err
	}
	defer done(&err)
	if err := a.Validate(); err != nil {
		return store.App{}, err
	}
	a = normalise(a)
	if a.ID == "" {
		a.ID = uuid.NewString()
	}
	now := s.stamp()
	a.Revision, a.CreatedAt, a.UpdatedAt = 1, fromMicro(now), fromMicro(now)
	err = s.inTx(ctx, func(tx *sql.Tx) error { return s.createAppTx(ctx, tx, a) })
	if err != nil {
		return store.App{}, err
	}
	return a, nil
}

func (s *Store) createAppTx(ctx context.Context, tx *sql.Tx, a store.App) error {
	_, err := tx.ExecContext(ctx, s.q("INSERT INTO apps ("+appCols+`)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		a.ID, a.Name, a.Owner, a.State, a.Instances, a.MemoryMB, a.DiskMB, a.FDs,
		encodeList(a.URIs), encodeList(a.Env), a.Stack, a.Buildpack, a.Runtime, a.Framework, a.Command,
		a.HealthCheckType, a.HealthCheckEndpoint, a.HealthCheckTimeout, a.PackageHash,
		a.DropletHash, a.PackageState, a.StagingError, a.StagingLogRef, a.Version,
		a.Revision, micro(a.CreatedAt), micro(a.UpdatedAt), micro(a.StagedAt))
	if err := s.insertErr(err, fmt.Sprintf("app %q of %q (id %s)", a.Name, a.Owner, a.ID)); err != nil {
		return err
	}
	return s.claimURIs(ctx, tx, a)
}

// GetApp implements store.Store.
func (s *Store) GetApp(ctx context.Context, id string) (store.App, error) {
	return getRow(ctx, s, "get_app", scanApp, fmt.Sprintf("app %q", id), "SELECT "+appCols+" FROM apps WHERE id = ?", id)
}

// GetAppByName implements store.Store.
func (s *Store) GetAppByName(ctx context.Context, owner, name string) (store.App, error) {
	return getRow(ctx, s, "get_app_by_name", scanApp, fmt.Sprintf("app %q of %q", name, owner), "SELECT "+appCols+" FROM apps WHERE owner = ? AND name = ?", owner, name)
}

// UpdateApp implements store.Store.
func (s *Store) UpdateApp(ctx context.Context, a store.App) (_ store.App, err error) {
	done, err := s.begin("update_app")
	if err != nil {
		return store.App{}, err
	}
	defer done(&err)
	check := a
	if check.Owner == "" {
		check.Owner = "-" // the stored owner is kept; validate the rest
	}
	if err := check.Validate(); err != nil {
		return store.App{}, err
	}
	a = normalise(a)
	now := s.stamp()
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var created int64
		err := tx.QueryRowContext(ctx, s.q(`UPDATE apps SET name = ?, state = ?, instances = ?, memory_mb = ?,
	disk_mb = ?, fds = ?, uris = ?, env = ?, stack = ?, buildpack = ?, runtime = ?, framework = ?,
	command = ?, health_check_type = ?, health_check_endpoint = ?, health_check_timeout = ?,
	package_hash = ?, droplet_hash = ?, package_state = ?, staging_error = ?, staging_log_ref = ?,
	version = ?, staged_at = ?, revision = revision + 1, updated_at = ?
WHERE id = ? AND revision = ?
RETURNING owner, created_at`),
			a.Name, a.State, a.Instances, a.MemoryMB, a.DiskMB, a.FDs, encodeList(a.URIs), encodeList(a.Env),
			a.Stack, a.Buildpack, a.Runtime, a.Framework, a.Command, a.HealthCheckType,
			a.HealthCheckEndpoint, a.HealthCheckTimeout, a.PackageHash, a.DropletHash, a.PackageState,
			a.StagingError, a.StagingLogRef, a.Version, micro(a.StagedAt), now, a.ID, a.Revision,
		).Scan(&a.Owner, &created)
		switch {
		case s.dialect.violation(err) == uniqueViolation:
			return fmt.Errorf("sqlstore: rename app %s to %q: %w", a.ID, a.Name, store.ErrExists)
		case errors.Is(err, sql.ErrNoRows):
			return s.missingOrConflict(ctx, tx, a)
		case err != nil:
			return fmt.Errorf("sqlstore: update app %s: %w", a.ID, err)
		}
		a.CreatedAt = fromMicro(created)
		if _, err := tx.ExecContext(ctx, s.q("DELETE FROM app_uris WHERE app_id = ?"), a.ID); err != nil {
			return fmt.Errorf("sqlstore: release uris of %s: %w", a.ID, err)
		}
		return s.claimURIs(ctx, tx, a)
	})
	if err != nil {
		return store.App{}, err
	}
	a.Revision++
	a.UpdatedAt = fromMicro(now)
	return a, nil
}

// missingOrConflict explains why an UpdateApp matched no row.
func (s *Store) missingOrConflict(ctx context.Context, tx *sql.Tx, a store.App) error {
	var rev int64
	err := tx.QueryRowContext(ctx, s.q("SELECT revision FROM apps WHERE id = ?"), a.ID).Scan(&rev)
	if err != nil {
		return notFound(err, "app %q", a.ID)
	}
	return fmt.Errorf("sqlstore: app %q at revision %d, not %d: %w", a.ID, rev, a.Revision, store.ErrConflict)
}

// DeleteApp implements store.Store.
func (s *Store) DeleteApp(ctx context.Context, id string) (err error) {
	done, err := s.begin("delete_app")
	if err != nil {
		return err
	}
	defer done(&err)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		// Children first, so the foreign keys hold at every statement.
		for _, table := range []string{"bindings", "app_uris", "droplets", "app_events", "crashes"} {
			if _, err := tx.ExecContext(ctx, s.q("DELETE FROM "+table+" WHERE app_id = ?"), id); err != nil {
				return fmt.Errorf("sqlstore: delete %s of app %s: %w", table, id, err)
			}
		}
		res, err := tx.ExecContext(ctx, s.q("DELETE FROM apps WHERE id = ?"), id)
		if err != nil {
			return fmt.Errorf("sqlstore: delete app %s: %w", id, err)
		}
		return affected(res, "app %q", id)
	})
}

// ListApps implements store.Store.
func (s *Store) ListApps(ctx context.Context, owner string, opts store.ListOptions) (store.Page[store.App], error) {
	query, args := "SELECT "+appCols+" FROM apps WHERE id > ? ORDER BY id LIMIT ?", []any{opts.Cursor}
	if owner != "" {
		query, args = "SELECT "+appCols+" FROM apps WHERE owner = ? AND id > ? ORDER BY id LIMIT ?", []any{owner, opts.Cursor}
	}
	return listPage(ctx, s, "list_apps", "list apps", opts.EffectiveLimit(), scanApp, func(a store.App) string { return a.ID }, query, args...)
}

// DesiredStates implements store.Store. The apps_state index makes each page
// one range scan of (state, id).
func (s *Store) DesiredStates(ctx context.Context, opts store.ListOptions) (store.Page[store.DesiredState], error) {
	return listPage(ctx, s, "desired_states", "desired states", opts.EffectiveLimit(), scanDesired, func(d store.DesiredState) string { return d.AppID },
		`SELECT id, name, owner, state, instances, memory_mb, version,
	package_state, droplet_hash, updated_at
FROM apps WHERE state = ? AND id > ? ORDER BY id LIMIT ?`, store.AppStarted, opts.Cursor)
}

func scanDesired(r interface{ Scan(...any) error }) (store.DesiredState, error) {
	var (
		d       store.DesiredState
		updated int64
	)
	err := r.Scan(&d.AppID, &d.Name, &d.Owner, &d.State, &d.Instances, &d.MemoryMB, &d.Version,
		&d.PackageState, &d.DropletHash, &updated)
	d.UpdatedAt = fromMicro(updated)
	return d, err
}
