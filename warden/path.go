package warden

import (
	"fmt"
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
// Unlike CleanPath it rejects absolute names: an archive that names
// "/etc/passwd" is refused rather than reinterpreted.
func CleanEntryName(dst, name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("tar entry %q is absolute: %w", name, ErrInvalidPath)
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
