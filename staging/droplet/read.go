package droplet

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/kiln-paas/kiln/warden"
)

// ReadInfo reads staging_info.json out of the droplet r. It stops reading
// as soon as it has found it (it is the first entry of droplets this package
// writes). A missing or malformed entry returns an error matching
// ErrInvalid.
func ReadInfo(r io.Reader) (Info, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return Info{}, fmt.Errorf("%w: no %s", ErrInvalid, InfoFile)
		}
		if err != nil {
			return Info{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if h.Typeflag == tar.TypeReg && path.Clean(h.Name) == InfoFile {
			b, err := readInfoEntry(h, tr)
			if err != nil {
				return Info{}, err
			}
			return ParseInfo(b)
		}
	}
}

func readInfoEntry(h *tar.Header, r io.Reader) ([]byte, error) {
	if h.Size > MaxInfoSize {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrInvalid, InfoFile, h.Size)
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxInfoSize))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrInvalid, InfoFile, err)
	}
	return b, nil
}

// walk reads the droplet r, checks every entry and calls fn for each entry
// other than staging_info.json with its clean name. It returns the parsed
// Info; a droplet without one is invalid.
func walk(r io.Reader, fn func(h *tar.Header, name string, body io.Reader) error) (Info, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	var info *Info
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Info{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		name, err := checkEntry(h)
		if err != nil {
			return Info{}, err
		}
		if name == InfoFile {
			b, err := readInfoEntry(h, tr)
			if err != nil {
				return Info{}, err
			}
			i, err := ParseInfo(b)
			if err != nil {
				return Info{}, err
			}
			info = &i
			continue
		}
		if err := fn(h, name, tr); err != nil {
			return Info{}, err
		}
	}
	if info == nil {
		return Info{}, fmt.Errorf("%w: no %s", ErrInvalid, InfoFile)
	}
	return *info, nil
}

// checkEntry validates one droplet entry and returns its clean name.
func checkEntry(h *tar.Header) (string, error) {
	if path.IsAbs(h.Name) {
		return "", fmt.Errorf("%w: entry %q is absolute", ErrInvalid, h.Name)
	}
	name, err := warden.CleanPath(h.Name)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if name == InfoFile {
		if h.Typeflag != tar.TypeReg {
			return "", fmt.Errorf("%w: %s is not a regular file", ErrInvalid, InfoFile)
		}
		return name, nil
	}
	rel, ok := strings.CutPrefix(name, AppDir+"/")
	if !ok && name != AppDir {
		return "", fmt.Errorf("%w: entry %q is outside %s/", ErrInvalid, h.Name, AppDir)
	}
	switch h.Typeflag {
	case tar.TypeDir, tar.TypeReg:
	case tar.TypeSymlink:
		if !ok {
			return "", fmt.Errorf("%w: %s/ is a link", ErrInvalid, AppDir)
		}
		// Links must stay inside app/, not merely inside the droplet.
		if err := warden.CheckLinkTarget(rel, h.Linkname); err != nil {
			return "", fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	default:
		return "", fmt.Errorf("%w: entry %q has unsupported type %q", ErrInvalid, h.Name, h.Typeflag)
	}
	return name, nil
}

// StreamIn decompresses the droplet r, checks it, and extracts it into the
// directory dst of container c (so a later Launch runs with dst as working
// directory). It returns the droplet's Info. Entries are checked as they
// pass; a bad droplet stops the extraction with an error matching
// ErrInvalid, possibly after some files were written into dst.
func StreamIn(ctx context.Context, c warden.Container, dst string, r io.Reader) (Info, error) {
	pr, pw := io.Pipe()
	g, gctx := errgroup.WithContext(ctx)
	var info Info
	g.Go(func() error {
		tw := tar.NewWriter(pw)
		i, err := walk(r, func(h *tar.Header, name string, body io.Reader) error {
			out := tar.Header{Name: name, Typeflag: h.Typeflag, Mode: h.Mode & 0o7777, ModTime: h.ModTime, Linkname: h.Linkname, Format: tar.FormatPAX}
			switch h.Typeflag {
			case tar.TypeDir:
				out.Name += "/"
			case tar.TypeReg:
				out.Size = h.Size
			}
			if err := tw.WriteHeader(&out); err != nil {
				return fmt.Errorf("droplet: stream %s: %w", name, err)
			}
			if h.Typeflag == tar.TypeReg {
				if _, err := io.Copy(tw, body); err != nil {
					return fmt.Errorf("droplet: stream %s: %w", name, err)
				}
			}
			return nil
		})
		if err == nil {
			err = tw.Close()
		}
		info = i
		pw.CloseWithError(err)
		return err
	})
	g.Go(func() error {
		err := c.StreamIn(gctx, dst, pr)
		if err != nil {
			err = fmt.Errorf("droplet: stream into container %s: %w", c.Handle(), err)
		} else {
			// Drain what tar.Reader in the container may have left
			// unread (padding), so the producer can finish.
			_, _ = io.Copy(io.Discard, pr)
		}
		pr.CloseWithError(errors.Join(err, io.ErrClosedPipe))
		return err
	})
	if err := g.Wait(); err != nil {
		return Info{}, err
	}
	return info, nil
}

// Extract decompresses the droplet r into the host directory dir (which
// must exist) and returns its Info. Every file is created through an
// os.Root, so no entry can write outside dir even if the droplet is
// malicious; bad entries return an error matching ErrInvalid, possibly
// after others were written.
func Extract(r io.Reader, dir string) (Info, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Info{}, fmt.Errorf("droplet: %w", err)
	}
	defer root.Close()
	return walk(r, func(h *tar.Header, name string, body io.Reader) error {
		if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
			return fmt.Errorf("droplet: extract %s: %w", name, err)
		}
		mode := fs.FileMode(h.Mode) & fs.ModePerm
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, mode|0o700); err != nil {
				return fmt.Errorf("droplet: extract %s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				return fmt.Errorf("droplet: extract %s: %w", name, err)
			}
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode|0o600)
			if err != nil {
				return fmt.Errorf("droplet: extract %s: %w", name, err)
			}
			_, err = io.Copy(f, body)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("droplet: extract %s: %w", name, err)
			}
		}
		return nil
	})
}

// Files lists the names of the entries of the droplet r below app/, in
// archive order, after checking the whole droplet. It is meant for tools
// and tests that inspect droplets.
func Files(r io.Reader) ([]string, error) {
	var names []string
	_, err := walk(r, func(h *tar.Header, name string, _ io.Reader) error {
		if rel, ok := strings.CutPrefix(name, AppDir+"/"); ok {
			names = append(names, rel)
		}
		return nil
	})
	return names, err
}
