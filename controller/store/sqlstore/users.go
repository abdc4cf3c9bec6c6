package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kiln-paas/kiln/controller/store"
)

// notFound maps sql.ErrNoRows to store.ErrNotFound with context.
func notFound(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlstore: %s: %w", what, store.ErrNotFound)
	}
	return fmt.Errorf("sqlstore: %s: %w", what, err)
}

// insertErr maps the error of an INSERT of the record named by what (as
// in `broker "x"`): a unique violation wraps store.ErrExists, a foreign
// key violation store.ErrNotFound (a record it refers to is missing), any
// other error is wrapped as a failure to create it. nil stays nil.
func (s *Store) insertErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case s.dialect.violation(err) == uniqueViolation:
		return fmt.Errorf("sqlstore: %s: %w", what, store.ErrExists)
	case s.dialect.violation(err) == foreignKeyViolation:
		return fmt.Errorf("sqlstore: %s: %w", what, store.ErrNotFound)
	}
	return fmt.Errorf("sqlstore: create %s: %w", what, err)
}

// affected returns ErrNotFound when res changed no row.
func affected(res sql.Result, format string, args ...any) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlstore: rows affected: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("sqlstore: %s: %w", fmt.Sprintf(format, args...), store.ErrNotFound)
	}
	return nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// CreateUser implements store.Store.
func (s *Store) CreateUser(ctx context.Context, u store.User) (_ store.User, err error) {
	done, err := s.begin("create_user")
	if err != nil {
		return store.User{}, err
	}
	defer done(&err)
	if err := u.Validate(); err != nil {
		return store.User{}, err
	}
	now := s.stamp()
	_, err = s.exec(ctx, s.q("INSERT INTO users (email, password_hash, admin, created_at) VALUES (?, ?, ?, ?)"),
		u.Email, u.PasswordHash, boolInt(u.Admin), now)
	if s.dialect.violation(err) == uniqueViolation {
		return store.User{}, fmt.Errorf("sqlstore: user %q: %w", u.Email, store.ErrExists)
	}
	if err != nil {
		return store.User{}, fmt.Errorf("sqlstore: create user %q: %w", u.Email, err)
	}
	u.CreatedAt = fromMicro(now)
	return u, nil
}

const userCols = "email, password_hash, admin, created_at"

func scanUser(row interface{ Scan(...any) error }) (store.User, error) {
	var (
		u       store.User
		admin   int64
		created int64
	)
	if err := row.Scan(&u.Email, &u.PasswordHash, &admin, &created); err != nil {
		return store.User{}, err
	}
	u.Admin, u.CreatedAt = admin != 0, fromMicro(created)
	return u, nil
}

// GetUser implements store.Store.
func (s *Store) GetUser(ctx context.Context, email string) (store.User, error) {
	return getRow(ctx, s, "get_user", scanUser, fmt.Sprintf("user %q", email), "SELECT "+userCols+" FROM users WHERE email = ?", email)
}

// UpdateUser implements store.Store.
func (s *Store) UpdateUser(ctx context.Context, u store.User) (_ store.User, err error) {
	done, err := s.begin("update_user")
	if err != nil {
		return store.User{}, err
	}
	defer done(&err)
	var created int64
	err = s.queryRow(ctx, s.q("UPDATE users SET password_hash = ?, admin = ? WHERE email = ? RETURNING created_at"),
		u.PasswordHash, boolInt(u.Admin), u.Email).Scan(&created)
	if err != nil {
		return store.User{}, notFound(err, "update user %q", u.Email)
	}
	u.CreatedAt = fromMicro(created)
	return u, nil
}

// DeleteUser implements store.Store.
func (s *Store) DeleteUser(ctx context.Context, email string) (err error) {
	done, err := s.begin("delete_user")
	if err != nil {
		return err
	}
	defer done(&err)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q("DELETE FROM users WHERE email = ?"), email)
		if err != nil {
			return fmt.Errorf("sqlstore: delete user %q: %w", email, err)
		}
		if err := affected(res, "user %q", email); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q("DELETE FROM quotas WHERE owner = ?"), email); err != nil {
			return fmt.Errorf("sqlstore: delete quota of %q: %w", email, err)
		}
		return nil
	})
}

// ListUsers implements store.Store.
func (s *Store) ListUsers(ctx context.Context, opts store.ListOptions) (store.Page[store.User], error) {
	return listPage(ctx, s, "list_users", "list users", opts.EffectiveLimit(), scanUser, func(u store.User) string { return u.Email },
		"SELECT "+userCols+" FROM users WHERE email > ? ORDER BY email LIMIT ?", opts.Cursor)
}

