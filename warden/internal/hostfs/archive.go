package hostfs

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
)

// Archive implements warden.Container.StreamOut: it returns a tar stream of
// container path src of the tree at rootfs, produced by a goroutine that
// ends once the tree is written or the reader is closed. A directory is
// archived as its contents, a file as one entry named after its base name;
// links are stored, never followed; sockets, devices and pipes are
// skipped. A missing src returns an error matching warden.ErrNotFound.
func Archive(ctx context.Context, rootfs, src string) (io.ReadCloser, error) {
	r, err := os.OpenRoot(rootfs)
	if err != nil {
		return nil, err
	}
	p, err := Resolve(r, src, true)
	if err == nil {
		_, err = r.Lstat(p)
		err = FSError(err)
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
		return FSError(err)
	}
	if !fi.IsDir() {
		if err := writeEntry(r, tw, p, path.Base(p), fi); err != nil {
			return err
		}
		return tw.Close()
	}
	err = fs.WalkDir(r.FS(), p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return FSError(err)
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
			return FSError(err)
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
		return FSError(err)
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
