package linux

import (
	"os"
	"path/filepath"
)

// RemoveCgroupParent removes the (empty) parent cgroups of cfg's
// containers, for tests that use a parent of their own.
func RemoveCgroupParent(cfg Config) {
	_ = os.Remove(filepath.Join(cfg.CgroupMount, cfg.CgroupParent))
	if hier, err := v1Hierarchy(); err == nil {
		for _, s := range hier {
			if p, ok := s.(pather); ok {
				_ = os.Remove(p.Path("/" + cfg.CgroupParent))
			}
		}
	}
}

// NewUnchecked is New without the host check, for running the v2 code
// on the controller-less unified hierarchy of a hybrid host.
func NewUnchecked(cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return open(cfg)
}
