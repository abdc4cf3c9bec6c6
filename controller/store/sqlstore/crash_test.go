package sqlstore

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-paas/kiln/controller/store"
)

// Environment of the helper process: the database path and what to do.
const (
	helperPathEnv = "KILN_SQLSTORE_HELPER_DB"
	helperModeEnv = "KILN_SQLSTORE_HELPER_MODE"
)

const (
	eventsPerApp = 20
	// bigEvents × ~1 KiB outgrows the 16-page cache the helper sets, so
	// SQLite spills uncommitted pages into the WAL before the kill.
	bigEvents = 3000
)

// TestHelperProcess is not a test: the crash tests run the test binary again
// with this test selected and the environment above set, and kill it.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperPathEnv)
	if path == "" {
		t.Skip("helper process of the crash tests")
	}
	cfg := DefaultConfig(path)
	cfg.Logger = quiet
	s, err := Open(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper open:", err)
		os.Exit(2)
	}
	switch os.Getenv(helperModeEnv) {
	case "midtx":
		helperMidTx(s)
	case "loop":
		helperLoop(s)
	}
	os.Exit(2)
}

// helperMidTx writes a large multi-record transaction, says so on stdout and
// waits, without committing, to be killed. If its parent goes away first
// (stdin closes) it exits, still without committing.
func helperMidTx(s *Store) {
	ctx := context.Background()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "PRAGMA cache_size = 16"); err != nil {
			return err
		}
		a := store.App{ID: "half", Name: "half", Owner: "a@x", State: store.AppStarted, URIs: []string{"half.com", "half2.com"}, Revision: 1}
		if err := s.createAppTx(ctx, tx, a); err != nil {
			return err
		}
		pad := strings.Repeat("x", 1024)
		for i := range bigEvents {
			if _, err := tx.ExecContext(ctx, "INSERT INTO app_events (app_id, at, type, description) VALUES (?, ?, ?, ?)",
				a.ID, i+1, "filler", pad); err != nil {
				return err
			}
		}
		fmt.Println("in-tx")
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(3) // never reached when killed; never commits either way
		return nil
	})
	fmt.Fprintln(os.Stderr, "helper tx:", err)
}

// helperLoop commits apps, each with URIs and events in one transaction,
// printing each committed index, until it is killed.
func helperLoop(s *Store) {
	ctx := context.Background()
	for i := 0; ; i++ {
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			id := "app-" + strconv.Itoa(i)
			a := store.App{ID: id, Name: id, Owner: "a@x", State: store.AppStarted, Revision: 1,
				URIs: []string{id + ".a.com", id + ".b.com", id + ".c.com"}}
			if err := s.createAppTx(ctx, tx, a); err != nil {
				return err
			}
			for j := range eventsPerApp {
				if _, err := tx.ExecContext(ctx, "INSERT INTO app_events (app_id, at, type, description) VALUES (?, ?, ?, ?)",
					id, j+1, "e", strings.Repeat("y", 200)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper loop:", err)
			return
		}
		fmt.Println(i)
	}
}

// startHelper runs the test binary as a helper in mode on path and returns
// it with a reader of its stdout. The process is killed at cleanup if still
// running.
func startHelper(t *testing.T, path, mode string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperPathEnv+"="+path, helperModeEnv+"="+mode)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		cancel()
	})
	return cmd, bufio.NewScanner(stdout)
}

// kill SIGKILLs the helper and waits for it to be gone.
func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill helper: %v", err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != -1 {
		t.Fatalf("helper ended with %v, want killed by a signal", err)
	}
}

func integrityOK(t *testing.T, s *Store) {
	t.Helper()
	var res string
	if err := s.DB().QueryRow("PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check = %q, %v", res, err)
	}
	var fk int
	rows, err := s.DB().Query("PRAGMA foreign_key_check")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		fk++
	}
	_ = rows.Close()
	if fk != 0 {
		t.Fatalf("foreign_key_check found %d dangling rows", fk)
	}
}

func count(t *testing.T, s *Store, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.DB().QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestCrashMidTransaction kills a writer whose large transaction has already
// spilled pages into the WAL, and shows the database intact with none of it.
func TestCrashMidTransaction(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kiln.db")
	s := openSQLite(t, path)
	before, err := s.CreateApp(ctx, store.App{Name: "before", Owner: "a@x", State: store.AppStarted, URIs: []string{"before.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	cmd, out := startHelper(t, path, "midtx")
	if !out.Scan() || out.Text() != "in-tx" {
		t.Fatalf("helper did not reach its transaction: %q %v", out.Text(), out.Err())
	}
	wal, err := os.Stat(path + "-wal")
	if err != nil || wal.Size() < 1<<20 {
		t.Fatalf("WAL holds %v bytes (%v): want uncommitted pages spilled to disk before the kill", wal, err)
	}
	kill(t, cmd)

	s = openSQLite(t, path)
	integrityOK(t, s)
	if _, err := s.GetApp(ctx, "half"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("half-written app visible: %v", err)
	}
	for table, want := range map[string]int{"apps": 1, "app_uris": 1, "app_events": 0} {
		if n := count(t, s, "SELECT COUNT(*) FROM "+table); n != want {
			t.Errorf("%s has %d rows after the crash, want %d", table, n, want)
		}
	}
	if got, err := s.GetApp(ctx, before.ID); err != nil || got.URIs[0] != "before.com" {
		t.Errorf("committed app damaged: %+v, %v", got, err)
	}
	if _, err := s.CreateApp(ctx, store.App{Name: "half", Owner: "a@x", State: store.AppStopped, URIs: []string{"half.com"}}); err != nil {
		t.Errorf("uri of the lost transaction not free: %v", err)
	}
}

// TestCrashDuringCommits kills a writer committing one multi-record
// transaction after another, at an arbitrary moment, and shows that every
// app in the database is whole and none it reported committed is missing.
func TestCrashDuringCommits(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kiln.db")
	if err := openSQLite(t, path).Close(); err != nil {
		t.Fatal(err)
	}
	cmd, out := startHelper(t, path, "loop")
	last := -1
	for last < 30 && out.Scan() {
		n, err := strconv.Atoi(out.Text())
		if err != nil {
			t.Fatalf("helper said %q", out.Text())
		}
		last = n
	}
	if last < 30 {
		t.Fatalf("helper stopped after %d commits: %v", last+1, out.Err())
	}
	kill(t, cmd)

	s := openSQLite(t, path)
	integrityOK(t, s)
	p, err := s.ListApps(ctx, "", store.ListOptions{Limit: store.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) <= last {
		t.Errorf("%d apps after the crash, but the helper reported %d commits", len(p.Items), last+1)
	}
	for _, a := range p.Items {
		if len(a.URIs) != 3 {
			t.Errorf("app %s lists %d uris", a.ID, len(a.URIs))
		}
		if n := count(t, s, "SELECT COUNT(*) FROM app_uris WHERE app_id = ?", a.ID); n != 3 {
			t.Errorf("app %s holds %d uri rows, want 3", a.ID, n)
		}
		if n := count(t, s, "SELECT COUNT(*) FROM app_events WHERE app_id = ?", a.ID); n != eventsPerApp {
			t.Errorf("app %s has %d events, want %d", a.ID, n, eventsPerApp)
		}
	}
	if n := count(t, s, "SELECT COUNT(*) FROM app_events"); n != eventsPerApp*len(p.Items) {
		t.Errorf("%d events in all for %d apps: orphans from a partial transaction", n, len(p.Items))
	}
}
