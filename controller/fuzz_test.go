package controller

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/bus/membus"
	"github.com/kiln-paas/kiln/services"

	"github.com/kiln-paas/kiln/controller/blobstore/memblob"
	"github.com/kiln-paas/kiln/controller/controllertest"
	"github.com/kiln-paas/kiln/controller/store/memstore"
)

func FuzzDecodeAppBody(f *testing.F) {
	f.Add([]byte(`{"name":"foo","staging":{"framework":"sinatra","runtime":"ruby18"},"uris":["foo.vcap.me"],"instances":1,"resources":{"memory":128}}`))
	f.Add([]byte(`{"state":"STARTED","env":["A=1"],"meta":{"version":3},"services":["db"]}`))
	f.Add([]byte(`{"instances":"x"}`))
	f.Add([]byte(`[]`))
	c := &Controller{cfg: DefaultConfig()}
	f.Fuzz(func(t *testing.T, b []byte) {
		var body appBody
		err := decodeJSON(b, &body)
		var e *Error
		if err != nil && (!errors.As(err, &e) || e.Code != 100) {
			t.Fatalf("decode error %v is not 400/100", err)
		}
		if err != nil {
			return
		}
		if body.Env != nil {
			_, _ = checkEnv(*body.Env)
		}
		if body.Staging != nil && body.Staging.Framework != nil {
			_, _, _, _ = c.checkFramework(*body.Staging.Framework, "")
		}
	})
}

func FuzzDecodeResources(f *testing.F) {
	f.Add([]byte(`[{"sha1":"0123456789abcdef0123456789abcdef01234567","size":3,"fn":"a/b"}]`))
	f.Add([]byte(`{"sha1":"x"}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := decodeResources(b)
		if err != nil {
			return
		}
		for _, r := range rs {
			if name, ok := cleanName(r.Fn); ok && (filepath.IsAbs(name) || name == ".." || len(name) >= 3 && name[:3] == "../") {
				t.Fatalf("cleanName(%q) = %q accepted", r.Fn, name)
			}
		}
	})
}

// FuzzUploadZip feeds arbitrary bytes as the uploaded zip: assembling must
// fail cleanly or produce a package, never panic or escape.
func FuzzUploadZip(f *testing.F) {
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	w, _ := zw.Create("a.txt")
	_, _ = w.Write([]byte("hello"))
	w, _ = zw.Create("../escape")
	_, _ = w.Write([]byte("x"))
	_ = zw.Close()
	f.Add(zb.Bytes())
	f.Add([]byte("PK\x03\x04garbage"))
	st, _ := memstore.New(memstore.DefaultConfig())
	blobs, _ := memblob.New(memblob.DefaultConfig())
	cfg := DefaultConfig()
	cfg.MaxUploadBytes = 1 << 20
	c := &Controller{cfg: cfg, deps: Deps{Store: st, Blobs: blobs}}
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		c.cfg.TempDir = dir
		p := filepath.Join(dir, "up.zip")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		_, _, err = c.assemble(context.Background(), fh, nil)
		var e *Error
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("assemble error %v is not an API error", err)
		}
	})
}

// FuzzHandler sends arbitrary requests, as an anonymous and as a logged-in
// user, and checks every answer is a well-formed response and never an
// internal error (which is also what a recovered panic turns into).
func FuzzHandler(f *testing.F) {
	f.Add(uint8(0), "/apps", []byte(`{"name":"a"}`), true)
	f.Add(uint8(1), "/apps/a", []byte(`{"instances":3,"env":["A=1"]}`), true)
	f.Add(uint8(2), "/users/x@y.z/tokens", []byte(`{"password":"p"}`), false)
	f.Add(uint8(3), "/apps/a/instances/0/files/../../etc", []byte(``), true)
	f.Add(uint8(0), "/resources", []byte(`[{"sha1":"zz","size":-1,"fn":"/etc/passwd"}]`), true)
	f.Add(uint8(0), "/services", []byte(`{"name":"s","vendor":"redis","tier":"free"}`), true)
	st, _ := memstore.New(memstore.DefaultConfig())
	blobs, _ := memblob.New(memblob.DefaultConfig())
	cfg := testConfig()
	cfg.ExternalURL = "http://127.0.0.1:1"
	cfg.DiscoverTimeout = time.Millisecond
	cfg.DiscoverAttempts = 1
	cfg.FindTimeout = time.Millisecond
	cfg.LoginFailures = 1 << 30
	c, err := New(cfg, Deps{Bus: membus.New(), Store: st, Blobs: blobs, Stager: &controllertest.Stager{}, Builtin: map[string]services.Broker{"mem": newMemBroker()}})
	if err != nil {
		f.Fatal(err)
	}
	if err := c.CreateUser(context.Background(), "fuzz@x.io", "pw"); err != nil {
		f.Fatal(err)
	}
	token := c.issueToken("fuzz@x.io")
	methods := []string{"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"}
	h := c.Handler()
	f.Fuzz(func(t *testing.T, m uint8, path string, body []byte, auth bool) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		u, err := url.ParseRequestURI(path)
		if err != nil || strings.Contains(path, "staging_log") || strings.Contains(path, "/logs") {
			return // not a request a client could send; streams never end
		}
		req, err := http.NewRequest(methods[int(m)%len(methods)], "http://cc"+u.RequestURI(), bytes.NewReader(body))
		if err != nil {
			return
		}
		req.RemoteAddr = "192.0.2.1:1234"
		if auth {
			req.Header.Set("Authorization", token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == 404 && rec.Body.Len() == 0 {
			return
		}
		var e struct {
			Code int `json:"code"`
		}
		if rec.Code >= 400 && rec.Code != 501 {
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == 0 {
				t.Fatalf("%s %s: %d %q is not {code, description}", req.Method, path, rec.Code, rec.Body.String())
			}
		}
		if e.Code == 111 {
			t.Fatalf("%s %s: internal error %s", req.Method, path, rec.Body.String())
		}
	})
}
