package store

import (
	"fmt"
	"strings"
)

// Validate reports whether a can be stored: a non-empty Name and Owner, a
// known State and PackageState, no negative counts, no empty or duplicate URI
// and every Env entry of the form KEY=VALUE. Errors wrap ErrInvalid.
func (a App) Validate() error {
	switch {
	case a.Name == "":
		return fmt.Errorf("app: empty name: %w", ErrInvalid)
	case a.Owner == "":
		return fmt.Errorf("app %q: empty owner: %w", a.Name, ErrInvalid)
	case a.State != AppStarted && a.State != AppStopped:
		return fmt.Errorf("app %q: state %q: %w", a.Name, a.State, ErrInvalid)
	case a.Instances < 0 || a.MemoryMB < 0 || a.DiskMB < 0 || a.FDs < 0 || a.HealthCheckTimeout < 0:
		return fmt.Errorf("app %q: negative count: %w", a.Name, ErrInvalid)
	}
	switch a.PackageState {
	case "", PackagePending, PackageStaged, PackageFailed:
	default:
		return fmt.Errorf("app %q: package state %q: %w", a.Name, a.PackageState, ErrInvalid)
	}
	seen := make(map[string]bool, len(a.URIs))
	for _, u := range a.URIs {
		if u == "" || seen[u] {
			return fmt.Errorf("app %q: empty or duplicate uri %q: %w", a.Name, u, ErrInvalid)
		}
		seen[u] = true
	}
	for _, e := range a.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("app %q: env entry %q is not KEY=VALUE: %w", a.Name, e, ErrInvalid)
		}
	}
	return nil
}

// Validate reports whether u can be stored: a non-empty Email.
func (u User) Validate() error {
	if u.Email == "" {
		return fmt.Errorf("user: empty email: %w", ErrInvalid)
	}
	return nil
}

// Validate reports whether q can be stored: no negative limit.
func (q Quota) Validate() error {
	if q.MemoryMB < 0 || q.Apps < 0 || q.URIs < 0 || q.Services < 0 {
		return fmt.Errorf("quota: negative limit: %w", ErrInvalid)
	}
	return nil
}

// Validate reports whether b can be stored: a non-empty Name and URL.
func (b ServiceBroker) Validate() error {
	if b.Name == "" || b.URL == "" {
		return fmt.Errorf("broker %q: empty name or url: %w", b.Name, ErrInvalid)
	}
	return nil
}

// Validate reports whether si can be stored: a non-empty Name and Owner.
func (si ServiceInstance) Validate() error {
	if si.Name == "" || si.Owner == "" {
		return fmt.Errorf("service instance %q: empty name or owner: %w", si.Name, ErrInvalid)
	}
	return nil
}

// Validate reports whether b can be stored: non-empty AppID and InstanceID.
func (b Binding) Validate() error {
	if b.AppID == "" || b.InstanceID == "" {
		return fmt.Errorf("binding: empty app or instance id: %w", ErrInvalid)
	}
	return nil
}

// Validate reports whether r can be stored: a 40-digit lower-case hex SHA1
// and a non-negative size.
func (r Resource) Validate() error {
	if !isSHA1(r.SHA1) || r.Size < 0 {
		return fmt.Errorf("resource %q: bad sha1 or size: %w", r.SHA1, ErrInvalid)
	}
	return nil
}

func isSHA1(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
