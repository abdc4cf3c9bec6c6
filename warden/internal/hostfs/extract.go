package hostfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/kiln-paas/kiln/warden"
)

// Extract implements warden.Container.StreamIn: it extracts the tar
// stream in into container directory dst (created when missing) of the
// tree at rootfs. Entries are checked by warden.WalkTar; writes through
// links are resolved first and refused when they would leave rootfs. With
// limit > 0, extraction stops with warden.ErrLimitExceeded before the
// regular files of rootfs would exceed limit bytes. With o non-nil, what
// it creates is given to o.
func Extract(ctx context.Context, rootfs, dst string, in io.Reader, limit uint64, o *Owner) error {
	r, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	rdst, err := Resolve(r, dst, true)
	if err != nil {
		return err
	}
	if err := MkdirAll(r, rdst, 0o755, o); err != nil {
		return err
	}
	x := &extractor{r: r, limit: limit, o: o}
	if limit > 0 {
		if x.used, err = DiskUsage(rootfs); err != nil {
			return err
		}
	}
	return warden.WalkTar(ctx, in, rdst, func(h *tar.Header, name string, content io.Reader) error {
		if err := x.entry(content, h, name); err != nil {
			return fmt.Errorf("tar entry %q: %w", h.Name, err)
		}
		return nil
	})
}

// extractor writes tar entries below an os.Root, tracking disk use.
type extractor struct {
	r     *os.Root
	limit uint64
	used  uint64
	o     *Owner
}

func (x *extractor) entry(content io.Reader, h *tar.Header, name string) error {
	switch h.Typeflag {
	case tar.TypeDir:
		p, err := ResolveClean(x.r, name, true)
		if err != nil {
			return err
		}
		return MkdirAll(x.r, p, h.FileInfo().Mode(), x.o)
	case tar.TypeReg:
		return x.file(content, h, name)
	case tar.TypeSymlink:
		return x.symlink(name, h.Linkname)
	default:
		return fmt.Errorf("type %q: %w", h.Typeflag, errors.ErrUnsupported)
	}
}

// chown gives p to the owner, if any, without following a link.
func (x *extractor) chown(p string) error {
	if x.o == nil {
		return nil
	}
	return x.r.Lchown(p, x.o.UID, x.o.GID)
}

func (x *extractor) file(content io.Reader, h *tar.Header, name string) error {
	p, err := ResolveClean(x.r, name, true)
	if err != nil {
		return err
	}
	if err := MkdirAll(x.r, path.Dir(p), 0o755, x.o); err != nil {
		return err
	}
	var old uint64
	if fi, err := x.r.Lstat(p); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("%q is a directory: %w", p, warden.ErrExists)
		}
		if fi.Mode().IsRegular() {
			old = uint64(fi.Size())
		}
	}
	size := uint64(max(h.Size, 0))
	if x.limit > 0 && x.used-old+size > x.limit {
		return fmt.Errorf("%d bytes on top of %d exceed the disk limit %d: %w", size, x.used, x.limit, warden.ErrLimitExceeded)
	}
	f, err := x.r.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, h.FileInfo().Mode().Perm()|0o600)
	if err != nil {
		return FSError(err)
	}
	_, err = io.Copy(f, content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = x.chown(p)
	}
	if err != nil {
		return fmt.Errorf("write %q: %w", p, err)
	}
	x.used = x.used - old + size
	return nil
}

func (x *extractor) symlink(name, target string) error {
	dir, err := ResolveClean(x.r, path.Dir(name), true)
	if err != nil {
		return err
	}
	if err := MkdirAll(x.r, dir, 0o755, x.o); err != nil {
		return err
	}
	link := path.Join(dir, path.Base(name))
	// Check the target from where the link really lands: "a/l" with "a" a
	// link to "." is the root's "l".
	if err := warden.CheckLinkTarget(link, target); err != nil {
		return err
	}
	if fi, err := x.r.Lstat(link); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("%q is a directory: %w", link, warden.ErrExists)
		}
		if err := x.r.Remove(link); err != nil {
			return FSError(err)
		}
	}
	if err := x.r.Symlink(target, link); err != nil {
		return FSError(err)
	}
	return FSError(x.chown(link))
}
