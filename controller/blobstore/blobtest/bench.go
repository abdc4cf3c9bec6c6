package blobtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/kiln-paas/kiln/controller/blobstore"
)

// DropletSize is the droplet size the throughput benchmarks move: a typical
// mid-sized app with its runtime.
const DropletSize = 50 << 20

// Benchmark measures store in sub-benchmarks, calling newStore once for
// each: put, add and get of a DropletSize droplet (reported in MB/s), adding
// small resource-pool files, and Stat as resource matching uses it.
func Benchmark(b *testing.B, newStore func(b *testing.B) blobstore.Blobstore) {
	droplet := Content(DropletSize, 50)
	key := SHA1(droplet)
	b.Run("PutDroplet50MB", func(b *testing.B) {
		s := newStore(b)
		b.SetBytes(DropletSize)
		for b.Loop() {
			if _, err := s.Put(b.Context(), blobstore.KindDroplet, key, bytes.NewReader(droplet)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AddDroplet50MB", func(b *testing.B) {
		s := newStore(b)
		b.SetBytes(DropletSize)
		for b.Loop() {
			if _, err := s.Add(b.Context(), blobstore.KindDroplet, bytes.NewReader(droplet)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetDroplet50MB", func(b *testing.B) {
		s := newStore(b)
		if _, err := s.Put(b.Context(), blobstore.KindDroplet, key, bytes.NewReader(droplet)); err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 256<<10)
		b.SetBytes(DropletSize)
		for b.Loop() {
			blob, err := s.Open(b.Context(), blobstore.KindDroplet, key)
			if err != nil {
				b.Fatal(err)
			}
			// A plain read loop: io.Copy would let an in-memory Blob hand
			// its bytes to io.Discard without copying them, which measures
			// nothing.
			n, err := drain(blob, buf)
			if cerr := blob.Close(); err == nil {
				err = cerr
			}
			if err != nil || n != DropletSize {
				b.Fatalf("read %d bytes: %v", n, err)
			}
		}
	})
	b.Run("AddResource4KB", func(b *testing.B) {
		s := newStore(b)
		file := Content(4096, 51)
		b.SetBytes(int64(len(file)))
		var i uint64
		for b.Loop() {
			i++
			binary.LittleEndian.PutUint64(file, i) // a new file each time
			if _, err := s.Add(b.Context(), blobstore.KindResource, bytes.NewReader(file)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("StatResource", func(b *testing.B) {
		s := newStore(b)
		in, err := s.Add(b.Context(), blobstore.KindResource, bytes.NewReader(droplet[:4096]))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := s.Stat(b.Context(), blobstore.KindResource, in.Key); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// drain reads r to its end through buf and returns the byte count.
func drain(r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
