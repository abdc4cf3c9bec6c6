// Package pgbroker is kiln's built-in PostgreSQL service broker. Given an
// administrator URL of a real PostgreSQL server, it provisions an instance
// as a new database owned by a new NOLOGIN owner role, binds by creating a
// LOGIN role with a random password that is a member of the owner role (so
// every binding of an instance shares its tables), unbinds by disabling
// that role, terminating its sessions and dropping it, and deprovisions by
// dropping the database and every role it created for the instance.
//
// The broker keeps no state of its own: what it created is recorded in
// comments on the databases and roles, so several broker processes may
// share one server and a restarted broker carries on where it stopped.
// Operations on one instance are serialised with a PostgreSQL advisory lock.
//
// It needs PostgreSQL 14 or newer (DROP DATABASE ... WITH (FORCE), and
// pg_terminate_backend with a timeout). Each instance's database admits only
// its own bindings; other databases of the server keep their own CONNECT
// grants (by default PUBLIC may connect to "postgres"), which operators
// should revoke if bindings must see nothing else.
package pgbroker

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kiln-paas/kiln/services"
)

// Config configures a Broker.
type Config struct {
	// AdminURL is a PostgreSQL connection URL (or key=value string) of a
	// role that may create databases and roles and terminate sessions:
	// in practice a superuser, e.g.
	// "postgres://postgres:secret@127.0.0.1:5432/postgres?sslmode=disable".
	AdminURL string
	// Host and Port are what bindings' credentials name as the server's
	// address; empty and 0 mean the host and port of AdminURL.
	Host string
	Port int
	// SSLMode is put into the credentials' uri as sslmode; empty means
	// the sslmode of AdminURL, if it names one.
	SSLMode string
	// NamePrefix starts the name of every database and role the broker
	// creates (default "kiln"); lower-case letters, digits and
	// underscores, at most 16 characters, starting with a letter.
	NamePrefix string
	// Catalog is what the broker offers; every plan gets the same kind of
	// database. DefaultCatalog() when it has no services.
	Catalog services.Catalog
	// PasswordKey derives binding passwords (HMAC-SHA256 of the instance
	// and binding ids), so a repeated bind returns the same credentials
	// without the broker storing any password. Nil means a random key per
	// Broker: passwords are then unpredictable, and a repeated bind after
	// a restart sets and returns a fresh password.
	PasswordKey []byte
	// MaxConns bounds the administrator connection pool (default 4: the
	// broker's work is a few DDL statements per request).
	MaxConns int32
	// Logger receives the broker's log; nil discards it.
	Logger *slog.Logger
	// Registerer receives the broker's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// DefaultCatalog offers one bindable service "postgresql" with one plan
// "shared" (a database on the shared server).
func DefaultCatalog() services.Catalog {
	return services.Catalog{Services: []services.Service{{
		ID:          "kiln-postgresql",
		Name:        "postgresql",
		Description: "PostgreSQL database on a shared server",
		Version:     "15",
		Bindable:    true,
		Tags:        []string{"postgresql", "relational"},
		Plans: []services.Plan{{
			ID:          "kiln-postgresql-shared",
			Name:        "shared",
			Description: "A database and its own roles on a shared server",
			Free:        true,
		}},
	}}}
}

// DefaultConfig returns the defaults; AdminURL must still be set.
func DefaultConfig() Config {
	return Config{NamePrefix: "kiln", Catalog: DefaultCatalog(), MaxConns: 4}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.NamePrefix == "" {
		c.NamePrefix = d.NamePrefix
	}
	if len(c.Catalog.Services) == 0 {
		c.Catalog = d.Catalog
	}
	if c.MaxConns == 0 {
		c.MaxConns = d.MaxConns
	}
	return c
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,15}$`)

// Validate reports whether c is usable; zero fields count as defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	if c.AdminURL == "" {
		return errors.New("pgbroker: AdminURL is required")
	}
	if _, err := pgxpool.ParseConfig(c.AdminURL); err != nil {
		return fmt.Errorf("pgbroker: AdminURL: %w", err)
	}
	if !prefixRE.MatchString(c.NamePrefix) {
		return fmt.Errorf("pgbroker: NamePrefix %q must match %s", c.NamePrefix, prefixRE)
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("pgbroker: Port %d out of range", c.Port)
	}
	if c.MaxConns < 1 {
		return fmt.Errorf("pgbroker: MaxConns %d must be positive", c.MaxConns)
	}
	for _, s := range c.Catalog.Services {
		if s.ID == "" || s.Name == "" || len(s.Plans) == 0 {
			return fmt.Errorf("pgbroker: catalog service %q needs an id, a name and plans", s.Name)
		}
	}
	return nil
}
