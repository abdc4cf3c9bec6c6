package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/google/uuid"

	"github.com/kiln-paas/kiln/controller/store"
)

// rawOut returns a stored JSON document, nil when empty.
func rawOut(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

// nullable stores "" as NULL (for optional foreign keys).
func nullable(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

const brokerCols = "name, url, username, password, catalog, created_at, updated_at"

func scanBroker(r interface{ Scan(...any) error }) (store.ServiceBroker, error) {
	var (
		b                store.ServiceBroker
		catalog          string
		created, updated int64
	)
	if err := r.Scan(&b.Name, &b.URL, &b.Username, &b.Password, &catalog, &created, &updated); err != nil {
		return store.ServiceBroker{}, err
	}
	b.Catalog, b.CreatedAt, b.UpdatedAt = rawOut(catalog), fromMicro(created), fromMicro(updated)
	return b, nil
}

// CreateBroker implements store.Store.
func (s *Store) CreateBroker(ctx context.Context, b store.ServiceBroker) (_ store.ServiceBroker, err error) {
	done, err := s.begin("create_broker")
	if err != nil {
		return store.ServiceBroker{}, err
	}
	defer done(&err)
	if err := b.Validate(); err != nil {
		return store.ServiceBroker{}, err
	}
	now := s.stamp()
	_, err = s.exec(ctx, s.q("INSERT INTO service_brokers ("+brokerCols+") VALUES (?, ?, ?, ?, ?, ?, ?)"),
		b.Name, b.URL, b.Username, b.Password, string(b.Catalog), now, now)
	if err := s.insertErr(err, fmt.Sprintf("broker %q", b.Name)); err != nil {
		return store.ServiceBroker{}, err
	}
	b.Catalog = rawOut(string(b.Catalog))
	b.CreatedAt, b.UpdatedAt = fromMicro(now), fromMicro(now)
	return b, nil
}

// GetBroker implements store.Store.
func (s *Store) GetBroker(ctx context.Context, name string) (store.ServiceBroker, error) {
	return getRow(ctx, s, "get_broker", scanBroker, fmt.Sprintf("broker %q", name), "SELECT "+brokerCols+" FROM service_brokers WHERE name = ?", name)
}

// UpdateBroker implements store.Store.
func (s *Store) UpdateBroker(ctx context.Context, b store.ServiceBroker) (_ store.ServiceBroker, err error) {
	done, err := s.begin("update_broker")
	if err != nil {
		return store.ServiceBroker{}, err
	}
	defer done(&err)
	if err := b.Validate(); err != nil {
		return store.ServiceBroker{}, err
	}
	now := s.stamp()
	var created int64
	err = s.queryRow(ctx, s.q(`UPDATE service_brokers SET url = ?, username = ?, password = ?, catalog = ?, updated_at = ?
WHERE name = ? RETURNING created_at`), b.URL, b.Username, b.Password, string(b.Catalog), now, b.Name).Scan(&created)
	if err != nil {
		return store.ServiceBroker{}, notFound(err, "update broker %q", b.Name)
	}
	b.Catalog = rawOut(string(b.Catalog))
	b.CreatedAt, b.UpdatedAt = fromMicro(created), fromMicro(now)
	return b, nil
}

// DeleteBroker implements store.Store.
func (s *Store) DeleteBroker(ctx context.Context, name string) (err error) {
	done, err := s.begin("delete_broker")
	if err != nil {
		return err
	}
	defer done(&err)
	res, err := s.exec(ctx, s.q("DELETE FROM service_brokers WHERE name = ?"), name)
	if s.dialect.violation(err) == foreignKeyViolation {
		return fmt.Errorf("sqlstore: broker %q has service instances: %w", name, store.ErrInUse)
	}
	if err != nil {
		return fmt.Errorf("sqlstore: delete broker %q: %w", name, err)
	}
	return affected(res, "broker %q", name)
}

// ListBrokers implements store.Store.
func (s *Store) ListBrokers(ctx context.Context) (_ []store.ServiceBroker, err error) {
	done, err := s.begin("list_brokers")
	if err != nil {
		return nil, err
	}
	defer done(&err)
	rows, err := s.query(ctx, "SELECT "+brokerCols+" FROM service_brokers ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list brokers: %w", err)
	}
	out, err := collect(rows, scanBroker)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list brokers: %w", err)
	}
	return out, nil
}

