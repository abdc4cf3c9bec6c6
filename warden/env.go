package warden

import (
	"fmt"
	"strings"
)

// MergeEnv returns the "KEY=value" entries of base overridden and extended
// by those of over, in first-seen key order; a later entry wins over an
// earlier one with the same key. Entries without "=" are dropped.
// Backends use it to combine ContainerSpec.Env and ProcessSpec.Env.
func MergeEnv(base, over []string) []string {
	idx := make(map[string]int, len(base)+len(over))
	out := make([]string, 0, len(base)+len(over))
	for _, list := range [][]string{base, over} {
		for _, kv := range list {
			k, _, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				continue
			}
			if i, seen := idx[k]; seen {
				out[i] = kv
				continue
			}
			idx[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// LookupEnv returns the value of key in env ("KEY=value" entries, last
// wins) and whether it is set.
func LookupEnv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// ValidateEnv reports, wrapping ErrInvalidSpec, the first entry of env that
// is not "KEY=value" with a non-empty KEY. Backends check
// ContainerSpec.Env with it so that all refuse the same entries.
func ValidateEnv(env []string) error {
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("env entry %q is not KEY=value: %w", kv, ErrInvalidSpec)
		}
	}
	return nil
}
