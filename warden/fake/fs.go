package fake

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/kiln-paas/kiln/warden"
)

// nodeKind is what a file-tree entry is.
type nodeKind int

const (
	kindDir nodeKind = iota
	kindFile
	kindLink
)

// node is one entry of a container's in-memory file tree.
type node struct {
	kind    nodeKind
	mode    fs.FileMode // permission bits
	data    []byte      // file contents
	target  string      // link target
	modTime time.Time
}

// memFS is a container's file tree, keyed by clean container path ("." is
// the root). It is not safe for concurrent use; the container's mutex
// guards it.
type memFS struct {
	nodes map[string]*node
	size  uint64 // sum of file sizes
}

func newMemFS() *memFS {
	return &memFS{nodes: map[string]*node{".": {kind: kindDir, mode: 0o755}}}
}

func (m *memFS) readlink(p string) (string, bool, error) {
	n := m.nodes[p]
	if n == nil || n.kind != kindLink {
		return "", false, nil
	}
	return n.target, true, nil
}

// resolve turns a container path (as callers give it) into the clean path
// of the entry it names, following links that stay inside.
func (m *memFS) resolve(p string, followLast bool) (string, error) {
	clean, err := warden.CleanPath(p)
	if err != nil {
		return "", err
	}
	return warden.ResolvePath(clean, followLast, m.readlink)
}

// lookup returns the node p names, following links.
func (m *memFS) lookup(p string) (string, *node, error) {
	r, err := m.resolve(p, true)
	if err != nil {
		return "", nil, err
	}
	n := m.nodes[r]
	if n == nil {
		return "", nil, fmt.Errorf("%q: %w", p, warden.ErrNotFound)
	}
	return r, n, nil
}

// mkdirAll creates the directory at resolved path r and its parents.
func (m *memFS) mkdirAll(r string, mode fs.FileMode) error {
	if r == "." {
		return nil
	}
	parent, err := warden.ResolvePath(path.Dir(r), true, m.readlink)
	if err != nil {
		return err
	}
	if err := m.mkdirAll(parent, 0o755); err != nil {
		return err
	}
	r = path.Join(parent, path.Base(r))
	switch n := m.nodes[r]; {
	case n == nil:
		m.nodes[r] = &node{kind: kindDir, mode: mode.Perm(), modTime: time.Now()}
	case n.kind != kindDir:
		return fmt.Errorf("%q exists and is not a directory: %w", r, warden.ErrExists)
	}
	return nil
}

// parentFor resolves the directory that would hold clean path p, creating
// it, and returns the resolved path of p itself (its last element not
// followed).
func (m *memFS) parentFor(p string) (string, error) {
	dir, err := warden.ResolvePath(path.Dir(p), true, m.readlink)
	if err != nil {
		return "", err
	}
	if err := m.mkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return path.Join(dir, path.Base(p)), nil
}

// writeFile replaces the file at clean path p (following a link in the
// last element, as open(2) with O_CREAT does). limit bounds the tree's
// total file size (0 = none).
func (m *memFS) writeFile(p string, data []byte, mode fs.FileMode, limit uint64) error {
	r, err := warden.ResolvePath(p, true, m.readlink)
	if err != nil {
		return err
	}
	r, err = m.parentFor(r)
	if err != nil {
		return err
	}
	var old uint64
	if n := m.nodes[r]; n != nil {
		if n.kind == kindDir {
			return fmt.Errorf("%q is a directory: %w", p, warden.ErrExists)
		}
		old = uint64(len(n.data))
	}
	if limit > 0 && m.size-old+uint64(len(data)) > limit {
		return fmt.Errorf("writing %q (%d bytes) exceeds disk limit %d: %w", p, len(data), limit, warden.ErrLimitExceeded)
	}
	m.size = m.size - old + uint64(len(data))
	m.nodes[r] = &node{kind: kindFile, mode: mode.Perm(), data: data, modTime: time.Now()}
	return nil
}

// appendFile appends to the file at container path p, creating it and its
// parents.
func (m *memFS) appendFile(p string, data []byte, limit uint64) error {
	r, err := m.resolve(p, true)
	if err != nil {
		return err
	}
	n := m.nodes[r]
	if n == nil {
		return m.writeFile(r, append([]byte(nil), data...), 0o644, limit)
	}
	if n.kind != kindFile {
		return fmt.Errorf("%q is not a file: %w", p, warden.ErrExists)
	}
	if limit > 0 && m.size+uint64(len(data)) > limit {
		return fmt.Errorf("appending to %q exceeds disk limit %d: %w", p, limit, warden.ErrLimitExceeded)
	}
	n.data = append(n.data, data...)
	n.modTime = time.Now()
	m.size += uint64(len(data))
	return nil
}

