// Package hostfs is the file side of warden's host backends
// (warden/process and warden/linux): both keep a container's files in a
// plain directory on the host, its root, and reach it only through os.Root
// plus warden's path checks, so that no path, tar entry or symbolic link
// given by a caller or planted by a container's process leads outside.
//
// It extracts tar streams into a root (StreamIn), archives trees of it
// (StreamOut), measures its disk use and removes it. Files and directories
// are created for an Owner when one is given (warden/linux gives every
// container its own user); with none they belong to the calling program.
package hostfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kiln-paas/kiln/warden"
)

// Owner is the user and group files are created for.
type Owner struct{ UID, GID int }

// FSError maps file-system errors to warden's sentinels: a missing file
// to warden.ErrNotFound, os.Root refusing to follow a link out of the
// root to warden.ErrInvalidPath. Others are returned as they are.
func FSError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %w", warden.ErrNotFound, err)
	case strings.Contains(err.Error(), "path escapes from parent"):
		// os.Root refusing to follow a link out: a process replaced a
		// directory with a link after warden.ResolvePath checked it.
		return fmt.Errorf("%w: %w", warden.ErrInvalidPath, err)
	}
	return err
}

// readlinker adapts an os.Root to warden.ResolvePath.
func readlinker(r *os.Root) func(string) (string, bool, error) {
	return func(p string) (string, bool, error) {
		fi, err := r.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return "", false, nil
		}
		if err != nil {
			return "", false, FSError(err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return "", false, nil
		}
		target, err := r.Readlink(p)
		return target, true, FSError(err)
	}
}

// ResolveClean resolves p, a clean container path (from warden.CleanPath
// or warden.CleanEntryName), to the clean path relative to r of what it
// names, following symbolic links that stay inside r (the last element's
// only when followLast).
func ResolveClean(r *os.Root, p string, followLast bool) (string, error) {
	return warden.ResolvePath(p, followLast, readlinker(r))
}

// Resolve is ResolveClean of any container path: it cleans p first
// (warden.CleanPath), refusing paths that climb above the root.
func Resolve(r *os.Root, p string, followLast bool) (string, error) {
	clean, err := warden.CleanPath(p)
	if err != nil {
		return "", err
	}
	return ResolveClean(r, clean, followLast)
}

// MkdirAll creates the resolved directory p of r and its missing parents
// with permissions perm (always with owner rwx, so the backend, or the
// container's user, can fill and remove what it made). With o non-nil
// every directory it creates is given to o, one level at a time, and an
// existing p of any type is left alone.
func MkdirAll(r *os.Root, p string, perm fs.FileMode, o *Owner) error {
	if p == "." {
		return nil
	}
	if o == nil {
		if err := r.MkdirAll(p, perm.Perm()|0o700); err != nil {
			return FSError(err)
		}
		return nil
	}
	if _, err := r.Lstat(p); err == nil {
		return nil
	}
	if err := MkdirAll(r, path.Dir(p), 0o755, o); err != nil {
		return err
	}
	err := r.Mkdir(p, perm.Perm()|0o700)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return FSError(err)
	}
	return FSError(r.Lchown(p, o.UID, o.GID))
}

// DiskUsage sums the sizes of the regular files under dir, skipping files
// removed while it walks.
func DiskUsage(dir string) (uint64, error) {
	var sum uint64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				sum += uint64(fi.Size())
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("disk usage: %w", err)
	}
	return sum, nil
}

// RemoveAll removes dir even when processes left directories in it
// without write permission.
func RemoveAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// FreeBytes returns the space available to unprivileged users on the file
// system holding dir: what a backend keeping containers there can report
// as its disk capacity.
func FreeBytes(dir string) (uint64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return fs.Bavail * uint64(fs.Bsize), nil
}
