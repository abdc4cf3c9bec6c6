package fake

import (
	"errors"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-paas/kiln/warden"
)

// command is one parsed simple command of the shell vocabulary.
type command struct {
	argv       []string
	redirect   string // "" or the container path output goes to
	append     bool   // ">>" rather than ">"
	background bool   // ended by "&"
	andNext    bool   // followed by "&&"
}

// program is what the fake shell runs: parsed commands, or a syntax error
// to report with status 2 as sh would.
type program struct {
	cmds      []command
	syntaxErr string
}

// builtins is the whole vocabulary; see the package documentation.
var builtins = map[string]bool{
	"exit": true, "echo": true, "pwd": true, "sleep": true,
	"trap": true, "cat": true, "ulimit": true, "wait": true,
}

// direct lists the vocabulary commands also accepted as a program run
// without a shell.
var direct = map[string]bool{"echo": true, "cat": true, "sleep": true, "pwd": true}

// parseProgram decides whether spec is in the shell vocabulary and parses
// it, expanding variables from env (the process's merged environment; the
// vocabulary has no assignments, so expanding up front is exact).
func parseProgram(spec warden.ProcessSpec, env []string) (program, bool) {
	base := path.Base(spec.Path)
	if direct[base] {
		return program{cmds: []command{{argv: append([]string{base}, spec.Args...)}}}, true
	}
	if (base != "sh" && base != "bash") || len(spec.Args) < 2 || spec.Args[0] != "-c" {
		return program{}, false
	}
	return parseScript(spec.Args[1], env)
}

// parseScript parses script, expanding variables from env. ok is false
// when the script uses something outside the vocabulary.
func parseScript(script string, env []string) (program, bool) {
	p := &parser{src: script, env: env}
	cmds, err := p.parse()
	if errors.Is(err, errUnsupported) {
		return program{}, false
	}
	if err != nil {
		return program{syntaxErr: err.Error()}, true
	}
	for _, c := range cmds {
		if len(c.argv) == 0 {
			continue
		}
		if !builtins[c.argv[0]] {
			return program{}, false
		}
		if c.argv[0] == "trap" && (len(c.argv) < 3 || (c.argv[1] != "" && c.argv[1] != "-")) {
			return program{}, false
		}
		if c.argv[0] == "ulimit" && (len(c.argv) != 2 || c.argv[1] != "-n") {
			return program{}, false
		}
	}
	return program{cmds: cmds}, true
}

var errUnsupported = errors.New("unsupported syntax")

// parser splits a script into commands and words.
type parser struct {
	src string
	i   int
	env []string

	cmds   []command
	cur    command
	word   strings.Builder
	inWord bool // a word is being built (even if empty, when quoted)
	redir  int  // 0: none, 1: next word is a ">" target, 2: ">>"
}