// symlink creates a link at clean path p; the target must stay inside the
// container when resolved from where the link really lands.
func (m *memFS) symlink(p, target string) error {
	r, err := m.parentFor(p)
	if err != nil {
		return err
	}
	if err := warden.CheckLinkTarget(r, target); err != nil {
		return err
	}
	if n := m.nodes[r]; n != nil && n.kind == kindDir {
		return fmt.Errorf("%q is a directory: %w", p, warden.ErrExists)
	} else if n != nil && n.kind == kindFile {
		m.size -= uint64(len(n.data))
	}
	m.nodes[r] = &node{kind: kindLink, mode: 0o777, target: target, modTime: time.Now()}
	return nil
}

// extract implements Container.StreamIn on the tree.
func (m *memFS) extract(ctx context.Context, dst string, r io.Reader, limit uint64) error {
	cdst, err := warden.CleanPath(dst)
	if err != nil {
		return err
	}
	rdst, err := warden.ResolvePath(cdst, true, m.readlink)
	if err != nil {
		return err
	}
	if err := m.mkdirAll(rdst, 0o755); err != nil {
		return err
	}
	return warden.WalkTar(ctx, r, rdst, func(h *tar.Header, name string, content io.Reader) error {
		return m.extractEntry(content, h, name, limit)
	})
}

func (m *memFS) extractEntry(content io.Reader, h *tar.Header, name string, limit uint64) error {
	switch h.Typeflag {
	case tar.TypeDir:
		r, err := warden.ResolvePath(name, true, m.readlink)
		if err != nil {
			return err
		}
		return m.mkdirAll(r, h.FileInfo().Mode())
	case tar.TypeReg:
		if limit > 0 && h.Size > 0 && m.size+uint64(h.Size) > limit {
			return fmt.Errorf("entry %q (%d bytes) exceeds disk limit %d: %w", h.Name, h.Size, limit, warden.ErrLimitExceeded)
		}
		data, err := io.ReadAll(content)
		if err != nil {
			return fmt.Errorf("read tar entry %q: %w", h.Name, err)
		}
		return m.writeFile(name, data, h.FileInfo().Mode(), limit)
	case tar.TypeSymlink:
		return m.symlink(name, h.Linkname)
	default:
		return fmt.Errorf("tar entry %q of type %q: %w", h.Name, h.Typeflag, errors.ErrUnsupported)
	}
}

// archive implements Container.StreamOut on the tree.
func (m *memFS) archive(src string) ([]byte, error) {
	clean, err := warden.CleanPath(src)
	if err != nil {
		return nil, err
	}
	// Like stat(2): links inside src are archived as links, but a link
	// naming src itself is followed.
	r, err := warden.ResolvePath(clean, true, m.readlink)
	if err != nil {
		return nil, err
	}
	n := m.nodes[r]
	if n == nil {
		return nil, fmt.Errorf("%q: %w", src, warden.ErrNotFound)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if n.kind != kindDir {
		if err := writeEntry(tw, path.Base(r), n); err != nil {
			return nil, err
		}
		return buf.Bytes(), tw.Close()
	}
	prefix := r + "/"
	if r == "." {
		prefix = ""
	}
	var names []string
	for p := range m.nodes {
		if p != "." && strings.HasPrefix(p, prefix) {
			names = append(names, p)
		}
	}
	sort.Strings(names)
	for _, p := range names {
		if err := writeEntry(tw, strings.TrimPrefix(p, prefix), m.nodes[p]); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), tw.Close()
}

func writeEntry(tw *tar.Writer, name string, n *node) error {
	h := &tar.Header{Name: name, Mode: int64(n.mode), ModTime: n.modTime, Format: tar.FormatPAX}
	switch n.kind {
	case kindDir:
		h.Typeflag = tar.TypeDir
		h.Name += "/"
	case kindFile:
		h.Typeflag = tar.TypeReg
		h.Size = int64(len(n.data))
	case kindLink:
		h.Typeflag = tar.TypeSymlink
		h.Linkname = n.target
	}
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write tar header %q: %w", name, err)
	}
	if n.kind == kindFile {
		if _, err := tw.Write(n.data); err != nil {
			return fmt.Errorf("write tar entry %q: %w", name, err)
		}
	}
	return nil
}