// collect scans every row and closes rows.
func collect[T any](rows *sql.Rows, scan func(interface{ Scan(...any) error }) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// listPage is a List method: it runs query, whose last parameter is the
// row limit (limit+1 is bound to it), as operation op, scans the rows and
// cuts them into one page whose next cursor is key of the last item kept.
// what names the list in errors.
func listPage[T any](ctx context.Context, s *Store, op, what string, limit int, scan func(interface{ Scan(...any) error }) (T, error), key func(T) string, query string, args ...any) (_ store.Page[T], err error) {
	done, err := s.begin(op)
	if err != nil {
		return store.Page[T]{}, err
	}
	defer done(&err)
	rows, err := s.query(ctx, s.q(query), append(args, limit+1)...)
	if err != nil {
		return store.Page[T]{}, fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	items, err := collect(rows, scan)
	if err != nil {
		return store.Page[T]{}, fmt.Errorf("sqlstore: %s: %w", what, err)
	}
	return pageOf(items, limit, key), nil
}

// pageOf turns up to limit+1 fetched items into a page: the extra item
// proves there is a next page, whose cursor is the last kept item's key.
func pageOf[T any](items []T, limit int, key func(T) string) store.Page[T] {
	if len(items) > limit {
		items = items[:limit]
		return store.Page[T]{Items: items, Next: key(items[limit-1])}
	}
	return store.Page[T]{Items: items}
}

// RevokeToken implements store.Store.
func (s *Store) RevokeToken(ctx context.Context, r store.TokenRevocation) (err error) {
	done, err := s.begin("revoke_token")
	if err != nil {
		return err
	}
	defer done(&err)
	if r.TokenID == "" {
		return fmt.Errorf("sqlstore: revoke: empty token id: %w", store.ErrInvalid)
	}
	_, err = s.exec(ctx, s.q(`INSERT INTO token_revocations (token_id, expires_at) VALUES (?, ?)
ON CONFLICT (token_id) DO UPDATE SET expires_at = excluded.expires_at
WHERE excluded.expires_at > token_revocations.expires_at`), r.TokenID, micro(r.ExpiresAt))
	if err != nil {
		return fmt.Errorf("sqlstore: revoke token: %w", err)
	}
	return nil
}

// TokenRevoked implements store.Store.
func (s *Store) TokenRevoked(ctx context.Context, tokenID string) (_ bool, err error) {
	done, err := s.begin("token_revoked")
	if err != nil {
		return false, err
	}
	defer done(&err)
	var one int
	err = s.queryRow(ctx, s.q("SELECT 1 FROM token_revocations WHERE token_id = ?"), tokenID).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("sqlstore: token revoked: %w", err)
	}
	return true, nil
}

// PruneRevocations implements store.Store.
func (s *Store) PruneRevocations(ctx context.Context, now time.Time) (_ int, err error) {
	done, err := s.begin("prune_revocations")
	if err != nil {
		return 0, err
	}
	defer done(&err)
	res, err := s.exec(ctx, s.q("DELETE FROM token_revocations WHERE expires_at <= ?"), micro(now))
	if err != nil {
		return 0, fmt.Errorf("sqlstore: prune revocations: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("sqlstore: prune revocations: %w", err)
	}
	return int(n), nil
}

// SetQuota implements store.Store.
func (s *Store) SetQuota(ctx context.Context, owner string, q store.Quota) (err error) {
	done, err := s.begin("set_quota")
	if err != nil {
		return err
	}
	defer done(&err)
	if owner == "" {
		return fmt.Errorf("sqlstore: quota: empty owner: %w", store.ErrInvalid)
	}
	if err := q.Validate(); err != nil {
		return err
	}
	_, err = s.exec(ctx, s.q(`INSERT INTO quotas (owner, memory_mb, apps, uris, services) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (owner) DO UPDATE SET memory_mb = excluded.memory_mb, apps = excluded.apps,
	uris = excluded.uris, services = excluded.services`), owner, q.MemoryMB, q.Apps, q.URIs, q.Services)
	if err != nil {
		return fmt.Errorf("sqlstore: set quota of %q: %w", owner, err)
	}
	return nil
}

// GetQuota implements store.Store.
func (s *Store) GetQuota(ctx context.Context, owner string) (_ store.Quota, err error) {
	done, err := s.begin("get_quota")
	if err != nil {
		return store.Quota{}, err
	}
	defer done(&err)
	var q store.Quota
	err = s.queryRow(ctx, s.q("SELECT memory_mb, apps, uris, services FROM quotas WHERE owner = ?"), owner).
		Scan(&q.MemoryMB, &q.Apps, &q.URIs, &q.Services)
	if err != nil {
		return store.Quota{}, notFound(err, "quota of %q", owner)
	}
	return q, nil
}

// Usage implements store.Store.
func (s *Store) Usage(ctx context.Context, owner string) (_ store.Usage, err error) {
	done, err := s.begin("usage")
	if err != nil {
		return store.Usage{}, err
	}
	defer done(&err)
	var u store.Usage
	err = s.queryRow(ctx, s.q(`SELECT
	(SELECT COUNT(*) FROM apps WHERE owner = ?),
	(SELECT CAST(COALESCE(SUM(memory_mb * instances), 0) AS BIGINT) FROM apps WHERE owner = ? AND state = ?),
	(SELECT COUNT(*) FROM service_instances WHERE owner = ?)`), owner, owner, store.AppStarted, owner).
		Scan(&u.Apps, &u.MemoryMB, &u.Services)
	if err != nil {
		return store.Usage{}, fmt.Errorf("sqlstore: usage of %q: %w", owner, err)
	}
	return u, nil
}

// getRow runs op: the single row query selects, decoded by scan. A missing
// row is store.ErrNotFound, and what names the record in errors.
func getRow[T any](ctx context.Context, s *Store, op string, scan func(interface{ Scan(...any) error }) (T, error), what, query string, args ...any) (_ T, err error) {
	var zero T
	done, err := s.begin(op)
	if err != nil {
		return zero, err
	}
	defer done(&err)
	v, err := scan(s.queryRow(ctx, s.q(query), args...))
	if err != nil {
		return zero, notFound(err, "%s", what)
	}
	return v, nil
}
