package droplet_test

import (
	"os"
	"testing"
)

func mkdir(dir string) error { return os.Mkdir(dir, 0o755) }

func countEntries(t *testing.T, dir string) int {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(des)
}
