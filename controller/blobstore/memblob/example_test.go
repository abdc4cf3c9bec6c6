package memblob_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/blobstore/memblob"
)

// A fake blobstore for a test: store a build cache under the app's id and
// read its size back.
func Example() {
	s, err := memblob.New(memblob.DefaultConfig())
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if _, err := s.Put(ctx, blobstore.KindBuildCache, "app-7", strings.NewReader("cached gems")); err != nil {
		panic(err)
	}
	in, err := s.Stat(ctx, blobstore.KindBuildCache, "app-7")
	fmt.Println(in.Key, in.Size, err)
	// Output: app-7 11 <nil>
}
