package controllertest

import (
	"io/fs"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAppDir(t *testing.T) {
	files := map[string]string{"index.html": "hi", "lib/deep/a.txt": "a"}
	dir := AppDir(t, files)
	got := map[string]string{}
	err := fs.WalkDir(os.DirFS(dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(dir + "/" + p)
		got[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(files, got); d != "" {
		t.Errorf("files (-want +got):\n%s", d)
	}
}
