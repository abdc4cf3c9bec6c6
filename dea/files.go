package dea

import (
	"archive/tar"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-paas/kiln/warden"
)

// File server URLs have the form
//
//	<FileServerURL>/files/<instance id>/<expiry unix seconds>/<signature>/<path>
//
// where the signature is the hex HMAC-SHA256, under a key each DEA draws at
// start, of the instance id and the expiry. The signature sits in the path
// so a client appends a file's path ("logs/stdout.log") to the URL it got.

// sign returns the signature of a URL for instance id expiring at exp.
func (d *DEA) sign(id string, exp int64) string {
	m := hmac.New(sha256.New, d.key)
	m.Write([]byte(id + "\n" + strconv.FormatInt(exp, 10)))
	return hex.EncodeToString(m.Sum(nil))
}

// fileURL returns a signed URL to instance id's files, or "" when the DEA
// has no FileServerURL.
func (d *DEA) fileURL(id string, now time.Time) string {
	if d.cfg.FileServerURL == "" {
		return ""
	}
	exp := now.Add(d.cfg.FileURLTTL).Unix()
	return fmt.Sprintf("%s/files/%s/%d/%s/", strings.TrimRight(d.cfg.FileServerURL, "/"), id, exp, d.sign(id, exp))
}

// FileURL returns a signed URL to the files of the instance with the given
// id on this DEA's file server, as dea.find.droplet replies carry.
func (d *DEA) FileURL(instanceID string) string { return d.fileURL(instanceID, d.now()) }

// checkSignature verifies a URL's expiry and signature.
func (d *DEA) checkSignature(id, expStr, sig string, now time.Time) error {
	exp, err := strconv.ParseInt(expStr, 10, 64)
	if err != nil || now.Unix() > exp {
		return ErrBadSignature
	}
	want := d.sign(id, exp)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return ErrBadSignature
	}
	return nil
}

// Top-level directories of an instance the file server exposes: the app
// and its logs, never the DEA's own files.
var servedRoots = []string{"app", "logs"}

// serveFiles serves an instance's files read-only, through the container
// backend (so symbolic links are never followed out of the container).
func (d *DEA) serveFiles(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, "/files/")
	parts := strings.SplitN(rest, "/", 4)
	if len(parts) < 3 {
		http.Error(w, "Entity not found.", http.StatusNotFound)
		return
	}
	id, exp, sig := parts[0], parts[1], parts[2]
	if err := d.checkSignature(id, exp, sig, d.now()); err != nil {
		http.Error(w, "Not accessible", http.StatusForbidden)
		return
	}
	rel := ""
	if len(parts) == 4 {
		rel = parts[3]
	}
	clean, err := warden.CleanPath(rel)
	if err != nil {
		http.Error(w, "Not accessible", http.StatusForbidden)
		return
	}
	d.mu.Lock()
	inst := d.instances[id]
	var c warden.Container
	if inst != nil {
		c = inst.container
	}
	d.mu.Unlock()
	if c == nil {
		http.Error(w, "Entity not found.", http.StatusNotFound)
		return
	}
	if clean == "." {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		for _, name := range servedRoots {
			fmt.Fprintf(w, "%-40s %s\n", name+"/", "-")
		}
		return
	}
	if top, _, _ := strings.Cut(clean, "/"); !contains(servedRoots, top) {
		http.Error(w, "Not accessible", http.StatusForbidden)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	rc, err := c.StreamOut(ctx, clean)
	switch {
	case errors.Is(err, warden.ErrNotFound):
		http.Error(w, "Entity not found.", http.StatusNotFound)
		return
	case errors.Is(err, warden.ErrInvalidPath):
		http.Error(w, "Not accessible", http.StatusForbidden)
		return
	case err != nil:
		http.Error(w, "file server error", http.StatusInternalServerError)
		return
	}
	defer rc.Close()
	serveTar(w, tar.NewReader(rc), path.Base(clean))
}

// serveTar writes what StreamOut returned: a single regular file named
// base is served as that file, anything else as a directory listing of
// its first level.
func serveTar(w http.ResponseWriter, tr *tar.Reader, base string) {
	first, err := tr.Next()
	if err != nil && !errors.Is(err, io.EOF) {
		http.Error(w, "file server error", http.StatusInternalServerError)
		return
	}
	if err == nil && first.Typeflag == tar.TypeReg && strings.TrimPrefix(first.Name, "./") == base {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(first.Size, 10))
		_, _ = io.Copy(w, tr)
		return
	}
	type entry struct {
		name string
		size string
	}
	seen := map[string]entry{}
	add := func(h *tar.Header) {
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		top, sub, nested := strings.Cut(name, "/")
		switch {
		case top == "" || top == ".":
		case nested || h.Typeflag == tar.TypeDir:
			_ = sub
			seen[top] = entry{top + "/", "-"}
		case h.Typeflag == tar.TypeSymlink:
			seen[top] = entry{top + "@", "-"}
		default:
			seen[top] = entry{top, humanSize(h.Size)}
		}
	}
	if err == nil {
		add(first)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			add(h)
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, n := range names {
		fmt.Fprintf(w, "%-40s %s\n", seen[n].name, seen[n].size)
	}
}

// humanSize formats a size as the original directory listings did.
func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}