func (p *parser) parse() ([]command, error) {
	for p.i < len(p.src) {
		ch := p.src[p.i]
		switch {
		case ch == '\'':
			end := strings.IndexByte(p.src[p.i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated quoted string")
			}
			p.word.WriteString(p.src[p.i+1 : p.i+1+end])
			p.inWord = true
			p.i += end + 2
		case ch == '"':
			if err := p.doubleQuoted(); err != nil {
				return nil, err
			}
		case ch == '$':
			p.expand()
		case ch == ' ' || ch == '\t':
			p.endWord()
			p.i++
		case ch == ';' || ch == '\n':
			p.endCommand()
			p.i++
		case ch == '&':
			if strings.HasPrefix(p.src[p.i:], "&&") {
				p.cur.andNext = true
				p.i += 2
			} else {
				p.cur.background = true
				p.i++
			}
			p.endCommand()
		case ch == '>':
			p.endWord()
			p.redir = 1
			p.i++
			if p.i < len(p.src) && p.src[p.i] == '>' {
				p.redir = 2
				p.i++
			}
		case ch == '|' || ch == '<' || ch == '(' || ch == ')' || ch == '`' || ch == '\\':
			return nil, errUnsupportedAt(ch)
		default:
			p.word.WriteByte(ch)
			p.inWord = true
			p.i++
		}
	}
	p.endCommand()
	return p.cmds, nil
}

func errUnsupportedAt(ch byte) error {
	return errors.Join(errUnsupported, errors.New("character "+strconv.QuoteRune(rune(ch))))
}

func (p *parser) doubleQuoted() error {
	p.i++
	p.inWord = true
	for p.i < len(p.src) {
		switch ch := p.src[p.i]; ch {
		case '"':
			p.i++
			return nil
		case '$':
			p.expand()
		default:
			p.word.WriteByte(ch)
			p.i++
		}
	}
	return errors.New("unterminated quoted string")
}

// expand reads $NAME or ${NAME} at p.i.
func (p *parser) expand() {
	p.i++
	braced := p.i < len(p.src) && p.src[p.i] == '{'
	if braced {
		p.i++
	}
	start := p.i
	for p.i < len(p.src) && isNameByte(p.src[p.i], p.i == start) {
		p.i++
	}
	name := p.src[start:p.i]
	if braced && p.i < len(p.src) && p.src[p.i] == '}' {
		p.i++
	}
	if name == "" {
		p.word.WriteByte('$')
		p.inWord = true
		return
	}
	v, _ := warden.LookupEnv(p.env, name)
	p.word.WriteString(v)
	// An unquoted expansion to nothing yields no word, as in sh; a quoted
	// one already set inWord.
	if v != "" {
		p.inWord = true
	}
}

func isNameByte(c byte, first bool) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
}

func (p *parser) endWord() {
	if !p.inWord {
		return
	}
	w := p.word.String()
	p.word.Reset()
	p.inWord = false
	switch p.redir {
	case 0:
		p.cur.argv = append(p.cur.argv, w)
	default:
		p.cur.redirect = w
		p.cur.append = p.redir == 2
		p.redir = 0
	}
}

func (p *parser) endCommand() {
	p.endWord()
	if len(p.cur.argv) > 0 {
		p.cmds = append(p.cmds, p.cur)
	}
	p.cur = command{}
}

// shell is the state of one running script (or background job).
type shell struct {
	p      *process
	t      *task
	jobs   []*task
	status int
}

// runShell runs prog on p's main task and returns the exit status.
func (p *process) runShell(prog program) int {
	sh := &shell{p: p, t: p.main}
	if prog.syntaxErr != "" {
		p.errw.Write([]byte("sh: syntax error: " + prog.syntaxErr + "\n"))
		return 2
	}
	for i, c := range prog.cmds {
		if i > 0 && prog.cmds[i-1].andNext && sh.status != 0 {
			continue
		}
		if c.background {
			sh.background(c)
			continue
		}
		st, exited := sh.run(c)
		sh.status = st
		if exited {
			return st
		}
	}
	return sh.status
}

// background starts c as a job in p's process group.
func (sh *shell) background(c command) {
	job, err := sh.p.spawn(sh.t, func(t *task) int {
		st, _ := (&shell{p: sh.p, t: t}).run(c)
		return st
	})
	if err != nil {
		sh.p.errw.Write([]byte("sh: cannot start job: " + err.Error() + "\n"))
		sh.status = 1
		return
	}
	sh.jobs = append(sh.jobs, job)
	sh.status = 0
}

// run executes one command; exited reports that the script must end
// (exit, or a fatal signal) with the returned status.
func (sh *shell) run(c command) (status int, exited bool) {
	out := io.Writer(sh.p.out)
	if c.redirect != "" {
		w, err := sh.redirect(c.redirect, c.append)
		if err != nil {
			sh.p.errw.Write([]byte("sh: " + err.Error() + "\n"))
			return 1, false
		}
		out = w
	}
	switch args := c.argv[1:]; c.argv[0] {
	case "exit":
		if len(args) == 0 {
			return sh.status, true
		}
		n, err := strconv.Atoi(args[0])
		if err != nil {
			return 2, true
		}
		return n & 0xff, true
	case "echo":
		nl := "\n"
		if len(args) > 0 && args[0] == "-n" {
			nl, args = "", args[1:]
		}
		_, _ = io.WriteString(out, strings.Join(args, " ")+nl)
	case "pwd":
		_, _ = io.WriteString(out, sh.p.dir+"\n")
	case "sleep":
		return sh.sleep(args)
	case "trap":
		return sh.trap(args[0] == "", args[1:]), false
	case "cat":
		return sh.cat(out, args)
	case "ulimit":
		sh.p.c.mu.Lock()
		n := sh.p.c.limits.FileDescriptors
		sh.p.c.mu.Unlock()
		v := "unlimited"
		if n > 0 {
			v = strconv.FormatUint(n, 10)
		}
		_, _ = io.WriteString(out, v+"\n")
	case "wait":
		for _, j := range sh.jobs {
			if st, killed := sh.t.block(-1, j.done); killed {
				return st, true
			}
		}
	}
	return 0, false
}

