package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	"github.com/kiln-paas/kiln/controller/store"
)

// appExists returns ErrNotFound unless the app is there.
func (s *Store) appExists(ctx context.Context, q querier, id string) error {
	var one int
	if err := q.QueryRowContext(ctx, s.q("SELECT 1 FROM apps WHERE id = ?"), id).Scan(&one); err != nil {
		return notFound(err, "app %q", id)
	}
	return nil
}

// AddDroplet implements store.Store.
func (s *Store) AddDroplet(ctx context.Context, d store.Droplet, keep int) (_ []store.Droplet, err error) {
	done, err := s.begin("add_droplet")
	if err != nil {
		return nil, err
	}
	defer done(&err)
	if d.AppID == "" || d.Hash == "" {
		return nil, fmt.Errorf("sqlstore: droplet: empty app id or hash: %w", store.ErrInvalid)
	}
	var pruned []store.Droplet
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		pruned = nil
		if err := s.appExists(ctx, tx, d.AppID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q("DELETE FROM droplets WHERE app_id = ? AND hash = ?"), d.AppID, d.Hash); err != nil {
			return fmt.Errorf("sqlstore: add droplet: %w", err)
		}
		if _, err := tx.ExecContext(ctx, s.q("INSERT INTO droplets (app_id, hash, created_at) VALUES (?, ?, ?)"),
			d.AppID, d.Hash, s.stamp()); err != nil {
			return fmt.Errorf("sqlstore: add droplet: %w", err)
		}
		if keep <= 0 {
			return nil
		}
		hist, seqs, err := s.droplets(ctx, tx, d.AppID)
		if err != nil {
			return err
		}
		for i := keep; i < len(hist); i++ {
			if _, err := tx.ExecContext(ctx, s.q("DELETE FROM droplets WHERE seq = ?"), seqs[i]); err != nil {
				return fmt.Errorf("sqlstore: prune droplet: %w", err)
			}
			pruned = append(pruned, hist[i])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pruned, nil
}

// droplets reads an app's history, newest first, with the rows' seqs.
func (s *Store) droplets(ctx context.Context, q querier, appID string) ([]store.Droplet, []int64, error) {
	rows, err := q.QueryContext(ctx, s.q("SELECT seq, app_id, hash, created_at FROM droplets WHERE app_id = ? ORDER BY seq DESC"), appID)
	if err != nil {
		return nil, nil, fmt.Errorf("sqlstore: droplets of %s: %w", appID, err)
	}
	var seqs []int64
	hist, err := collect(rows, func(r interface{ Scan(...any) error }) (store.Droplet, error) {
		var (
			d       store.Droplet
			seq, at int64
		)
		err := r.Scan(&seq, &d.AppID, &d.Hash, &at)
		d.CreatedAt = fromMicro(at)
		seqs = append(seqs, seq)
		return d, err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("sqlstore: droplets of %s: %w", appID, err)
	}
	return hist, seqs, nil
}

// Droplets implements store.Store. One query tells a missing app (no row)
// from an empty history (one row of NULLs), without a transaction.
func (s *Store) Droplets(ctx context.Context, appID string) (_ []store.Droplet, err error) {
	done, err := s.begin("droplets")
	if err != nil {
		return nil, err
	}
	defer done(&err)
	rows, err := s.query(ctx, s.q(`SELECT d.hash, d.created_at FROM apps a
LEFT JOIN droplets d ON d.app_id = a.id WHERE a.id = ? ORDER BY d.seq DESC`), appID)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: droplets of %s: %w", appID, err)
	}
	found := false
	hist, err := collect(rows, func(r interface{ Scan(...any) error }) (store.Droplet, error) {
		var (
			hash sql.NullString
			at   sql.NullInt64
		)
		found = true
		err := r.Scan(&hash, &at)
		return store.Droplet{AppID: appID, Hash: hash.String, CreatedAt: fromMicro(at.Int64)}, err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: droplets of %s: %w", appID, err)
	}
	if !found {
		return nil, fmt.Errorf("sqlstore: droplets of app %q: %w", appID, store.ErrNotFound)
	}
	if len(hist) == 1 && hist[0].Hash == "" {
		return nil, nil
	}
	return hist, nil
}

// seqCursor decodes a cursor of a sequence-ordered list.
func seqCursor(c string) (int64, error) {
	if c == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(c, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("sqlstore: cursor %q: %w", c, store.ErrInvalid)
	}
	return n, nil
}

// insertChild runs an INSERT … RETURNING seq into a table whose app_id must
// name an existing app.
func (s *Store) insertChild(ctx context.Context, what, appID, query string, args ...any) (int64, error) {
	var seq int64
	err := s.queryRow(ctx, s.q(query), args...).Scan(&seq)
	if s.dialect.violation(err) == foreignKeyViolation {
		return 0, fmt.Errorf("sqlstore: %s of app %q: %w", what, appID, store.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("sqlstore: add %s: %w", what, err)
	}
	return seq, nil
}

// AddEvent implements store.Store.
func (s *Store) AddEvent(ctx context.Context, e store.AppEvent) (_ store.AppEvent, err error) {
	done, err := s.begin("add_event")
	if err != nil {
		return store.AppEvent{}, err
	}
	defer done(&err)
	if e.AppID == "" || e.Type == "" {
		return store.AppEvent{}, fmt.Errorf("sqlstore: event: empty app id or type: %w", store.ErrInvalid)
	}
	at := micro(e.Time)
	if at == 0 {
		at = s.stamp()
	}
	e.Seq, err = s.insertChild(ctx, "event", e.AppID,
		"INSERT INTO app_events (app_id, at, type, description) VALUES (?, ?, ?, ?) RETURNING seq",
		e.AppID, at, e.Type, e.Description)
	if err != nil {
		return store.AppEvent{}, err
	}
	e.Time = fromMicro(at)
	return e, nil
}

// ListEvents implements store.Store.
func (s *Store) ListEvents(ctx context.Context, appID string, opts store.ListOptions) (store.Page[store.AppEvent], error) {
	after, err := seqCursor(opts.Cursor)
	if err != nil {
		return store.Page[store.AppEvent]{}, err
	}
	return listPage(ctx, s, "list_events", "list events", opts.EffectiveLimit(), scanEvent, func(e store.AppEvent) string { return strconv.FormatInt(e.Seq, 10) },
		`SELECT seq, app_id, at, type, description FROM app_events
WHERE app_id = ? AND seq > ? ORDER BY seq LIMIT ?`, appID, after)
}

func scanEvent(r interface{ Scan(...any) error }) (store.AppEvent, error) {
	var (
		e  store.AppEvent
		at int64
	)
	err := r.Scan(&e.Seq, &e.AppID, &at, &e.Type, &e.Description)
	e.Time = fromMicro(at)
	return e, err
}

// AddCrash implements store.Store.
func (s *Store) AddCrash(ctx context.Context, c store.Crash) (_ store.Crash, err error) {
	done, err := s.begin("add_crash")
	if err != nil {
		return store.Crash{}, err
	}
	defer done(&err)
	if c.AppID == "" {
		return store.Crash{}, fmt.Errorf("sqlstore: crash: empty app id: %w", store.ErrInvalid)
	}
	at := micro(c.Time)
	if at == 0 {
		at = s.stamp()
	}
	c.Seq, err = s.insertChild(ctx, "crash", c.AppID,
		"INSERT INTO crashes (app_id, instance_id, idx, at, exit_status, reason) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
		c.AppID, c.InstanceID, c.Index, at, c.ExitStatus, c.Reason)
	if err != nil {
		return store.Crash{}, err
	}
	c.Time = fromMicro(at)
	return c, nil
}

// ListCrashes implements store.Store.
func (s *Store) ListCrashes(ctx context.Context, appID string, since time.Time, opts store.ListOptions) (store.Page[store.Crash], error) {
	after, err := seqCursor(opts.Cursor)
	if err != nil {
		return store.Page[store.Crash]{}, err
	}
	return listPage(ctx, s, "list_crashes", "list crashes", opts.EffectiveLimit(), scanCrash, func(c store.Crash) string { return strconv.FormatInt(c.Seq, 10) },
		`SELECT seq, app_id, instance_id, idx, at, exit_status, reason FROM crashes
WHERE app_id = ? AND seq > ? AND at >= ? ORDER BY seq LIMIT ?`, appID, after, micro(since))
}

func scanCrash(r interface{ Scan(...any) error }) (store.Crash, error) {
	var (
		c  store.Crash
		at int64
	)
	err := r.Scan(&c.Seq, &c.AppID, &c.InstanceID, &c.Index, &at, &c.ExitStatus, &c.Reason)
	c.Time = fromMicro(at)
	return c, err
}

// resourceBatch bounds the rows or keys of one resource statement, well
// under both engines' limit on bound parameters.
const resourceBatch = 500

// PutResources implements store.Store.
func (s *Store) PutResources(ctx context.Context, rs []store.Resource) (err error) {
	done, err := s.begin("put_resources")
	if err != nil {
		return err
	}
	defer done(&err)
	for _, r := range rs {
		if err := r.Validate(); err != nil {
			return err
		}
	}
	if len(rs) == 0 {
		return nil
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for start := 0; start < len(rs); start += resourceBatch {
			batch := rs[start:min(start+resourceBatch, len(rs))]
			// Within one statement a key may appear once: keep the last.
			last := make(map[string]int64, len(batch))
			var order []string
			for _, r := range batch {
				if _, ok := last[r.SHA1]; !ok {
					order = append(order, r.SHA1)
				}
				last[r.SHA1] = r.Size
			}
			args := make([]any, 0, 2*len(order))
			for _, h := range order {
				args = append(args, h, last[h])
			}
			q := "INSERT INTO resources (sha1, size) VALUES " + pairs(len(order)) +
				" ON CONFLICT (sha1) DO UPDATE SET size = excluded.size"
			if _, err := tx.ExecContext(ctx, s.q(q), args...); err != nil {
				return fmt.Errorf("sqlstore: put resources: %w", err)
			}
		}
		return nil
	})
}

// pairs returns "(?, ?), (?, ?), …" for n rows.
func pairs(n int) string {
	b := make([]byte, 0, n*8)
	for i := range n {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, "(?, ?)"...)
	}
	return string(b)
}

// HaveResources implements store.Store.
func (s *Store) HaveResources(ctx context.Context, sha1s []string) (_ []store.Resource, err error) {
	done, err := s.begin("have_resources")
	if err != nil {
		return nil, err
	}
	defer done(&err)
	sizes := make(map[string]int64)
	for start := 0; start < len(sha1s); start += resourceBatch {
		batch := sha1s[start:min(start+resourceBatch, len(sha1s))]
		args := make([]any, len(batch))
		for i, h := range batch {
			args[i] = h
		}
		rows, err := s.query(ctx, s.q("SELECT sha1, size FROM resources WHERE sha1 IN ("+placeholders(len(batch))+")"), args...)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: have resources: %w", err)
		}
		found, err := collect(rows, func(r interface{ Scan(...any) error }) (store.Resource, error) {
			var res store.Resource
			err := r.Scan(&res.SHA1, &res.Size)
			return res, err
		})
		if err != nil {
			return nil, fmt.Errorf("sqlstore: have resources: %w", err)
		}
		for _, r := range found {
			sizes[r.SHA1] = r.Size
		}
	}
	var out []store.Resource
	for _, h := range sha1s {
		if size, ok := sizes[h]; ok {
			out = append(out, store.Resource{SHA1: h, Size: size})
			delete(sizes, h) // report each once
		}
	}
	return out, nil
}

// DeleteResources implements store.Store.
func (s *Store) DeleteResources(ctx context.Context, sha1s []string) (err error) {
	done, err := s.begin("delete_resources")
	if err != nil {
		return err
	}
	defer done(&err)
	if len(sha1s) == 0 {
		return nil
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		for start := 0; start < len(sha1s); start += resourceBatch {
			batch := sha1s[start:min(start+resourceBatch, len(sha1s))]
			args := make([]any, len(batch))
			for i, h := range batch {
				args[i] = h
			}
			if _, err := tx.ExecContext(ctx, s.q("DELETE FROM resources WHERE sha1 IN ("+placeholders(len(batch))+")"), args...); err != nil {
				return fmt.Errorf("sqlstore: delete resources: %w", err)
			}
		}
		return nil
	})
}
