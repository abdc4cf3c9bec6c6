package staging

import (
	"archive/tar"
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/kiln-paas/kiln/warden"
)

// PackageLimits bound what an application package may hold. They stop zip
// bombs before anything is extracted.
type PackageLimits struct {
	// MaxFiles is the most entries (files, directories, links) a package
	// may hold.
	MaxFiles int
	// MaxBytes is the most bytes the package's files may hold once
	// uncompressed, counted from the zip's directory and enforced again
	// while extracting (a zip may lie about sizes).
	MaxBytes int64
}

// DefaultPackageLimits are generous for web applications: 1 GiB in at most
// 100,000 files (a large node_modules tree holds tens of thousands).
func DefaultPackageLimits() PackageLimits {
	return PackageLimits{MaxFiles: 100_000, MaxBytes: 1 << 30}
}

// maxLinkTarget bounds the length of a symbolic link's target; targets are
// read into memory.
const maxLinkTarget = 4096

// maxLinkHops bounds symbolic link resolution, as the kernel's ELOOP does.
const maxLinkHops = 40

// maxLinkSteps bounds the total work of resolving a package's links: links
// whose targets name other links several times could otherwise make
// resolution exponential.
const maxLinkSteps = 1_000_000

// Package is a validated application package: a zip whose every entry is a
// directory, regular file or symbolic link with a clean relative name, whose
// links resolve inside the package (following the package's own links), and
// whose size and entry count are within limits. Open one with OpenPackage.
type Package struct {
	zr      *zip.Reader
	entries []*zip.File // in archive order, validated
	names   []string    // clean names, parallel to entries
	links   map[string]string
	limits  PackageLimits
	size    int64
	steps   int // link resolution work done, bounded by maxLinkSteps
}

// OpenPackage reads the zip directory of the package r (size bytes) and
// validates every entry without extracting anything. Failures match
// ErrBadPackage.
func OpenPackage(r io.ReaderAt, size int64, limits PackageLimits) (*Package, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return nil, fmt.Errorf("%w: not a zip archive: %w", ErrBadPackage, err)
	}
	if limits.MaxFiles > 0 && len(zr.File) > limits.MaxFiles {
		return nil, fmt.Errorf("%w: %d entries, more than the limit of %d", ErrBadPackage, len(zr.File), limits.MaxFiles)
	}
	p := &Package{zr: zr, links: map[string]string{}, limits: limits}
	kinds := map[string]fs.FileMode{}
	for _, f := range zr.File {
		name, err := cleanZipName(f.Name)
		if err != nil {
			return nil, err
		}
		if name == "." {
			continue
		}
		mode := f.Mode()
		switch {
		case mode.IsDir(), mode.IsRegular():
		case mode&fs.ModeSymlink != 0:
			target, err := readLink(f)
			if err != nil {
				return nil, err
			}
			p.links[name] = target
		default:
			return nil, fmt.Errorf("%w: %q is a special file (%v)", ErrBadPackage, f.Name, mode.Type())
		}
		if prev, dup := kinds[name]; dup && !(prev.IsDir() && mode.IsDir()) {
			return nil, fmt.Errorf("%w: %q appears twice", ErrBadPackage, name)
		}
		kinds[name] = mode.Type()
		if f.UncompressedSize64 > uint64(1<<62) {
			return nil, fmt.Errorf("%w: %q claims an absurd size", ErrBadPackage, f.Name)
		}
		p.size += int64(f.UncompressedSize64)
		if limits.MaxBytes > 0 && p.size > limits.MaxBytes {
			return nil, fmt.Errorf("%w: more than %d bytes uncompressed", ErrBadPackage, limits.MaxBytes)
		}
		p.entries = append(p.entries, f)
		p.names = append(p.names, name)
	}
	if err := p.checkTree(kinds); err != nil {
		return nil, err
	}
	return p, nil
}

// cleanZipName validates a zip entry name and returns it clean.
func cleanZipName(name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") {
		return "", fmt.Errorf("%w: entry name %q is empty, absolute or uses backslashes", ErrBadPackage, name)
	}
	clean, err := warden.CleanPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadPackage, err)
	}
	return clean, nil
}

func readLink(f *zip.File) (string, error) {
	if f.UncompressedSize64 > maxLinkTarget {
		return "", fmt.Errorf("%w: link %q target too long", ErrBadPackage, f.Name)
	}
	rc, err := f.Open()
	if err != nil {
		return "", fmt.Errorf("%w: link %q: %w", ErrBadPackage, f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxLinkTarget+1))
	if err != nil {
		return "", fmt.Errorf("%w: link %q: %w", ErrBadPackage, f.Name, err)
	}
	return string(b), nil
}