func (sh *shell) sleep(args []string) (int, bool) {
	if len(args) != 1 {
		sh.p.errw.Write([]byte("sleep: missing operand\n"))
		return 1, false
	}
	secs, err := strconv.ParseFloat(args[0], 64)
	if err != nil || secs < 0 {
		sh.p.errw.Write([]byte("sleep: invalid time interval '" + args[0] + "'\n"))
		return 1, false
	}
	if st, killed := sh.t.block(time.Duration(secs*float64(time.Second)), nil); killed {
		return st, true
	}
	return 0, false
}

var signalNames = map[string]warden.Signal{
	"HUP": warden.SignalHangup, "INT": warden.SignalInterrupt, "QUIT": warden.SignalQuit,
	"USR1": warden.SignalUser1, "USR2": warden.SignalUser2, "TERM": warden.SignalTerminate,
}

func (sh *shell) trap(ignore bool, sigs []string) int {
	for _, name := range sigs {
		sig, ok := signalNames[strings.TrimPrefix(strings.ToUpper(name), "SIG")]
		if !ok {
			if n, err := strconv.Atoi(name); err == nil && n != int(warden.SignalKill) {
				sig, ok = warden.Signal(n), true
			}
		}
		if !ok {
			sh.p.errw.Write([]byte("trap: " + name + ": bad trap\n"))
			return 1
		}
		sh.t.ignore(sig, ignore)
	}
	return 0
}

func (sh *shell) cat(out io.Writer, files []string) (int, bool) {
	if len(files) == 0 {
		return sh.catStdin(out)
	}
	status := 0
	for _, f := range files {
		c := sh.p.c
		c.mu.Lock()
		_, n, err := c.fs.lookup(sh.abs(f))
		var data []byte
		if err == nil && n.kind == kindFile {
			data = n.data // never modified in place, only appended to or replaced
		}
		c.mu.Unlock()
		switch {
		case err != nil:
			sh.p.errw.Write([]byte("cat: " + f + ": No such file or directory\n"))
			status = 1
		case n.kind != kindFile:
			sh.p.errw.Write([]byte("cat: " + f + ": Is a directory\n"))
			status = 1
		default:
			_, _ = out.Write(data)
		}
	}
	return status, false
}

// catStdin copies standard input; only the main task has one.
func (sh *shell) catStdin(out io.Writer) (int, bool) {
	if sh.p.stdin == nil || sh.t != sh.p.main {
		return 0, false
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, sh.p.stdin)
	}()
	if st, killed := sh.t.block(-1, copied); killed {
		return st, true
	}
	return 0, false
}

// abs turns a path relative to the working directory into a container path.
func (sh *shell) abs(f string) string {
	if strings.HasPrefix(f, "/") {
		return f
	}
	return path.Join(sh.p.dir, f)
}

// redirect opens a redirection target.
func (sh *shell) redirect(f string, appendMode bool) (io.Writer, error) {
	if f == "/dev/null" {
		return io.Discard, nil
	}
	o := &output{c: sh.p.c, path: sh.abs(f)}
	if !appendMode {
		c := sh.p.c
		c.mu.Lock()
		defer c.mu.Unlock()
		clean, err := warden.CleanPath(o.path)
		if err != nil {
			return nil, err
		}
		if err := c.fs.writeFile(clean, nil, 0o644, c.limits.DiskBytes); err != nil {
			return nil, err
		}
	}
	return o, nil
}
