package controller

import (
	"archive/zip"
	"compress/flate"
	"context"
	"crypto/sha1" // SHA-1 is the platform's content address for packages.
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/store"
)

// maxPackageFiles bounds the entries of an assembled package.
const maxPackageFiles = 100000

// Resource is one file fingerprint of resource matching: what POST
// /resources takes and returns, and the "resources" field of an upload.
type Resource struct {
	SHA1 string `json:"sha1"`
	Size int64  `json:"size"`
	Fn   string `json:"fn"`
	// Mode is the file's permission bits (kiln extension; 0 means 0644).
	Mode uint32 `json:"mode,omitempty"`
}

// decodeResources decodes a resource list; anything but an array is an
// empty list, as in the original.
func decodeResources(b []byte) ([]Resource, error) {
	var raw any
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, ErrBadRequest.with(clip(err.Error()))
	}
	if _, ok := raw.([]any); !ok {
		return nil, nil
	}
	var rs []Resource
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, ErrBadRequest.with(clip(err.Error()))
	}
	return rs, nil
}

// matchResources is POST /resources.
func (c *Controller) matchResources(k *call) error {
	body, err := io.ReadAll(http.MaxBytesReader(k.w, k.r.Body, c.cfg.MaxBodyBytes*16))
	if err != nil {
		return ErrTooLarge.with(c.cfg.MaxBodyBytes * 16)
	}
	rs, err := decodeResources(body)
	if err != nil {
		return err
	}
	out := []Resource{}
	if len(rs) > 0 {
		sha1s := make([]string, 0, len(rs))
		for _, r := range rs {
			sha1s = append(sha1s, strings.ToLower(r.SHA1))
		}
		have, err := c.deps.Store.HaveResources(k.r.Context(), sha1s)
		if err != nil {
			return fmt.Errorf("match resources: %w", err)
		}
		sizes := make(map[string]int64, len(have))
		for _, h := range have {
			sizes[h.SHA1] = h.Size
		}
		for _, r := range rs {
			if sz, ok := sizes[strings.ToLower(r.SHA1)]; ok && sz == r.Size {
				out = append(out, r)
			}
		}
	}
	writeJSON(k.w, http.StatusOK, out)
	return nil
}

// upload is PUT /apps/:name/application (and POST with _method=put): a
// multipart form with the zip of new files ("application") and the JSON
// list of files already in the pool ("resources").
func (c *Controller) upload(k *call) error {
	ctx := k.r.Context()
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	k.r.Body = http.MaxBytesReader(k.w, k.r.Body, c.cfg.MaxUploadBytes+1<<20)
	zipFile, resources, err := c.readUpload(k.r)
	if zipFile != nil {
		defer func() { zipFile.Close(); os.Remove(zipFile.Name()) }()
	}
	if err != nil {
		return err
	}
	hash, size, err := c.assemble(ctx, zipFile, resources)
	if err != nil {
		return err
	}
	changed := false
	_, err = c.mutateApp(ctx, a.ID, func(x *store.App) error {
		changed = x.PackageHash != hash || x.PackageState == store.PackageFailed
		if changed {
			x.PackageHash = hash
			x.PackageState = store.PackagePending
			x.StagingError = ""
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.log.Info("app-uploaded", "app", a.ID, "package", hash, "bytes", size, "changed", changed)
	if changed {
		c.event(ctx, a.ID, "app-uploaded", "package "+hash)
		c.stager.enqueue(a.ID, hash)
	}
	k.w.WriteHeader(http.StatusOK)
	return nil
}

// readUpload spools the uploaded zip to a temporary file and decodes the
// resource list. The file is nil when no zip was sent.
func (c *Controller) readUpload(r *http.Request) (*os.File, []Resource, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/zip" || mt == "application/octet-stream" {
		f, err := c.spool(r.Body)
		return f, nil, err
	}
	if mt != "multipart/form-data" {
		return nil, nil, ErrUnknownPackage
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, nil, ErrBadRequest.with("bad multipart body")
	}
	var (
		f         *os.File
		resources []Resource
	)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return f, nil, ErrTooLarge.with(mbe.Limit)
			}
			return f, nil, ErrBadRequest.with("bad multipart body")
		}
		switch p.FormName() {
		case "application":
			if f != nil {
				return f, nil, ErrBadRequest.with("two application parts")
			}
			f, err = c.spool(p)
			if err != nil {
				return f, nil, err
			}
		case "resources":
			b, err := io.ReadAll(io.LimitReader(p, c.cfg.MaxBodyBytes*16))
			if err != nil {
				return f, nil, ErrBadRequest.with("bad resources part")
			}
			if resources, err = decodeResources(b); err != nil {
				return f, nil, err
			}
		}
		p.Close()
	}
	return f, resources, nil
}

