package warden

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// CleanPath turns a container path into a clean, slash-separated path
// relative to the container root: "" , "/" and "." become ".", "/app/./x"
// becomes "app/x". It rejects, with ErrInvalidPath, paths that climb above
// the root ("../x", "a/../../x") and paths holding a NUL byte. It works on
// names only; backends that keep files on disk must still refuse to follow
// symbolic links out of the root.
func CleanPath(p string) (string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("path %q: %w", p, ErrInvalidPath)
	}
	rel := strings.TrimLeft(p, "/")
	if rel == "" {
		return ".", nil
	}
	// Check before cleaning: path.Clean("/../x") would silently become
	// "/x", hiding the attempt.
	depth := 0
	for _, el := range strings.Split(rel, "/") {
		switch el {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return "", fmt.Errorf("path %q leaves the container: %w", p, ErrInvalidPath)
			}
		default:
			depth++
		}
	}
	return path.Clean(rel), nil
}

// CleanEntryName checks the name of a tar entry to extract into dst (a
// clean path from CleanPath) and returns the entry's clean container path.
// It is stricter than CleanPath: an absolute name ("/etc/passwd") and any
// ".." element are refused rather than reinterpreted, as GNU tar does,
// because "link/../x" means something else once "link" is a symbolic link.
func CleanEntryName(dst, name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("tar entry %q is absolute: %w", name, ErrInvalidPath)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("tar entry %q holds \"..\": %w", name, ErrInvalidPath)
		}
	}
	rel, err := CleanPath(name)
	if err != nil {
		return "", fmt.Errorf("tar entry: %w", err)
	}
	return path.Join(dst, rel), nil
}

// CheckLinkTarget checks that a symbolic link at container path link (clean)
// pointing to target stays inside the container: the target must be
// relative and, resolved against the link's directory, must not climb above
// the root. It returns an error matching ErrInvalidPath otherwise.
func CheckLinkTarget(link, target string) error {
	if target == "" || strings.HasPrefix(target, "/") {
		return fmt.Errorf("link %q -> %q: target must be relative: %w", link, target, ErrInvalidPath)
	}
	if _, err := CleanPath(path.Dir(link) + "/" + target); err != nil {
		return fmt.Errorf("link %q -> %q points out of the container: %w", link, target, ErrInvalidPath)
	}
	return nil
}

// ValidateHandle reports, with ErrInvalidSpec, a handle that is empty,
// longer than 128 bytes, starts with a dot or holds a byte outside
// [A-Za-z0-9._-]. Valid handles are safe as file names.
func ValidateHandle(h string) error {
	if h == "" || len(h) > 128 || h[0] == '.' {
		return fmt.Errorf("handle %q: %w", h, ErrInvalidSpec)
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("handle %q: %w", h, ErrInvalidSpec)
		}
	}
	return nil
}

// maxLinkHops bounds symbolic link resolution, as Linux's ELOOP limit does.
const maxLinkHops = 40

// ResolvePath resolves container path p (clean, from CleanPath) by
// following symbolic links the way the kernel would inside a chroot, except
// that a link with an absolute target or a ".." above the root is an error
// matching ErrInvalidPath rather than being clamped. readlink reports
// whether the clean container path it is given is a symbolic link and its
// target; it is not called for missing components, which are kept as they
// are (so the result may name something to create). followLast says
// whether a link in the final component is followed. Backends use it to
// find where a write would land before making it.
func ResolvePath(p string, followLast bool, readlink func(clean string) (target string, isLink bool, err error)) (string, error) {
	pending := splitPath(p)
	var cur []string
	hops := 0
	for len(pending) > 0 {
		el := pending[0]
		pending = pending[1:]
		switch el {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return "", fmt.Errorf("path %q leaves the container: %w", p, ErrInvalidPath)
			}
			cur = cur[:len(cur)-1]
			continue
		}
		next := strings.Join(append(cur[:len(cur):len(cur)], el), "/")
		if len(pending) == 0 && !followLast {
			cur = append(cur, el)
			break
		}
		target, isLink, err := readlink(next)
		if err != nil {
			return "", err
		}
		if !isLink {
			cur = append(cur, el)
			continue
		}
		hops++
		if hops > maxLinkHops {
			return "", fmt.Errorf("path %q: too many links: %w", p, ErrInvalidPath)
		}
		if target == "" || strings.HasPrefix(target, "/") {
			return "", fmt.Errorf("path %q: link %q -> %q is absolute: %w", p, next, target, ErrInvalidPath)
		}
		pending = append(splitPath(target), pending...)
	}
	if len(cur) == 0 {
		return ".", nil
	}
	return strings.Join(cur, "/"), nil
}

func splitPath(p string) []string {
	if p == "" || p == "." {
		return nil
	}
	return strings.Split(p, "/")
}

// WalkTar reads the tar stream r for extraction into container directory
// dst (clean, from CleanPath). For every entry it checks the name
// (CleanEntryName) and the header (CheckTarHeader), then calls extract with
// the header, the entry's clean container path and the entry's content. It
// returns nil at the end of the stream, or the first error: a bad entry, a
// read error, an error from extract, or ctx's error once ctx ends (checked
// between entries). Backends share it so that every one refuses the same
// entries.
func WalkTar(ctx context.Context, r io.Reader, dst string, extract func(h *tar.Header, name string, content io.Reader) error) error {
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		name, err := CleanEntryName(dst, h.Name)
		if err != nil {
			return err
		}
		if err := CheckTarHeader(h); err != nil {
			return err
		}
		if err := extract(h, name, tr); err != nil {
			return err
		}
	}
}

// CheckTarHeader rejects, with errors.ErrUnsupported, archive entries whose
// contents are not stored as is: PAX-format GNU sparse files, which the
// archive/tar reader expands, so a few bytes of archive could declare an
// exabyte of zeros to write. (Old-format GNU sparse entries keep their own
// type flag, which backends reject as an unsupported type.)
func CheckTarHeader(h *tar.Header) error {
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return fmt.Errorf("tar entry %q is a sparse file: %w", h.Name, errors.ErrUnsupported)
		}
	}
	return nil
}