// checkTree refuses entries written through a link or below a file, and
// links that, following the package's links, resolve outside the package.
func (p *Package) checkTree(kinds map[string]fs.FileMode) error {
	for _, name := range p.names {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			kind, ok := kinds[dir]
			if !ok {
				continue
			}
			if kind&fs.ModeSymlink != 0 {
				return fmt.Errorf("%w: %q is inside the link %q", ErrBadPackage, name, dir)
			}
			if !kind.IsDir() {
				return fmt.Errorf("%w: %q is inside the file %q", ErrBadPackage, name, dir)
			}
		}
	}
	for link, target := range p.links {
		if target == "" || strings.HasPrefix(target, "/") || strings.IndexByte(target, 0) >= 0 {
			return fmt.Errorf("%w: link %q -> %q: target must be relative", ErrBadPackage, link, target)
		}
		if _, err := p.resolve(path.Dir(link), target, 0); err != nil {
			return fmt.Errorf("%w: link %q -> %q: %w", ErrBadPackage, link, target, err)
		}
	}
	return nil
}

var errLeaves = errors.New("points out of the package")

// resolve walks target from the directory dir ("." is the package root)
// the way the kernel would, following the package's links, and returns
// the clean resolved path, or errLeaves if it ever climbs above the root.
func (p *Package) resolve(dir, target string, hops int) (string, error) {
	if hops > maxLinkHops {
		return "", errors.New("too many levels of links")
	}
	var cur []string
	if dir != "." {
		cur = strings.Split(dir, "/")
	}
	for _, el := range strings.Split(target, "/") {
		if p.steps++; p.steps > maxLinkSteps {
			return "", errors.New("links too intricate to resolve")
		}
		switch el {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return "", errLeaves
			}
			cur = cur[:len(cur)-1]
			continue
		}
		cur = append(cur, el)
		joined := strings.Join(cur, "/")
		if next, ok := p.links[joined]; ok {
			res, err := p.resolve(path.Dir(joined), next, hops+1)
			if err != nil {
				return "", err
			}
			cur = nil
			if res != "." {
				cur = strings.Split(res, "/")
			}
		}
	}
	if len(cur) == 0 {
		return ".", nil
	}
	return strings.Join(cur, "/"), nil
}

// FS returns the package's files as an fs.FS, for buildpacks that detect
// by looking at the source (names as in the zip).
func (p *Package) FS() fs.FS { return p.zr }

// Files returns the clean names of the package's entries in archive order.
func (p *Package) Files() []string { return slices.Clone(p.names) }

// Size returns the total uncompressed size the package declares.
func (p *Package) Size() int64 { return p.size }

// WriteTar writes the package as a tar archive to w, the form
// warden.Container.StreamIn takes. File sizes are enforced while copying:
// an entry holding more bytes than its zip header declares, or a package
// exceeding PackageLimits.MaxBytes, fails with ErrBadPackage. Directories
// missing from the zip are created as needed by the reader.
func (p *Package) WriteTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	var total int64
	for i, f := range p.entries {
		name := p.names[i]
		mode := f.Mode()
		h := &tar.Header{Name: name, ModTime: f.Modified, Mode: int64(mode.Perm()), Format: tar.FormatPAX}
		switch {
		case mode.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
			h.Mode |= 0o700
		case mode&fs.ModeSymlink != 0:
			h.Typeflag, h.Linkname = tar.TypeSymlink, p.links[name]
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(f.UncompressedSize64)
			// Zips made on some systems carry no permissions at all;
			// the owner must at least read and write its files.
			h.Mode |= 0o600
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("staging: package to tar: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		total += h.Size
		if p.limits.MaxBytes > 0 && total > p.limits.MaxBytes {
			return fmt.Errorf("%w: more than %d bytes uncompressed", ErrBadPackage, p.limits.MaxBytes)
		}
		if err := copyEntry(tw, f, h.Size); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("staging: package to tar: %w", err)
	}
	return nil
}

// copyEntry copies exactly size bytes of f; any other amount is a lying
// zip.
func copyEntry(w io.Writer, f *zip.File, size int64) error {
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadPackage, f.Name, err)
	}
	defer rc.Close()
	src := &errReader{r: io.LimitReader(rc, size)}
	n, err := io.Copy(w, src)
	if err != nil {
		// Any failure to read the entry (corrupt data, bad checksum,
		// unknown method) is the package's fault; failures to write are
		// not.
		if src.err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBadPackage, f.Name, err)
		}
		return fmt.Errorf("staging: package to tar: %s: %w", f.Name, err)
	}
	if n != size {
		return fmt.Errorf("%w: %s holds %d bytes, header says %d", ErrBadPackage, f.Name, n, size)
	}
	// Read to the end so the zip reader checks the CRC and notices data
	// beyond the declared size.
	var one [1]byte
	m, err := rc.Read(one[:])
	if m > 0 || (err != nil && !errors.Is(err, io.EOF)) {
		return fmt.Errorf("%w: %s holds more bytes than its header says or is corrupt: %v", ErrBadPackage, f.Name, err)
	}
	return nil
}

// errReader remembers the error its reader returned, other than io.EOF.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = err
	}
	return n, err
}
