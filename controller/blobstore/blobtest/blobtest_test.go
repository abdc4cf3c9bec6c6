package blobtest_test

import (
	"testing"

	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/blobstore/blobtest"
)

// TestBadKeysAreBad keeps the suite's own table honest: every key it expects
// stores to reject must fail ValidateKey.
func TestBadKeysAreBad(t *testing.T) {
	for _, kind := range blobstore.Kinds() {
		for _, key := range blobtest.BadKeys(kind) {
			if blobstore.ValidateKey(kind, key) == nil {
				t.Errorf("BadKeys(%s) lists %q, which ValidateKey accepts", kind, key)
			}
		}
	}
}

func TestContent(t *testing.T) {
	a, b := blobtest.Content(1001, 1), blobtest.Content(1001, 1)
	if string(a) != string(b) || len(a) != 1001 || cap(a) != 1001 {
		t.Error("Content is not deterministic or has the wrong length")
	}
	if string(a) == string(blobtest.Content(1001, 2)) {
		t.Error("Content ignores its seed")
	}
}
