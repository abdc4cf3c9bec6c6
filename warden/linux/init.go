package linux

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kiln-paas/kiln/warden"
)

// initEnv is the environment variable that turns a re-executed binary into
// a container's init. Init reads it.
const initEnv = "KILN_WARDEN_LINUX_INIT"

// Descriptors of the init: the backend passes them as ExtraFiles, so they
// start at 3.
const (
	initConfigFD = 3 // read: initConfig JSON
	initResultFD = 4 // write: "ok" or an error message, then closed
	initListenFD = 5 // the listening seqpacket socket
	initCgroupFD = 6 // first of initConfig.CgroupFiles (see cgroups.joinFiles)
)

// initConfig is what the backend tells a new container's init.
type initConfig struct {
	// Root is the host path of the container's root directory (its
	// writable layer), which becomes "/".
	Root string `json:"root"`
	// Binds are mounted read-only, Target relative to Root (an existing
	// directory made by the backend).
	Binds []bindMount `json:"binds,omitempty"`
	// Devices are host device paths bound into the container's /dev.
	Devices []string `json:"devices,omitempty"`
	// TmpBytes sizes /tmp and /dev/shm.
	TmpBytes uint64 `json:"tmp_bytes"`
	// Hostname is the container's UTS host name.
	Hostname string `json:"hostname"`
	// Loopback brings up "lo" (a private network namespace starts with it
	// down).
	Loopback bool `json:"loopback,omitempty"`
	// CgroupFiles is how many files follow initCgroupFD: on v1 the app
	// leaf's "tasks" files then as many of the init leaf's; on v2 the app
	// leaf's directory.
	CgroupFiles int  `json:"cgroup_files"`
	CgroupV2    bool `json:"cgroup_v2,omitempty"`
}

// bindMount is one read-only bind mount.
type bindMount struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

// Init must be called first thing in main (and in TestMain of tests that
// use this package's Backend): when the program was started by a Backend
// as a container's init, Init runs the init and exits the program;
// otherwise it returns at once. This is how the backend runs its own code
// inside new namespaces without a separate binary, as runc does with
// "runc init".
func Init() {
	switch os.Getenv(initEnv) {
	case "":
		return
	case "init":
		os.Exit(runInit())
	default:
		fmt.Fprintf(os.Stderr, "warden/linux: unknown %s=%q\n", initEnv, os.Getenv(initEnv))
		os.Exit(2)
	}
}

// runInit is the container's pid 1: it builds the root file system, then
// starts processes on request and reaps every process of the container.
func runInit() int {
	result := os.NewFile(initResultFD, "result")
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "warden/linux init: %v\n", err)
		_, _ = io.WriteString(result, err.Error())
		result.Close()
		return 1
	}
	for fd := initConfigFD; fd < initCgroupFD; fd++ {
		unix.CloseOnExec(fd)
	}
	var cfg initConfig
	if err := json.NewDecoder(os.NewFile(initConfigFD, "config")).Decode(&cfg); err != nil {
		return fail(fmt.Errorf("read config: %w", err))
	}
	cgroups := make([]*os.File, cfg.CgroupFiles)
	for i := range cgroups {
		unix.CloseOnExec(initCgroupFD + i)
		cgroups[i] = os.NewFile(uintptr(initCgroupFD+i), "cgroup.procs")
	}
	if err := setupRoot(cfg); err != nil {
		return fail(err)
	}
	// Inherited by every process: no setuid or file capability gains,
	// on top of the nosuid mounts.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fail(fmt.Errorf("no_new_privs: %w", err))
	}
	ln, err := net.FileListener(os.NewFile(initListenFD, "listener"))
	if err != nil {
		return fail(fmt.Errorf("listener: %w", err))
	}
	s := &initServer{
		cgroups: cgroups,
		v2:      cfg.CgroupV2,
		procs:   map[string]*initProc{},
		byPID:   map[int]*initProc{},
		spawned: make(chan struct{}, 1),
		forks:   make(chan func()),
	}
	go s.reap()   // runs for the life of the process
	go s.forker() // likewise
	if _, err := io.WriteString(result, "ok"); err != nil {
		return 1
	}
	result.Close()
	for {
		conn, err := ln.Accept()
		if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ECONNABORTED) {
			time.Sleep(time.Millisecond) // wait for descriptors to be released
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "warden/linux init: accept: %v\n", err)
			return 1
		}
		go s.serve(conn.(*net.UnixConn)) // ends when the request is answered
	}
}

// initServer is the state of a container's init.
type initServer struct {
	cgroups []*os.File // see initConfig.CgroupFiles
	v2      bool
	forks   chan func() // run by forker on its own thread

	mu      sync.Mutex
	procs   map[string]*initProc
	byPID   map[int]*initProc
	spawned chan struct{} // a child was started: the reaper may wait again
}

// initProc is one process started by init.
type initProc struct {
	id     string
	pid    int
	done   chan struct{} // closed when reaped
	status int
}

