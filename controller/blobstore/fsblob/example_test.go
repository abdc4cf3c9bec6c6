package fsblob_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/kiln-paas/kiln/controller/blobstore"
	"github.com/kiln-paas/kiln/controller/blobstore/fsblob"
)

// Store a droplet whose SHA-1 staging computed, then serve part of it as a
// resumed download would ask for.
func Example() {
	dir, err := os.MkdirTemp("", "blobs")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	s, err := fsblob.New(fsblob.DefaultConfig(dir))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	droplet := []byte("pretend this is a tgz")
	const sha1 = "8c17bd1fc7d2ca7a3b3f8ef3d97a1a6ab1f7bcd1" // not its digest

	_, err = s.Put(ctx, blobstore.KindDroplet, sha1, bytes.NewReader(droplet))
	fmt.Println("wrong hash:", errors.Is(err, blobstore.ErrHashMismatch))

	in, err := s.Add(ctx, blobstore.KindDroplet, bytes.NewReader(droplet))
	if err != nil {
		panic(err)
	}
	fmt.Println("stored as", in.Key, in.Size)

	b, err := s.Open(ctx, blobstore.KindDroplet, in.Key)
	if err != nil {
		panic(err)
	}
	defer b.Close()
	if _, err := b.Seek(16, io.SeekStart); err != nil {
		panic(err)
	}
	rest, _ := io.ReadAll(b)
	fmt.Printf("resumed: %q\n", rest)
	// Output:
	// wrong hash: true
	// stored as 3c60328bebbcc299cbd5b5161ecbb19dbd242ad4 21
	// resumed: "a tgz"
}
