package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kiln-paas/kiln/controller/client"
)

// Exit codes scripts can rely on. They are part of the CLI's contract:
// never renumber them.
const (
	exitOK          = 0   // success
	exitError       = 1   // any other failure (network, server error, ...)
	exitUsage       = 2   // bad command line, or a required value missing with no terminal to ask
	exitNotFound    = 3   // the app, service, user, file or droplet does not exist
	exitForbidden   = 4   // not logged in, bad credentials or not allowed
	exitConflict    = 5   // the name or URL is taken, or the resource changed or is in use
	exitStaging     = 6   // staging the app failed
	exitStartFailed = 7   // the app's instances crashed or did not all start in time
	exitQuota       = 8   // the account's quota (memory, apps, URIs, services) is exhausted
	exitInterrupted = 130 // interrupted before the command finished, as shells report SIGINT
)

// exitErr carries the exit code of a failed command.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

// withCode marks err with an exit code.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitErr{code: code, err: err}
}

// usagef returns a usage error.
func usagef(format string, a ...any) error {
	return withCode(exitUsage, fmt.Errorf(format, a...))
}

var (
	// errStaging is wrapped when the controller could not stage an app.
	errStaging = errors.New("staging failed")
	// errStart is wrapped when an app's instances did not all start.
	errStart = errors.New("app failed to start")
	// errNotFound is wrapped when a named thing does not exist.
	errNotFound = errors.New("not found")
	// errNotLoggedIn is returned by commands that need a token when none
	// is stored for the target.
	errNotLoggedIn = errors.New("not logged in: run kiln login")
)

// classify maps an error to its exit code.
func classify(err error) int {
	var ee *exitErr
	if errors.As(err, &ee) {
		return ee.code
	}
	switch {
	case errors.Is(err, errStaging):
		return exitStaging
	case errors.Is(err, errStart), errors.Is(err, client.ErrNotRunning):
		return exitStartFailed
	case errors.Is(err, errNotFound):
		return exitNotFound
	case errors.Is(err, errNotLoggedIn):
		return exitForbidden
	}
	var ce *client.Error
	if !errors.As(err, &ce) {
		return exitError
	}
	switch ce.Code {
	case 201, 301, 303, 304, 311, 500, 501, 502, 507:
		return exitNotFound
	case 102, 312, 506, 701:
		return exitConflict
	case 504, 600, 601, 602:
		return exitQuota
	case 310, 402, 800, 801:
		return exitStaging
	case 100, 300:
		if strings.Contains(ce.Description, "already exists") {
			return exitConflict
		}
	}
	switch {
	case ce.Status == 404:
		return exitNotFound
	case ce.Status == 401 || ce.Status == 403:
		return exitForbidden
	case ce.Status == 409:
		return exitConflict
	}
	return exitError
}

// isTerminal reports whether f is an *os.File attached to a terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	return nil
}

// table writes aligned columns under a header.
func table(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

// progress reports the progress of a long step: a redrawn bar on a
// terminal, a line per step (at most every 10%) otherwise, so that logs
// of scripted runs stay short.
type progress struct {
	w     io.Writer
	tty   bool
	label string
	total int64
	last  int // last reported tenth, for plain output
}

func newProgress(w io.Writer, tty bool, label string, total int64) *progress {
	return &progress{w: w, tty: tty, label: label, total: total, last: -1}
}

// set reports that done of total units are finished.
func (p *progress) set(done int64) {
	if p.total <= 0 {
		return
	}
	frac := float64(done) / float64(p.total)
	frac = min(max(frac, 0), 1)
	if p.tty {
		const width = 30
		n := int(frac * width)
		fmt.Fprintf(p.w, "\r%s [%s%s] %3d%%", p.label, strings.Repeat("=", n), strings.Repeat(" ", width-n), int(frac*100))
		return
	}
	if tenth := int(frac * 10); tenth > p.last {
		p.last = tenth
		fmt.Fprintf(p.w, "%s %d%%\n", p.label, tenth*10)
	}
}

// done ends the bar with a result word.
func (p *progress) done(result string) {
	if p.tty {
		fmt.Fprintf(p.w, "\r%s %s\033[K\n", p.label, result)
		return
	}
	fmt.Fprintf(p.w, "%s %s\n", p.label, result)
}

// humanBytes formats a byte count.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fK", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

// humanMB formats a size in megabytes as the CLI accepts it.
func humanMB(mb int) string {
	if mb >= 1024 && mb%1024 == 0 {
		return fmt.Sprintf("%dG", mb/1024)
	}
	return fmt.Sprintf("%dM", mb)
}

// since formats a Unix time as an age.
func since(now time.Time, unix int64) string {
	if unix <= 0 {
		return "-"
	}
	d := now.Sub(time.Unix(unix, 0)).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}