// reap collects every child and orphan of the container. It holds s.mu
// while recording an exit, and run holds it from fork to registration, so
// an exit is never recorded before its process is known.
func (s *initServer) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			<-s.spawned
			continue
		case err != nil:
			fmt.Fprintf(os.Stderr, "warden/linux init: wait: %v\n", err)
			<-s.spawned
			continue
		}
		s.mu.Lock()
		if p := s.byPID[pid]; p != nil {
			delete(s.byPID, pid)
			p.status = waitStatus(ws)
			close(p.done)
		}
		s.mu.Unlock()
	}
}

// waitStatus turns a wait status into a shell-style exit status.
func waitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func (s *initServer) serve(conn *net.UnixConn) {
	defer conn.Close()
	b, files, err := recv(conn, maxPacket)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if err != nil {
		return
	}
	req, err := decodeRequest(b)
	if err != nil {
		_ = send(conn, reply{Error: err.Error(), Kind: kindInvalid})
		return
	}
	switch req.Op {
	case opRun:
		s.run(conn, req, files)
	case opWait:
		s.wait(conn, req.ID)
	case opSignal:
		_ = send(conn, s.signal(req.ID, req.Signal))
	case opList:
		_ = send(conn, s.list())
	}
}

func (s *initServer) lookup(id string) *initProc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.procs[id]
}

func (s *initServer) wait(conn *net.UnixConn, id string) {
	p := s.lookup(id)
	if p == nil {
		_ = send(conn, reply{Error: "process " + id + " unknown", Kind: kindNotFound})
		return
	}
	<-p.done
	_ = send(conn, reply{PID: p.pid, Exited: true, Status: p.status})
}

func (s *initServer) signal(id string, sig int) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[id]
	if p == nil {
		return reply{Error: "process " + id + " unknown", Kind: kindNotFound}
	}
	select {
	case <-p.done:
		return reply{Error: "process " + id + " exited", Kind: kindDone}
	default:
	}
	// The process leads its own group (setsid), which its descendants
	// share unless they left it; its pid cannot be reused before the
	// reaper records its exit, which needs s.mu.
	if err := unix.Kill(-p.pid, unix.Signal(sig)); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return reply{Error: "process " + id + " exited", Kind: kindDone}
		}
		return reply{Error: fmt.Sprintf("signal %s: %v", id, err)}
	}
	return reply{}
}

func (s *initServer) list() reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := reply{Procs: []procEntry{}}
	for _, p := range s.procs {
		e := procEntry{ID: p.id, PID: p.pid}
		select {
		case <-p.done:
			e.Exited, e.Status = true, p.status
		default:
		}
		r.Procs = append(r.Procs, e)
	}
	return r
}

// run starts a process, answers with its pid (and the backend's ends of
// the pipes made for it), then with its exit status.
func (s *initServer) run(conn *net.UnixConn, req request, files []*os.File) {
	spec := req.Exec
	if want := spec.count(streamFile); len(files) != want {
		_ = send(conn, reply{Error: fmt.Sprintf("%d descriptors, want %d", len(files), want), Kind: kindInvalid})
		return
	}
	p, ours, err := s.start(req.ID, spec, files)
	// The process holds its streams now; init's copies would delay the
	// end-of-file its readers wait for until after the exit is reported.
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		r := reply{Error: err.Error()}
		var re replyError
		if errors.As(err, &re) {
			r = re.r
		}
		_ = send(conn, r)
		return
	}
	err = send(conn, reply{PID: p.pid}, ours...)
	closeAll(ours)
	if err != nil {
		return
	}
	<-p.done
	_ = send(conn, reply{PID: p.pid, Exited: true, Status: p.status})
}

// replyError is an error to report as is.
type replyError struct{ r reply }

func (e replyError) Error() string { return e.r.Error }

// forker runs fork requests on one locked OS thread that is not the
// process's main thread. On cgroup v1 a process cannot be born into a
// cgroup, but a thread can be moved alone: the forker moves its thread
// into the app cgroups, forks (the child inherits the thread's cgroups)
// and moves back. The OOM killer only considers thread group leaders, so
// init, whose leader stays in the init leaf, is never its victim.
func (s *initServer) forker() {
	runtime.LockOSThread() // never unlocked: the thread is the forker's
	if unix.Gettid() == unix.Getpid() {
		// The main thread: leave it parked and fork from another.
		go s.forker()
		select {}
	}
	for fn := range s.forks {
		fn()
	}
}

// start starts a process and returns once it runs the program, with the
// backend's ends of the pipes it made.
func (s *initServer) start(id string, spec *execSpec, files []*os.File) (*initProc, []*os.File, error) {
	prog, argv, err := program(spec)
	if err != nil {
		return nil, nil, replyError{reply{Error: err.Error(), Kind: kindNotFound}}
	}
	stdio, ours, theirs, err := streams(spec, files)
	defer closeAll(theirs)
	if err != nil {
		closeAll(ours)
		return nil, nil, err
	}
	sys := &syscall.SysProcAttr{
		Setsid:     true, // the process leads a group Signal reaches
		Credential: &syscall.Credential{Uid: spec.UID, Gid: spec.GID, Groups: []uint32{}},
	}
	if s.v2 && len(s.cgroups) == 1 {
		sys.UseCgroupFD, sys.CgroupFD = true, int(s.cgroups[0].Fd())
	}
	attr := &syscall.ProcAttr{Dir: spec.Dir, Env: spec.Env, Files: stdio, Sys: sys}
	type result struct {
		p   *initProc
		err error
	}
	res := make(chan result, 1)
	s.forks <- func() {
		p, err := s.fork(id, prog, argv, attr)
		res <- result{p, err}
	}
	r := <-res
	if r.err != nil {
		closeAll(ours)
		return nil, nil, r.err
	}
	return r.p, ours, nil
}

