package ingest_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/blobstore/internal/ingest"
)

const abcSHA1 = "a9993e364706816aba3e25717850c26c9cd0d89d"

func TestJob(t *testing.T) {
	tests := []struct {
		name    string
		kind    blobstore.Kind
		key     string // "" means Add
		content string
		limit   int64
		wantKey string
		wantErr error
	}{
		{"put sha1", blobstore.KindResource, abcSHA1, "abc", 0, abcSHA1, nil},
		{"put at limit", blobstore.KindResource, abcSHA1, "abc", 3, abcSHA1, nil},
		{"put over limit", blobstore.KindResource, abcSHA1, "abc", 2, "", blobstore.ErrTooLarge},
		{"put mismatch", blobstore.KindResource, abcSHA1, "abd", 0, "", blobstore.ErrHashMismatch},
		{"put name", blobstore.KindBuildCache, "app", "anything", 0, "app", nil},
		{"add", blobstore.KindDroplet, "", "abc", 0, abcSHA1, nil},
		{"add buildcache", blobstore.KindBuildCache, "", "abc", 0, "", blobstore.ErrInvalidKind},
		{"add bad kind", "x", "", "abc", 0, "", blobstore.ErrInvalidKind},
		{"put bad key", blobstore.KindDroplet, "abc", "abc", 0, "", blobstore.ErrInvalidKey},
	}
	for _, tc := range tests {
		key, err := run(t.Context(), tc.kind, tc.key, tc.content, tc.limit)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.wantErr)
		}
		if key != tc.wantKey {
			t.Errorf("%s: key %q, want %q", tc.name, key, tc.wantKey)
		}
	}
}

func run(ctx context.Context, kind blobstore.Kind, key, content string, limit int64) (string, error) {
	var job *ingest.Job
	var err error
	if key == "" {
		job, err = ingest.Add(kind)
	} else {
		job, err = ingest.Put(kind, key)
	}
	if err != nil {
		return "", err
	}
	var dst bytes.Buffer
	n, err := job.Copy(ctx, &dst, strings.NewReader(content), limit)
	if err != nil {
		return "", err
	}
	if n != int64(len(content)) || dst.String() != content {
		return "", errors.New("copy lost bytes")
	}
	return job.Finish()
}

func TestCopyCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := run(ctx, blobstore.KindResource, abcSHA1, "abc", 0); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}
