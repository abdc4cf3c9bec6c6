package client

import (
	"archive/zip"
	"context"
	"crypto/sha1" // the platform's resource fingerprints are SHA-1
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Resource fingerprints a file for resource matching.
type Resource struct {
	SHA1 string `json:"sha1"`
	Size int64  `json:"size"`
	Fn   string `json:"fn"`
	Mode uint32 `json:"mode,omitempty"`
}

// MatchResources is POST /resources: which of rs the controller already has.
func (c *Client) MatchResources(ctx context.Context, rs []Resource) ([]Resource, error) {
	if rs == nil {
		rs = []Resource{}
	}
	var out []Resource
	return out, c.call(ctx, "POST", "/resources", nil, rs, &out)
}

// Upload sends the app's bits: zipped holds the files the controller lacks
// (nil: none) and have the files it already has. It uses the original CLI's
// form: POST with _method=put, "resources" and "application" parts. The
// body is streamed, not held in memory. It returns the bytes sent.
func (c *Client) Upload(ctx context.Context, name string, zipped io.Reader, have []Resource) (int64, error) {
	if have == nil {
		have = []Resource{}
	}
	rb, err := json.Marshal(have)
	if err != nil {
		return 0, fmt.Errorf("client: encode resources: %w", err)
	}
	pr, pw := io.Pipe()
	cw := &countWriter{w: pw}
	mw := multipart.NewWriter(cw)
	go func() {
		pw.CloseWithError(writeForm(mw, rb, zipped))
	}()
	req, err := c.newRequest(ctx, "POST", path("apps", name, "application"), nil, pr, mw.FormDataContentType())
	if err != nil {
		pr.CloseWithError(err)
		return 0, err
	}
	resp, err := c.do(req)
	pr.CloseWithError(io.ErrClosedPipe) // stop the writer if the server quit early
	if err != nil {
		return cw.n.Load(), err
	}
	resp.Body.Close()
	return cw.n.Load(), nil
}

func writeForm(mw *multipart.Writer, resources []byte, zipped io.Reader) error {
	if err := mw.WriteField("_method", "put"); err != nil {
		return err
	}
	if err := mw.WriteField("resources", string(resources)); err != nil {
		return err
	}
	fw, err := mw.CreateFormFile("application", "application.zip")
	if err != nil {
		return err
	}
	if zipped != nil {
		if _, err := io.Copy(fw, zipped); err != nil {
			return fmt.Errorf("client: read zip: %w", err)
		}
	}
	return mw.Close()
}

type countWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// PushStats describe a push.
type PushStats struct {
	// Files and Bytes count the app's files.
	Files int
	Bytes int64
	// Matched counts the files the controller already had.
	Matched int
	// Sent is the size of the upload request body.
	Sent int64
	// Duration is the time the push took.
	Duration time.Duration
}

// Push uploads the app in dir: it fingerprints every regular file, asks the
// controller which it already has, and zips and sends only the others.
func (c *Client) Push(ctx context.Context, name, dir string) (PushStats, error) {
	start := time.Now()
	var st PushStats
	files, err := Fingerprint(dir)
	if err != nil {
		return st, err
	}
	for _, f := range files {
		st.Files++
		st.Bytes += f.Size
	}
	have, err := c.MatchResources(ctx, files)
	if err != nil {
		return st, err
	}
	known := map[string]bool{}
	for _, h := range have {
		known[h.Fn] = true
	}
	st.Matched = len(have)
	// Zip the missing files straight into the upload.
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(zipFiles(pw, dir, files, known))
	}()
	st.Sent, err = c.Upload(ctx, name, pr, have)
	pr.CloseWithError(io.ErrClosedPipe)
	st.Duration = time.Since(start)
	return st, err
}

// zipFiles writes a zip of the files not known to w; an empty app gets the
// original CLI's empty marker so the upload is still a zip.
func zipFiles(w io.Writer, dir string, files []Resource, known map[string]bool) error {
	zw := zip.NewWriter(w)
	added := 0
	for _, f := range files {
		if known[f.Fn] {
			continue
		}
		if err := addFile(zw, filepath.Join(dir, filepath.FromSlash(f.Fn)), f); err != nil {
			return err
		}
		added++
	}
	if added == 0 {
		if _, err := zw.Create(".__empty__"); err != nil {
			return fmt.Errorf("client: zip: %w", err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("client: zip: %w", err)
	}
	return nil
}

func addFile(zw *zip.Writer, full string, f Resource) error {
	src, err := os.Open(full)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	defer src.Close()
	h := &zip.FileHeader{Name: f.Fn, Method: zip.Deflate}
	h.SetMode(fs.FileMode(f.Mode))
	w, err := zw.CreateHeader(h)
	if err != nil {
		return fmt.Errorf("client: zip %s: %w", f.Fn, err)
	}
	if _, err := io.Copy(w, src); err != nil {
		return fmt.Errorf("client: zip %s: %w", f.Fn, err)
	}
	return nil
}

// Fingerprint returns the SHA-1, size, mode and slash-separated relative
// path of every regular file under dir, sorted by path.
func Fingerprint(dir string) ([]Resource, error) {
	var out []Resource
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" && p != dir {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		h := sha1.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return err
		}
		out = append(out, Resource{SHA1: hex.EncodeToString(h.Sum(nil)), Size: info.Size(), Fn: filepath.ToSlash(rel), Mode: uint32(info.Mode().Perm())})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("client: fingerprint %s: %w", dir, err)
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].Fn, out[j].Fn) < 0 })
	return out, nil
}