func (c *Controller) spool(r io.Reader) (*os.File, error) {
	f, err := os.CreateTemp(c.cfg.TempDir, "kiln-upload-*.zip")
	if err != nil {
		return nil, fmt.Errorf("spool upload: %w", err)
	}
	n, err := io.Copy(f, io.LimitReader(r, c.cfg.MaxUploadBytes+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return f, ErrTooLarge.with(c.cfg.MaxUploadBytes)
		}
		return f, ErrBadRequest.with("upload interrupted")
	}
	if n > c.cfg.MaxUploadBytes {
		return f, ErrTooLarge.with(c.cfg.MaxUploadBytes)
	}
	return f, nil
}

// cleanName validates a path inside a package: relative, no "..", no NUL.
func cleanName(name string) (string, bool) {
	name = strings.ReplaceAll(name, "\\", "/")
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsRune(name, 0) || len(name) > 4096 {
		return "", false
	}
	clean := path.Clean(name)
	if clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", false
	}
	return clean, true
}

type pkgEntry struct {
	name string
	mode os.FileMode
	// zf is set for an uploaded file, sha1 for a pooled resource.
	zf   *zip.File
	sha1 string
	size int64
}

// assemble builds the package from the uploaded zip and pooled resources,
// pools every uploaded file, stores the package and returns its SHA-1.
func (c *Controller) assemble(ctx context.Context, upload *os.File, resources []Resource) (string, int64, error) {
	entries := map[string]*pkgEntry{}
	var total int64
	if upload != nil {
		st, err := upload.Stat()
		if err != nil {
			return "", 0, fmt.Errorf("stat upload: %w", err)
		}
		if st.Size() > 0 {
			zr, err := zip.NewReader(upload, st.Size())
			if err != nil {
				return "", 0, ErrPackaging.with("the application is not a valid zip")
			}
			if len(zr.File) > maxPackageFiles {
				return "", 0, ErrPackaging.with("too many files")
			}
			for _, zf := range zr.File {
				if zf.FileInfo().IsDir() {
					continue
				}
				name, ok := cleanName(zf.Name)
				if !ok {
					return "", 0, ErrPackaging.with("bad file name " + clip(zf.Name))
				}
				if name == ".__empty__" {
					continue
				}
				if !zf.Mode().IsRegular() {
					return "", 0, ErrPackaging.with("not a regular file: " + clip(name))
				}
				total += int64(zf.UncompressedSize64)
				if zf.UncompressedSize64 > uint64(c.cfg.MaxUploadBytes) || total > c.cfg.MaxUploadBytes {
					return "", 0, ErrPackaging.with("application too large")
				}
				entries[name] = &pkgEntry{name: name, mode: zf.Mode().Perm(), zf: zf, size: int64(zf.UncompressedSize64)}
			}
		}
	}
	for _, r := range resources {
		name, ok := cleanName(r.Fn)
		if !ok {
			return "", 0, ErrBadRequest.with("bad resource path " + clip(r.Fn))
		}
		if _, dup := entries[name]; dup {
			continue
		}
		sha := strings.ToLower(r.SHA1)
		info, err := c.deps.Blobs.Stat(ctx, blobstore.KindResource, sha)
		if err != nil || info.Size != r.Size {
			return "", 0, ErrMissingResource.with(clip(r.Fn))
		}
		total += info.Size
		if total > c.cfg.MaxUploadBytes {
			return "", 0, ErrPackaging.with("application too large")
		}
		mode := os.FileMode(r.Mode).Perm()
		if mode == 0 {
			mode = 0o644
		}
		entries[name] = &pkgEntry{name: name, mode: mode, sha1: sha, size: info.Size}
	}
	if len(entries) > maxPackageFiles {
		return "", 0, ErrPackaging.with("too many files")
	}
	return c.writePackage(ctx, entries)
}

