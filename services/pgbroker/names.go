package pgbroker

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// PostgreSQL truncates identifiers to 63 bytes (NAMEDATALEN-1); every name
// the broker derives stays below that so it is never silently shortened.
const maxIdentLen = 63

// slugLen keeps a readable part of the id in the name: a UUID's first 24
// characters are enough to find an instance's objects by eye.
const slugLen = 24

// objectName derives a PostgreSQL identifier from an outside id: the
// prefix, the kind of object, a readable slug of the id (lower-case
// letters and digits, anything else as "_") and 10 hex digits of the id's
// SHA-256, which keeps ids that slug alike ("a-b", "a_b", "A-B") apart.
// The result is at most 16+1+4+1+24+1+10 = 57 bytes of [a-z0-9_], and is
// still quoted with pgx.Identifier.Sanitize wherever it is used.
func objectName(prefix, kind, id string) string {
	var slug strings.Builder
	for _, r := range strings.ToLower(id) {
		if slug.Len() == slugLen {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			slug.WriteRune(r)
		} else {
			slug.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(id))
	return prefix + "_" + kind + "_" + strings.TrimRight(slug.String(), "_") + "_" + hex.EncodeToString(sum[:5])
}

// DatabaseName is the database that holds instance id.
func (b *Broker) DatabaseName(instanceID string) string {
	return objectName(b.cfg.NamePrefix, "db", instanceID)
}

// OwnerRole is the NOLOGIN role that owns instance id's database and
// everything its bindings create in it.
func (b *Broker) OwnerRole(instanceID string) string {
	return objectName(b.cfg.NamePrefix, "own", instanceID)
}

// BindingRole is the LOGIN role of binding id.
func (b *Broker) BindingRole(bindingID string) string {
	return objectName(b.cfg.NamePrefix, "bind", bindingID)
}

// quoteLiteral quotes s as an SQL string literal for the utility
// statements (COMMENT, CREATE ROLE ... PASSWORD, ALTER ROLE ... SET) that
// take no bind parameters. Like libpq's PQescapeLiteral it doubles quotes
// and, when s holds a backslash, doubles those too and uses the E'...' form,
// so the result means s whatever standard_conforming_strings is. Callers
// reject NUL bytes, which no PostgreSQL text can hold.
func quoteLiteral(s string) string {
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		q = "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}