const instanceCols = "id, name, owner, label, plan, broker_name, credentials, dashboard_url, state, created_at, updated_at"

func scanInstance(r interface{ Scan(...any) error }) (store.ServiceInstance, error) {
	var (
		si               store.ServiceInstance
		broker           sql.NullString
		creds            string
		created, updated int64
	)
	if err := r.Scan(&si.ID, &si.Name, &si.Owner, &si.Label, &si.Plan, &broker, &creds,
		&si.DashboardURL, &si.State, &created, &updated); err != nil {
		return store.ServiceInstance{}, err
	}
	si.BrokerName, si.Credentials = broker.String, rawOut(creds)
	si.CreatedAt, si.UpdatedAt = fromMicro(created), fromMicro(updated)
	return si, nil
}

// CreateServiceInstance implements store.Store.
func (s *Store) CreateServiceInstance(ctx context.Context, si store.ServiceInstance) (_ store.ServiceInstance, err error) {
	done, err := s.begin("create_service_instance")
	if err != nil {
		return store.ServiceInstance{}, err
	}
	defer done(&err)
	if err := si.Validate(); err != nil {
		return store.ServiceInstance{}, err
	}
	if si.ID == "" {
		si.ID = uuid.NewString()
	}
	now := s.stamp()
	_, err = s.exec(ctx, s.q("INSERT INTO service_instances ("+instanceCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
		si.ID, si.Name, si.Owner, si.Label, si.Plan, nullable(si.BrokerName), string(si.Credentials),
		si.DashboardURL, si.State, now, now)
	if err := s.insertErr(err, fmt.Sprintf("service instance %q of %q (id %s, broker %q)", si.Name, si.Owner, si.ID, si.BrokerName)); err != nil {
		return store.ServiceInstance{}, err
	}
	si.Credentials = rawOut(string(si.Credentials))
	si.CreatedAt, si.UpdatedAt = fromMicro(now), fromMicro(now)
	return si, nil
}

// GetServiceInstance implements store.Store.
func (s *Store) GetServiceInstance(ctx context.Context, id string) (store.ServiceInstance, error) {
	return getRow(ctx, s, "get_service_instance", scanInstance, fmt.Sprintf("service instance %q", id), "SELECT "+instanceCols+" FROM service_instances WHERE id = ?", id)
}

// GetServiceInstanceByName implements store.Store.
func (s *Store) GetServiceInstanceByName(ctx context.Context, owner, name string) (store.ServiceInstance, error) {
	return getRow(ctx, s, "get_service_instance_by_name", scanInstance, fmt.Sprintf("service instance %q of %q", name, owner), "SELECT "+instanceCols+" FROM service_instances WHERE owner = ? AND name = ?", owner, name)
}

// UpdateServiceInstance implements store.Store.
func (s *Store) UpdateServiceInstance(ctx context.Context, si store.ServiceInstance) (_ store.ServiceInstance, err error) {
	done, err := s.begin("update_service_instance")
	if err != nil {
		return store.ServiceInstance{}, err
	}
	defer done(&err)
	out, err := scanInstance(s.queryRow(ctx, s.q(`UPDATE service_instances
SET plan = ?, credentials = ?, dashboard_url = ?, state = ?, updated_at = ?
WHERE id = ? RETURNING `+instanceCols), si.Plan, string(si.Credentials), si.DashboardURL, si.State, s.stamp(), si.ID))
	if err != nil {
		return store.ServiceInstance{}, notFound(err, "update service instance %q", si.ID)
	}
	return out, nil
}

// DeleteServiceInstance implements store.Store.
func (s *Store) DeleteServiceInstance(ctx context.Context, id string) (err error) {
	done, err := s.begin("delete_service_instance")
	if err != nil {
		return err
	}
	defer done(&err)
	res, err := s.exec(ctx, s.q("DELETE FROM service_instances WHERE id = ?"), id)
	if s.dialect.violation(err) == foreignKeyViolation {
		return fmt.Errorf("sqlstore: service instance %q is bound: %w", id, store.ErrInUse)
	}
	if err != nil {
		return fmt.Errorf("sqlstore: delete service instance %q: %w", id, err)
	}
	return affected(res, "service instance %q", id)
}

// ListServiceInstances implements store.Store.
func (s *Store) ListServiceInstances(ctx context.Context, owner string, opts store.ListOptions) (store.Page[store.ServiceInstance], error) {
	query, args := "SELECT "+instanceCols+" FROM service_instances WHERE id > ? ORDER BY id LIMIT ?", []any{opts.Cursor}
	if owner != "" {
		query, args = "SELECT "+instanceCols+" FROM service_instances WHERE owner = ? AND id > ? ORDER BY id LIMIT ?", []any{owner, opts.Cursor}
	}
	return listPage(ctx, s, "list_service_instances", "list service instances", opts.EffectiveLimit(), scanInstance,
		func(si store.ServiceInstance) string { return si.ID }, query, args...)
}

const bindingCols = "id, app_id, instance_id, credentials, created_at"

func scanBinding(r interface{ Scan(...any) error }) (store.Binding, error) {
	var (
		b       store.Binding
		creds   string
		created int64
	)
	if err := r.Scan(&b.ID, &b.AppID, &b.InstanceID, &creds, &created); err != nil {
		return store.Binding{}, err
	}
	b.Credentials, b.CreatedAt = rawOut(creds), fromMicro(created)
	return b, nil
}

// CreateBinding implements store.Store.
func (s *Store) CreateBinding(ctx context.Context, b store.Binding) (_ store.Binding, err error) {
	done, err := s.begin("create_binding")
	if err != nil {
		return store.Binding{}, err
	}
	defer done(&err)
	if err := b.Validate(); err != nil {
		return store.Binding{}, err
	}
	if b.ID == "" {
		b.ID = uuid.NewString()
	}
	now := s.stamp()
	_, err = s.exec(ctx, s.q("INSERT INTO bindings ("+bindingCols+") VALUES (?, ?, ?, ?, ?)"),
		b.ID, b.AppID, b.InstanceID, string(b.Credentials), now)
	if err := s.insertErr(err, fmt.Sprintf("binding %s of app %q to service instance %q", b.ID, b.AppID, b.InstanceID)); err != nil {
		return store.Binding{}, err
	}
	b.Credentials, b.CreatedAt = rawOut(string(b.Credentials)), fromMicro(now)
	return b, nil
}

// GetBinding implements store.Store.
func (s *Store) GetBinding(ctx context.Context, id string) (store.Binding, error) {
	return getRow(ctx, s, "get_binding", scanBinding, fmt.Sprintf("binding %q", id), "SELECT "+bindingCols+" FROM bindings WHERE id = ?", id)
}

// DeleteBinding implements store.Store.
func (s *Store) DeleteBinding(ctx context.Context, id string) (err error) {
	done, err := s.begin("delete_binding")
	if err != nil {
		return err
	}
	defer done(&err)
	res, err := s.exec(ctx, s.q("DELETE FROM bindings WHERE id = ?"), id)
	if err != nil {
		return fmt.Errorf("sqlstore: delete binding %q: %w", id, err)
	}
	return affected(res, "binding %q", id)
}

// ListBindings implements store.Store.
func (s *Store) ListBindings(ctx context.Context, appID, instanceID string) (_ []store.Binding, err error) {
	done, err := s.begin("list_bindings")
	if err != nil {
		return nil, err
	}
	defer done(&err)
	query := "SELECT " + bindingCols + " FROM bindings"
	var (
		conds []string
		args  []any
	)
	if appID != "" {
		conds, args = append(conds, "app_id = ?"), append(args, appID)
	}
	if instanceID != "" {
		conds, args = append(conds, "instance_id = ?"), append(args, instanceID)
	}
	for i, c := range conds {
		query += []string{" WHERE ", " AND "}[min(i, 1)] + c
	}
	rows, err := s.query(ctx, s.q(query+" ORDER BY id"), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list bindings: %w", err)
	}
	out, err := collect(rows, scanBinding)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list bindings: %w", err)
	}
	return out, nil
}