// writePackage zips entries in name order with fixed times, so the same
// files always give the same package hash.
func (c *Controller) writePackage(ctx context.Context, entries map[string]*pkgEntry) (string, int64, error) {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	out, err := os.CreateTemp(c.cfg.TempDir, "kiln-package-*.zip")
	if err != nil {
		return "", 0, fmt.Errorf("package: %w", err)
	}
	defer func() { out.Close(); os.Remove(out.Name()) }()
	h := sha1.New()
	zw := zip.NewWriter(io.MultiWriter(out, h))
	// BestSpeed: packages are re-zipped on every push and are mostly
	// already-compressed or small files; latency matters more than size.
	zw.RegisterCompressor(zip.Deflate, func(w io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(w, flate.BestSpeed)
	})
	var pooled []store.Resource
	epoch := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range names {
		e := entries[n]
		hdr := &zip.FileHeader{Name: n, Method: zip.Deflate, Modified: epoch}
		hdr.SetMode(e.mode)
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			return "", 0, fmt.Errorf("package %s: %w", n, err)
		}
		if e.zf != nil {
			rc, err := e.zf.Open()
			if err != nil {
				return "", 0, ErrPackaging.with("cannot read " + clip(n))
			}
			// Pool the uploaded file while copying it into the package.
			info, err := c.deps.Blobs.Add(ctx, blobstore.KindResource, io.LimitReader(io.TeeReader(rc, w), e.size+1))
			rc.Close()
			if err != nil {
				return "", 0, ErrPackaging.with("cannot read " + clip(n))
			}
			if info.Size != e.size {
				return "", 0, ErrPackaging.with("size mismatch of " + clip(n))
			}
			pooled = append(pooled, store.Resource{SHA1: info.Key, Size: info.Size})
			continue
		}
		b, err := c.deps.Blobs.Open(ctx, blobstore.KindResource, e.sha1)
		if err != nil {
			return "", 0, ErrMissingResource.with(clip(n))
		}
		_, err = io.Copy(w, b)
		b.Close()
		if err != nil {
			return "", 0, fmt.Errorf("package %s: %w", n, err)
		}
	}
	if err := zw.Close(); err != nil {
		return "", 0, fmt.Errorf("package: %w", err)
	}
	if len(pooled) > 0 {
		if err := c.deps.Store.PutResources(ctx, pooled); err != nil {
			return "", 0, fmt.Errorf("pool resources: %w", err)
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return "", 0, fmt.Errorf("package: %w", err)
	}
	info, err := c.deps.Blobs.Put(ctx, blobstore.KindPackage, sum, out)
	if err != nil {
		return "", 0, fmt.Errorf("store package: %w", err)
	}
	return sum, info.Size, nil
}

// download is GET /apps/:name/application: the unstaged package.
func (c *Controller) download(k *call) error {
	a, err := c.appByName(k)
	if err != nil {
		return err
	}
	if a.PackageHash == "" {
		return ErrFileNotFound.with("application")
	}
	b, err := c.deps.Blobs.Open(k.r.Context(), blobstore.KindPackage, a.PackageHash)
	if errors.Is(err, blobstore.ErrNotFound) {
		return ErrFileNotFound.with("application")
	}
	if err != nil {
		return fmt.Errorf("open package: %w", err)
	}
	defer b.Close()
	k.w.Header().Set("Content-Type", "application/zip")
	k.w.Header().Set("ETag", `"`+a.PackageHash+`"`)
	http.ServeContent(k.w, k.r, a.Name+".zip", time.Time{}, b)
	return nil
}