// streams returns the descriptors of the process's standard streams, the
// backend's ends of the pipes made for it and the files init must close
// once the process started.
func streams(spec *execSpec, files []*os.File) (fds []uintptr, ours, theirs []*os.File, err error) {
	devNull, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
	if err != nil {
		return nil, nil, nil, err
	}
	theirs = append(theirs, devNull)
	fds = make([]uintptr, 3)
	next := 0
	for n, kind := range spec.Stdio {
		switch kind {
		case streamNull:
			fds[n] = devNull.Fd()
		case streamFile:
			fds[n] = files[next].Fd()
			next++
		case streamPipe:
			r, w, err := os.Pipe()
			if err != nil {
				return nil, ours, theirs, err
			}
			if n == 0 {
				r, w = w, r // the process reads stdin
			}
			ours, theirs = append(ours, r), append(theirs, w)
			fds[n] = w.Fd()
		}
	}
	return fds, ours, theirs, nil
}

// fork runs on the forker's thread.
func (s *initServer) fork(id, prog string, argv []string, attr *syscall.ProcAttr) (*initProc, error) {
	if !s.v2 {
		half := len(s.cgroups) / 2
		if err := joinThread(s.cgroups[:half]); err != nil {
			_ = joinThread(s.cgroups[half:])
			return nil, fmt.Errorf("join app cgroup: %w", err)
		}
		defer func() {
			if err := joinThread(s.cgroups[half:]); err != nil {
				// A forker left in the app cgroup would put init's next
				// threads there: better to die and be noticed.
				fmt.Fprintf(os.Stderr, "warden/linux init: leave app cgroup: %v\n", err)
				os.Exit(1)
			}
		}()
	}
	// Held from fork to registration, so the reaper cannot record the
	// exit of a process not yet known.
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.procs[id]; ok {
		return nil, replyError{reply{Error: "process " + id + " exists", Kind: kindExists}}
	}
	pid, err := syscall.ForkExec(prog, argv, attr)
	if err != nil {
		kind := ""
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR), errors.Is(err, unix.EACCES):
			kind = kindNotFound // the working directory or the program
		case errors.Is(err, unix.EAGAIN):
			kind = kindLimit // the pids limit
		}
		return nil, replyError{reply{Error: fmt.Sprintf("start %s in %s: %v", argv[0], attr.Dir, err), Kind: kind}}
	}
	p := &initProc{id: id, pid: pid, done: make(chan struct{})}
	s.procs[id] = p
	s.byPID[pid] = p
	select {
	case s.spawned <- struct{}{}:
	default:
	}
	return p, nil
}

// joinThread moves the calling thread into the cgroups whose "tasks"
// files are given ("0" names the writer).
func joinThread(tasks []*os.File) error {
	for _, f := range tasks {
		if _, err := f.Write([]byte("0")); err != nil {
			return err
		}
	}
	return nil
}

// program resolves the program to execute and its argv, wrapping it in a
// shell that sets RLIMIT_NOFILE first when a limit is set (so there is no
// window in which the program runs without it).
func program(spec *execSpec) (string, []string, error) {
	prog, err := lookPath(spec.Path, spec.Dir, spec.Env)
	if err != nil {
		return "", nil, err
	}
	argv := append([]string{spec.Path}, spec.Args...)
	if spec.NoFile == 0 {
		return prog, argv, nil
	}
	const shell = "/bin/sh"
	if err := executable(shell); err != nil {
		return "", nil, fmt.Errorf("file descriptor limit needs %s: %w", shell, err)
	}
	wrap := []string{shell, "-c", "ulimit -n " + strconv.FormatUint(spec.NoFile, 10) + ` && exec "$0" "$@"`, prog}
	return shell, append(wrap, spec.Args...), nil
}

// lookPath finds prog: a path (relative to dir) when it holds a slash,
// else a name searched in env's PATH.
func lookPath(prog, dir string, env []string) (string, error) {
	if strings.Contains(prog, "/") {
		p := path.Join(dir, prog)
		if path.IsAbs(prog) {
			p = prog
		}
		return p, executable(p)
	}
	search, _ := warden.LookupEnv(env, "PATH")
	for _, d := range strings.Split(search, ":") {
		p := path.Join(dir, d, prog)
		if path.IsAbs(d) {
			p = path.Join(d, prog)
		}
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("program %q not in PATH %q", prog, search)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file: %w", p, fs.ErrPermission)
	}
	return nil
}
