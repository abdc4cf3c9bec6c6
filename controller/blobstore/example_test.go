package blobstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/blobstore/memblob"
)

// Resource matching during a push: the client lists its files' SHA-1s and
// sizes; the controller answers with those the pool already has, so only the
// rest is uploaded.
func Example() {
	s, err := memblob.New(memblob.DefaultConfig())
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	// An earlier push left one file in the pool.
	in, err := s.Add(ctx, blobstore.KindResource, strings.NewReader("puts 'hello'\n"))
	if err != nil {
		panic(err)
	}

	type resource struct {
		SHA1 string
		Size int64
	}
	offered := []resource{
		{in.Key, in.Size},
		{"0000000000000000000000000000000000000000", 10},
		{"../../etc/passwd", 10},
	}
	for _, r := range offered {
		st, err := s.Stat(ctx, blobstore.KindResource, r.SHA1)
		switch {
		case errors.Is(err, blobstore.ErrInvalidKey):
			fmt.Println("rejected", r.SHA1)
		case err == nil && st.Size == r.Size:
			fmt.Println("have", r.SHA1)
		default:
			fmt.Println("upload", r.SHA1)
		}
	}
	// Output:
	// have 960c301372688ad73d7999edb705dc8c607eb857
	// upload 0000000000000000000000000000000000000000
	// rejected ../../etc/passwd
}
