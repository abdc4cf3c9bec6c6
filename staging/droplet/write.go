package droplet

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/kiln-paas/kiln/warden"
)

// Sum identifies a written droplet.
type Sum struct {
	// SHA1 is the lower-case hex SHA-1 of the compressed droplet.
	SHA1 string
	// Size is the compressed droplet's size in bytes.
	Size int64
}

// Writer writes a droplet: staging_info.json first, then the application's
// files under app/. Create one with NewWriter, add files with AddTar or
// AddDir, then Close it. A Writer is not safe for concurrent use.
type Writer struct {
	out  *countingWriter
	gz   *gzip.Writer
	tw   *tar.Writer
	sum  Sum
	done bool
}

// NewWriter validates info and starts a droplet on w, writing
// staging_info.json and the app/ directory entry.
func NewWriter(w io.Writer, info Info) (*Writer, error) {
	if err := info.Validate(); err != nil {
		return nil, err
	}
	b, err := info.Marshal()
	if err != nil {
		return nil, err
	}
	cw := &countingWriter{w: w, h: sha1.New()}
	// BestSpeed: droplets are dominated by already-dense binaries and the
	// stager's wall time matters more than a few percent of size.
	gz, err := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	if err != nil {
		return nil, fmt.Errorf("droplet: %w", err)
	}
	dw := &Writer{out: cw, gz: gz, tw: tar.NewWriter(gz)}
	now := time.Now()
	if err := dw.tw.WriteHeader(&tar.Header{Name: InfoFile, Mode: 0o644, Size: int64(len(b)), ModTime: now, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
		return nil, fmt.Errorf("droplet: write info: %w", err)
	}
	if _, err := dw.tw.Write(b); err != nil {
		return nil, fmt.Errorf("droplet: write info: %w", err)
	}
	if err := dw.tw.WriteHeader(&tar.Header{Name: AppDir + "/", Mode: 0o755, ModTime: now, Typeflag: tar.TypeDir, Format: tar.FormatPAX}); err != nil {
		return nil, fmt.Errorf("droplet: write app dir: %w", err)
	}
	return dw, nil
}

// AddTar copies the entries of the tar archive r into app/. Entry names are
// relative to the application directory (as warden.Container.StreamOut of
// that directory produces them). Entries named "." are skipped; absolute or
// climbing names, links leaving app/, and entries other than directories,
// regular files and symbolic links are refused with ErrInvalid.
func (w *Writer) AddTar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("droplet: read app archive: %w", err)
		}
		name, err := appEntryName(h.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue
		}
		out := &tar.Header{Name: AppDir + "/" + name, Mode: h.Mode & 0o7777, ModTime: h.ModTime, Typeflag: h.Typeflag, Format: tar.FormatPAX}
		switch h.Typeflag {
		case tar.TypeDir:
			out.Name += "/"
		case tar.TypeReg:
			out.Size = h.Size
		case tar.TypeSymlink:
			if err := warden.CheckLinkTarget(name, h.Linkname); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			out.Linkname = h.Linkname
		default:
			return fmt.Errorf("%w: app entry %q has unsupported type %q", ErrInvalid, h.Name, h.Typeflag)
		}
		if err := w.tw.WriteHeader(out); err != nil {
			return fmt.Errorf("droplet: write %s: %w", out.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.Copy(w.tw, tr); err != nil {
				return fmt.Errorf("droplet: write %s: %w", out.Name, err)
			}
		}
	}
}

// AddDir copies the host directory dir into app/, without following
// symbolic links (links pointing out of dir are refused with ErrInvalid;
// other special files are refused too).
func (w *Writer) AddDir(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("droplet: %w", err)
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("droplet: %w", err)
		}
		h := &tar.Header{Name: AppDir + "/" + name, Mode: int64(fi.Mode().Perm()), ModTime: fi.ModTime(), Format: tar.FormatPAX}
		switch {
		case fi.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		case fi.Mode().IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, fi.Size()
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("droplet: %w", err)
			}
			if err := warden.CheckLinkTarget(name, filepath.ToSlash(target)); err != nil {
				return fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			h.Typeflag, h.Linkname = tar.TypeSymlink, filepath.ToSlash(target)
		default:
			return fmt.Errorf("%w: %s is not a regular file, directory or link", ErrInvalid, p)
		}
		if err := w.tw.WriteHeader(h); err != nil {
			return fmt.Errorf("droplet: write %s: %w", h.Name, err)
		}
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("droplet: %w", err)
		}
		defer f.Close()
		if _, err := io.CopyN(w.tw, f, h.Size); err != nil {
			return fmt.Errorf("droplet: write %s: %w", h.Name, err)
		}
		return nil
	})
}

// Close finishes the droplet and flushes it to the underlying writer. It
// does not close that writer. Closing twice returns the first result.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	if err := w.tw.Close(); err != nil {
		return fmt.Errorf("droplet: finish tar: %w", err)
	}
	if err := w.gz.Close(); err != nil {
		return fmt.Errorf("droplet: finish gzip: %w", err)
	}
	if w.out.err != nil {
		return fmt.Errorf("droplet: %w", w.out.err)
	}
	w.sum = Sum{SHA1: hex.EncodeToString(w.out.h.Sum(nil)), Size: w.out.n}
	return nil
}

// Sum returns the droplet's hash and size; valid after a successful Close.
func (w *Writer) Sum() Sum { return w.sum }

// Pack writes a droplet holding info and the application files of the tar
// archive app (names relative to the application directory) to w.
func Pack(w io.Writer, info Info, app io.Reader) (Sum, error) {
	dw, err := NewWriter(w, info)
	if err != nil {
		return Sum{}, err
	}
	if err := dw.AddTar(app); err != nil {
		return Sum{}, err
	}
	if err := dw.Close(); err != nil {
		return Sum{}, err
	}
	return dw.Sum(), nil
}

// PackDir writes a droplet holding info and the host directory dir as the
// application to w.
func PackDir(w io.Writer, info Info, dir string) (Sum, error) {
	dw, err := NewWriter(w, info)
	if err != nil {
		return Sum{}, err
	}
	if err := dw.AddDir(dir); err != nil {
		return Sum{}, err
	}
	if err := dw.Close(); err != nil {
		return Sum{}, err
	}
	return dw.Sum(), nil
}

// appEntryName cleans the name of an entry relative to app/.
func appEntryName(name string) (string, error) {
	if path.IsAbs(name) {
		return "", fmt.Errorf("%w: entry %q is absolute", ErrInvalid, name)
	}
	clean, err := warden.CleanPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return clean, nil
}

// countingWriter hashes and counts what passes through it and remembers
// the first write error (gzip would otherwise report it late).
type countingWriter struct {
	w   io.Writer
	h   hash.Hash
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if err != nil {
		c.err = err
	}
	return n, err
}
