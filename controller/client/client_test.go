package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/controller/client"
)

// recorder is a server that records requests and answers with a canned
// status and body.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
	body []string
}

func (r *recorder) server(t *testing.T, status int, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, req)
		r.body = append(r.body, string(b))
		r.mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRequestsOnTheWire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name       string
		call       func(c *client.Client) error
		method     string
		rawPath    string
		wantBody   string
		wantHeader map[string]string
	}{
		{"login escapes the email", func(c *client.Client) error { _, err := c.Login(ctx, "a/b@x.io", "pw"); return err },
			"POST", "/users/a%2Fb@x.io/tokens", `{"password":"pw"}`, nil},
		{"app name escaped", func(c *client.Client) error { _, err := c.App(ctx, "my app"); return err },
			"GET", "/apps/my%20app", "", map[string]string{"Authorization": "tok"}},
		{"proxy user", func(c *client.Client) error { _, err := c.AsUser("bob@x.io").Apps(ctx); return err },
			"GET", "/apps", "", map[string]string{"Proxy-User": "bob@x.io", "Authorization": "tok"}},
		{"update with lock", func(c *client.Client) error {
			return c.UpdateApp(ctx, "a", client.AppUpdate{Instances: client.Ptr(2), MetaVersion: client.Ptr[int64](7)})
		}, "PUT", "/apps/a", `{"instances":2,"meta":{"version":7}}`, nil},
		{"file path", func(c *client.Client) error { _, err := c.File(ctx, "a", "0", "logs/x y.log"); return err },
			"GET", "/apps/a/instances/0/files/logs/x%20y.log", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var rec recorder
			srv := rec.server(t, 200, `{"token":"tok2"}`)
			c, err := client.New(srv.URL+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			c.SetToken("tok")
			_ = tt.call(c)
			if len(rec.reqs) != 1 {
				t.Fatalf("%d requests", len(rec.reqs))
			}
			r := rec.reqs[0]
			if r.Method != tt.method || r.URL.EscapedPath() != tt.rawPath {
				t.Fatalf("request = %s %s, want %s %s", r.Method, r.URL.EscapedPath(), tt.method, tt.rawPath)
			}
			if tt.wantBody != "" {
				if diff := cmp.Diff(tt.wantBody, rec.body[0]); diff != "" {
					t.Fatalf("body (-want +got):\n%s", diff)
				}
			}
			for k, v := range tt.wantHeader {
				if got := r.Header.Get(k); got != v {
					t.Fatalf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		body   string
		want   client.Error
	}{
		{404, `{"code":301,"description":"Application not found"}`, client.Error{Status: 404, Code: 301, Description: "Application not found"}},
		{404, ``, client.Error{Status: 404}},
		{500, `not json`, client.Error{Status: 500}},
	}
	for _, tt := range tests {
		var rec recorder
		srv := rec.server(t, tt.status, tt.body)
		c, _ := client.New(srv.URL, nil)
		_, err := c.App(context.Background(), "x")
		var e *client.Error
		if !errors.As(err, &e) {
			t.Fatalf("err = %v", err)
		}
		if diff := cmp.Diff(tt.want, *e); diff != "" {
			t.Fatalf("error (-want +got):\n%s", diff)
		}
		if tt.want.Code != 0 && !client.IsCode(err, tt.want.Code) {
			t.Fatal("IsCode false")
		}
	}
}

func TestPushSendsOnlyMissingFiles(t *testing.T) {
	t.Parallel()
	url, stop := startController()
	t.Cleanup(stop)
	ctx := context.Background()
	c, _ := client.New(url, nil)
	if err := c.Register(ctx, "p@x.io", "pw"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Login(ctx, "p@x.io", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateApp(ctx, client.AppRequest{Name: "p"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for i, name := range []string{"a.txt", "sub/b.txt", "sub/c.txt"} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(strings.Repeat(string(rune('a'+i)), 1000)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	first, err := c.Push(ctx, "p", dir)
	if err != nil || first.Files != 3 || first.Matched != 0 || first.Bytes != 3000 {
		t.Fatalf("first push = %+v, %v", first, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	second, err := c.Push(ctx, "p", dir)
	if err != nil || second.Matched != 2 || second.Sent >= first.Sent {
		t.Fatalf("second push = %+v (first %+v), %v", second, first, err)
	}
	fp, err := client.Fingerprint(dir)
	if err != nil || len(fp) != 3 || fp[1].Fn != "sub/b.txt" || len(fp[1].SHA1) != 40 {
		t.Fatalf("fingerprint = %+v, %v", fp, err)
	}
}
