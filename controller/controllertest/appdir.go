package controllertest

import (
	"os"
	"path/filepath"
	"testing"
)

// AppDir writes an app to a new temporary directory of tb and returns its
// path: files maps slash-separated paths to contents. It fails tb when a
// file cannot be written.
func AppDir(tb testing.TB, files map[string]string) string {
	tb.Helper()
	dir := tb.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}
