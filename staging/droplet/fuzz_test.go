package droplet_test

import (
	"archive/tar"
	"bytes"
	"testing"

	"github.com/kiln-paas/kiln/staging/droplet"
)

// FuzzExtract feeds arbitrary bytes to ReadInfo and Extract: they must not
// panic, and whatever Extract writes stays inside its directory (os.Root
// enforces it; the fuzzer checks nothing escapes into the parent).
func FuzzExtract(f *testing.F) {
	app := tarOf(f, []entry{{name: "a", typ: tar.TypeReg, body: "x"}, {name: "l", typ: tar.TypeSymlink, link: "a"}})
	var good bytes.Buffer
	if _, err := droplet.Pack(&good, sampleInfo, bytes.NewReader(app)); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add(gz(f, tarOf(f, []entry{{name: "app/../../x", typ: tar.TypeReg}})))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = droplet.ReadInfo(bytes.NewReader(b))
		parent := t.TempDir()
		dir := parent + "/d"
		if err := mkdir(dir); err != nil {
			t.Fatal(err)
		}
		_, _ = droplet.Extract(bytes.NewReader(b), dir)
		if n := countEntries(t, parent); n != 1 {
			t.Fatalf("Extract wrote outside its directory: %d entries in parent", n)
		}
	})
}
