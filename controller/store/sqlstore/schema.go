package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// migration is one step of the schema. Steps are append-only: a released
// step is never edited, a change is a new step.
type migration struct {
	version int
	name    string
	// sql holds statements separated by ";" at line ends, with {{key}}
	// and {{serial}} standing for the dialect's types.
	sql string
}

var migrations = []migration{
	{1, "initial", `
CREATE TABLE users (
	email {{key}} PRIMARY KEY,
	password_hash TEXT NOT NULL,
	admin BIGINT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE TABLE token_revocations (
	token_id {{key}} PRIMARY KEY,
	expires_at BIGINT NOT NULL
);
CREATE INDEX token_revocations_expires ON token_revocations (expires_at);
CREATE TABLE quotas (
	owner {{key}} PRIMARY KEY,
	memory_mb BIGINT NOT NULL,
	apps BIGINT NOT NULL,
	uris BIGINT NOT NULL,
	services BIGINT NOT NULL
);
CREATE TABLE apps (
	id {{key}} PRIMARY KEY,
	name {{key}} NOT NULL,
	owner {{key}} NOT NULL,
	state TEXT NOT NULL,
	instances BIGINT NOT NULL,
	memory_mb BIGINT NOT NULL,
	disk_mb BIGINT NOT NULL,
	fds BIGINT NOT NULL,
	uris TEXT NOT NULL,
	env TEXT NOT NULL,
	stack TEXT NOT NULL,
	buildpack TEXT NOT NULL,
	runtime TEXT NOT NULL,
	framework TEXT NOT NULL,
	command TEXT NOT NULL,
	health_check_type TEXT NOT NULL,
	health_check_endpoint TEXT NOT NULL,
	health_check_timeout BIGINT NOT NULL,
	package_hash TEXT NOT NULL,
	droplet_hash TEXT NOT NULL,
	package_state TEXT NOT NULL,
	staging_error TEXT NOT NULL,
	staging_log_ref TEXT NOT NULL,
	version TEXT NOT NULL,
	revision BIGINT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	staged_at BIGINT NOT NULL,
	UNIQUE (owner, name)
);
CREATE INDEX apps_owner ON apps (owner, id);
CREATE INDEX apps_state ON apps (state, id);
CREATE TABLE app_uris (
	uri {{key}} PRIMARY KEY,
	app_id {{key}} NOT NULL REFERENCES apps (id)
);
CREATE INDEX app_uris_app ON app_uris (app_id);
CREATE TABLE droplets (
	seq {{serial}},
	app_id {{key}} NOT NULL REFERENCES apps (id),
	hash TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	UNIQUE (app_id, hash)
);
CREATE TABLE app_events (
	seq {{serial}},
	app_id {{key}} NOT NULL REFERENCES apps (id),
	at BIGINT NOT NULL,
	type TEXT NOT NULL,
	description TEXT NOT NULL
);
CREATE INDEX app_events_app ON app_events (app_id, seq);
CREATE TABLE crashes (
	seq {{serial}},
	app_id {{key}} NOT NULL REFERENCES apps (id),
	instance_id TEXT NOT NULL,
	idx BIGINT NOT NULL,
	at BIGINT NOT NULL,
	exit_status BIGINT NOT NULL,
	reason TEXT NOT NULL
);
CREATE INDEX crashes_app ON crashes (app_id, seq);
CREATE TABLE service_brokers (
	name {{key}} PRIMARY KEY,
	url TEXT NOT NULL,
	username TEXT NOT NULL,
	password TEXT NOT NULL,
	catalog TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE TABLE service_instances (
	id {{key}} PRIMARY KEY,
	name {{key}} NOT NULL,
	owner {{key}} NOT NULL,
	label TEXT NOT NULL,
	plan TEXT NOT NULL,
	broker_name {{key}} REFERENCES service_brokers (name),
	credentials TEXT NOT NULL,
	dashboard_url TEXT NOT NULL,
	state TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	UNIQUE (owner, name)
);
CREATE INDEX service_instances_owner ON service_instances (owner, id);
CREATE INDEX service_instances_broker ON service_instances (broker_name);
CREATE TABLE bindings (
	id {{key}} PRIMARY KEY,
	app_id {{key}} NOT NULL REFERENCES apps (id),
	instance_id {{key}} NOT NULL REFERENCES service_instances (id),
	credentials TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	UNIQUE (app_id, instance_id)
);
CREATE INDEX bindings_instance ON bindings (instance_id);
CREATE TABLE resources (
	sha1 {{key}} PRIMARY KEY,
	size BIGINT NOT NULL
)`},
}

// SchemaVersion is the schema version this code writes and understands.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// migrationLockID keys the PostgreSQL advisory lock that serialises
// migrations between controllers starting together ("kiln" in ASCII).
const migrationLockID = 0x6b696c6e

// migrate brings the schema up to SchemaVersion in one transaction.
func (s *Store) migrate(ctx context.Context, schema string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if s.dialect == postgresDialect {
			if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockID); err != nil {
				return fmt.Errorf("migration lock: %w", err)
			}
			if schema != "" {
				if _, err := tx.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
					return fmt.Errorf("create schema %q: %w", schema, err)
				}
			}
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version BIGINT PRIMARY KEY,
	name TEXT NOT NULL,
	applied_at BIGINT NOT NULL
)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var current int
		if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&current); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if current > SchemaVersion() {
			return fmt.Errorf("database at version %d, code knows up to %d (upgrade kiln): %w",
				current, SchemaVersion(), ErrSchemaTooNew)
		}
		for _, m := range migrations {
			if m.version <= current {
				continue
			}
			for _, stmt := range strings.Split(m.sql, ";\n") {
				if _, err := tx.ExecContext(ctx, s.dialect.ddl.Replace(stmt)); err != nil {
					return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
				}
			}
			if _, err := tx.ExecContext(ctx, s.q("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"),
				m.version, m.name, s.stamp()); err != nil {
				return fmt.Errorf("record migration %d: %w", m.version, err)
			}
			s.log.Info("store-migrated", "driver", s.dialect.name, "version", m.version, "name", m.name)
		}
		return nil
	})
}
