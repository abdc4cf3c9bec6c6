package warden_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kiln-paas/kiln/warden"
)

// tarOf builds a tar stream of headers, each file holding its name.
func tarOf(t *testing.T, hs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hs {
		var body []byte
		if h.Typeflag == tar.TypeReg {
			body = []byte(h.Name)
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWalkTar(t *testing.T) {
	t.Parallel()
	fileH := func(name string) *tar.Header { return &tar.Header{Name: name, Typeflag: tar.TypeReg} }
	boom := errors.New("boom")
	tests := []struct {
		name    string
		stream  []byte
		failOn  string   // entry whose extract returns boom
		want    []string // "name=content" seen, in order
		wantErr error
	}{
		{"files and dirs", tarOf(t, &tar.Header{Name: "d/", Typeflag: tar.TypeDir}, fileH("d/f"), fileH("./g")),
			"", []string{"app/d=", "app/d/f=d/f", "app/g=./g"}, nil},
		{"empty stream", tarOf(t), "", nil, nil},
		{"absolute name", tarOf(t, fileH("ok"), fileH("/etc/passwd")), "", []string{"app/ok=ok"}, warden.ErrInvalidPath},
		{"dot-dot", tarOf(t, fileH("../x")), "", nil, warden.ErrInvalidPath},
		{"extract error stops the walk", tarOf(t, fileH("a"), fileH("b"), fileH("c")), "app/b", []string{"app/a=a", "app/b=b"}, boom},
		{"truncated", tarOf(t, fileH("a"), fileH("b"))[:1024+100], "", []string{"app/a=a"}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var seen []string
			err := warden.WalkTar(context.Background(), bytes.NewReader(tt.stream), "app", func(h *tar.Header, name string, content io.Reader) error {
				b, err := io.ReadAll(content)
				if err != nil {
					return err
				}
				seen = append(seen, name+"="+string(b))
				if name == tt.failOn {
					return boom
				}
				return nil
			})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Errorf("WalkTar = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, seen); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWalkTarStopsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	stream := tarOf(t, &tar.Header{Name: "a", Typeflag: tar.TypeReg}, &tar.Header{Name: "b", Typeflag: tar.TypeReg})
	var n int
	err := warden.WalkTar(ctx, bytes.NewReader(stream), ".", func(*tar.Header, string, io.Reader) error {
		n++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Errorf("WalkTar after cancel = %v with %d entries, want context.Canceled after 1", err, n)
	}
}
