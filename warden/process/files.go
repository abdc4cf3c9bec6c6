package process

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"github.com/kiln-paas/kiln/warden"
)

// fsError maps file-system errors to warden's sentinels.
func fsError(err error) error {
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
			return "", false, fsError(err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return "", false, nil
		}
		target, err := r.Readlink(p)
		return target, true, fsError(err)
	}
}

// resolve turns a container path into the clean path, relative to r, of
// what it names, following links that stay inside.
func resolve(r *os.Root, p string, followLast bool) (string, error) {
	clean, err := warden.CleanPath(p)
	if err != nil {
		return "", err
	}
	return warden.ResolvePath(clean, followLast, readlinker(r))
}

// mkdirAll creates resolved directory p and its parents.
func mkdirAll(r *os.Root, p string, perm fs.FileMode) error {
	if p == "." {
		return nil
	}
	// Owner rwx always, so the backend can fill and remove what it made.
	if err := r.MkdirAll(p, perm.Perm()|0o700); err != nil {
		return fsError(err)
	}
	return nil
}

// extract implements StreamIn into the directory tree at rootfs.
func extract(ctx context.Context, rootfs, dst string, in io.Reader, limit uint64) error {
	r, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	rdst, err := resolve(r, dst, true)
	if err != nil {
		return err
	}
	if err := mkdirAll(r, rdst, 0o755); err != nil {
		return err
	}
	x := &extractor{r: r, limit: limit}
	if limit > 0 {
		if x.used, err = diskUsage(rootfs); err != nil {
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
}

func (x *extractor) entry(content io.Reader, h *tar.Header, name string) error {
	switch h.Typeflag {
	case tar.TypeDir:
		p, err := warden.ResolvePath(name, true, readlinker(x.r))
		if err != nil {
			return err
		}
		return mkdirAll(x.r, p, h.FileInfo().Mode())
	case tar.TypeReg:
		return x.file(content, h, name)
	case tar.TypeSymlink:
		return x.symlink(name, h.Linkname)
	default:
		return fmt.Errorf("type %q: %w", h.Typeflag, errors.ErrUnsupported)
	}
}

func (x *extractor) file(content io.Reader, h *tar.Header, name string) error {
	p, err := warden.ResolvePath(name, true, readlinker(x.r))
	if err != nil {
		return err
	}
	if err := mkdirAll(x.r, path.Dir(p), 0o755); err != nil {
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
		return fsError(err)
	}
	_, err = io.Copy(f, content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q: %w", p, err)
	}
	x.used = x.used - old + size
	return nil
}

func (x *extractor) symlink(name, target string) error {
	dir, err := warden.ResolvePath(path.Dir(name), true, readlinker(x.r))
	if err != nil {
		return err
	}
	if err := mkdirAll(x.r, dir, 0o755); err != nil {
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
			return fsError(err)
		}
	}
	return fsError(x.r.Symlink(target, link))
}

// archive implements StreamOut of the tree at rootfs.
func archive(ctx context.Context, rootfs, src string) (io.ReadCloser, error) {
	r, err := os.OpenRoot(rootfs)
	if err != nil {
		return nil, err
	}
	p, err := resolve(r, src, true)
	if err == nil {
		_, err = r.Lstat(p)
		err = fsError(err)
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		// Ends when the tree is written or the reader is closed (writes
		// then fail).
		err := writeTree(ctx, r, p, pw)
		r.Close()
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// writeTree writes the tar of p (a file or a directory's contents).
func writeTree(ctx context.Context, r *os.Root, p string, w io.Writer) error {
	tw := tar.NewWriter(w)
	fi, err := r.Lstat(p)
	if err != nil {
		return fsError(err)
	}
	if !fi.IsDir() {
		if err := writeEntry(r, tw, p, path.Base(p), fi); err != nil {
			return err
		}
		return tw.Close()
	}
	err = fs.WalkDir(r.FS(), p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return fsError(err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if q == p {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed by a process meanwhile
		}
		if err != nil {
			return err
		}
		name := q
		if p != "." {
			name = strings.TrimPrefix(q, p+"/")
		}
		return writeEntry(r, tw, q, name, fi)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// writeEntry writes one entry; sockets, devices and pipes are skipped.
func writeEntry(r *os.Root, tw *tar.Writer, p, name string, fi fs.FileInfo) error {
	h := &tar.Header{Name: name, Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime(), Format: tar.FormatPAX}
	switch {
	case fi.IsDir():
		h.Typeflag, h.Name = tar.TypeDir, name+"/"
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := r.Readlink(p)
		if err != nil {
			return fsError(err)
		}
		h.Typeflag, h.Linkname = tar.TypeSymlink, target
	case fi.Mode().IsRegular():
		h.Typeflag, h.Size = tar.TypeReg, fi.Size()
	default:
		return nil
	}
	if h.Typeflag != tar.TypeReg {
		return tw.WriteHeader(h)
	}
	f, err := r.Open(p)
	if err != nil {
		return fsError(err)
	}
	defer f.Close()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	// A file growing while archived is cut at the size in the header; one
	// shrinking is padded with zeros, keeping the archive well-formed.
	n, err := io.Copy(tw, io.LimitReader(f, h.Size))
	if err != nil {
		return fmt.Errorf("read %q: %w", p, err)
	}
	if n < h.Size {
		if _, err := tw.Write(make([]byte, h.Size-n)); err != nil {
			return err
		}
	}
	return nil
}
