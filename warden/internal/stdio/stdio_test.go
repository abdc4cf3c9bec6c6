package stdio

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writes hands every write to the test, in order.
type writes chan string

func (w writes) Write(p []byte) (int, error) {
	w <- string(p)
	return len(p), nil
}

// await reads from w until what was written adds up to want.
func (w writes) await(t *testing.T, want string) {
	t.Helper()
	var got strings.Builder
	timeout := time.After(5 * time.Second)
	for got.String() != want {
		select {
		case s := <-w:
			got.WriteString(s)
		case <-timeout:
			t.Fatalf("got %q, want %q", got.String(), want)
		}
	}
}

type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, errors.New("broken") }

func TestFanout(t *testing.T) {
	var a, b bytes.Buffer
	f := NewFanout(&a, brokenWriter{})
	if n, err := f.Write([]byte("one ")); n != 4 || err != nil {
		t.Errorf("Write = %d, %v; want 4, nil despite a broken writer", n, err)
	}
	f.Add(&b)
	_, _ = f.Write([]byte("two"))
	if a.String() != "one two" || b.String() != "two" {
		t.Errorf("writers got %q and %q, want %q and %q", a.String(), b.String(), "one two", "two")
	}
}

func TestFollow(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out")
	w, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	got := make(writes, 16)
	exited := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		Follow(r, got, exited, time.Millisecond)
	}()
	_, _ = w.WriteString("early ")
	got.await(t, "early ")
	_, _ = w.WriteString("last")
	close(exited)
	<-done
	got.await(t, "last")
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Follow left its file open: %v", err)
	}
}

func TestOutputAttach(t *testing.T) {
	rootfs := t.TempDir()
	p := filepath.Join(rootfs, "log")
	if err := os.WriteFile(p, []byte("before "), 0o644); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	fromFile := make(writes, 16)
	var fromPipe bytes.Buffer // written to synchronously by fo
	Output{Path: "/log"}.Attach(rootfs, fromFile, exited, time.Millisecond)
	fo := NewFanout()
	Output{Fanout: fo}.Attach(rootfs, &fromPipe, exited, time.Millisecond)
	Output{Path: "/missing"}.Attach(rootfs, fromFile, exited, time.Millisecond) // ignored
	Output{}.Attach(rootfs, fromFile, exited, time.Millisecond)                 // ignored

	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, _ = f.WriteString("after")
	_, _ = fo.Write([]byte("piped"))
	close(exited)
	fromFile.await(t, "after")
	if fromPipe.String() != "piped" {
		t.Errorf("fan-out writer got %q", fromPipe.String())
	}
}

func TestStreamsPipesAndFiles(t *testing.T) {
	rootfs := t.TempDir()
	r, err := os.OpenRoot(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := &Streams{FollowPoll: time.Millisecond}
	defer s.CloseChildEnds()
	var out, logged bytes.Buffer // read after Drain
	// Output to a file in a missing directory, followed into logged.
	child, err := s.OpenFile(r, "/logs/out", &logged)
	if err != nil {
		t.Fatal(err)
	}
	// A pipe fed by the "process", copied into out.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.ChildEnd(pw)
	s.Pipe(pr, NewFanout(&out))
	// Standard input copied into a pipe the "process" reads.
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.Stdin(inW, strings.NewReader("input"))

	exited := make(chan struct{})
	s.Start(exited)
	gotIn, err := io.ReadAll(inR)
	if err != nil || string(gotIn) != "input" {
		t.Errorf("stdin delivered %q, %v", gotIn, err)
	}
	inR.Close()
	_, _ = pw.WriteString("to pipe")
	_, _ = child.WriteString("to file")
	s.CloseChildEnds() // the "process" exits: EOF on the pipe
	close(exited)
	s.Drain(5*time.Second, nil)
	if out.String() != "to pipe" || logged.String() != "to file" {
		t.Errorf("delivered %q and %q, want %q and %q", out.String(), logged.String(), "to pipe", "to file")
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "logs/out")); err != nil || string(b) != "to file" {
		t.Errorf("output file holds %q, %v", b, err)
	}
}

func TestDrainGivesUp(t *testing.T) {
	tests := []struct {
		name string
		more func() time.Duration
	}{
		{"no extension", nil},
		{"zero extension", func() time.Duration { return 0 }},
		{"short extension", func() time.Duration { return time.Millisecond }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pw.Close() // held by an "orphan": no EOF while Drain runs
			s := &Streams{}
			s.Pipe(pr, NewFanout())
			s.Start(make(chan struct{}))
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.Drain(time.Millisecond, tc.more)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Drain did not give up")
			}
		})
	}
}

func TestDrainExtended(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer // read after Drain
	s := &Streams{}
	s.Pipe(pr, NewFanout(&out))
	s.Start(make(chan struct{}))
	asked := make(chan struct{})
	go func() {
		<-asked
		_, _ = pw.WriteString("late")
		pw.Close()
	}()
	s.Drain(time.Millisecond, func() time.Duration {
		close(asked) // the output ends only after the timeout
		return time.Minute
	})
	if out.String() != "late" {
		t.Errorf("Drain returned before the extended output: %q", out.String())
	}
}

func TestAbortClosesOurEnds(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	s := &Streams{}
	s.Pipe(pr, NewFanout())
	s.Abort()
	if _, err := pr.Read(make([]byte, 1)); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Abort left the read end open: %v", err)
	}
}
