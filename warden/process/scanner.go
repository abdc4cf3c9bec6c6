package process

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// procIndex is one reading of /proc: live processes by session id and by
// process group id.
type procIndex struct {
	bySession map[int][]procStat
	byGroup   map[int][]procStat
	at        time.Time
}

// members returns the live processes of session or group id, each once.
func (x *procIndex) members(id int) []procStat {
	out := x.bySession[id]
	for _, p := range x.byGroup[id] {
		if p.Session != id {
			out = append(out, p)
		}
	}
	return out
}

// scanner reads /proc for all containers at once. Reading it costs
// milliseconds (a file per process), so concurrent callers share one
// reading, and callers that accept some staleness share a cached one.
type scanner struct {
	procRoot string

	mu      sync.Mutex
	running bool
	next    *scanCall  // the reading that starts after the current one
	last    *procIndex // the newest finished reading
	gen     uint64     // bumped by invalidate
	lastGen uint64     // gen when last started
}

type scanCall struct {
	done chan struct{}
	idx  *procIndex
	err  error
}

// fresh returns a reading started after the call: it reflects every
// change made before fresh was called.
func (s *scanner) fresh() (*procIndex, error) {
	s.mu.Lock()
	if s.next == nil {
		s.next = &scanCall{done: make(chan struct{})}
		if !s.running {
			s.running = true
			go s.loop() // ends when no reading is requested
		}
	}
	call := s.next
	s.mu.Unlock()
	<-call.done
	return call.idx, call.err
}

// recent returns a reading at most maxAge old, taken since the last
// invalidate, or a fresh one.
func (s *scanner) recent(maxAge time.Duration) (*procIndex, error) {
	s.mu.Lock()
	last, valid := s.last, s.lastGen == s.gen
	s.mu.Unlock()
	if last != nil && valid && time.Since(last.at) <= maxAge {
		return last, nil
	}
	return s.fresh()
}

// invalidate marks cached readings stale: processes were started, killed
// or reaped.
func (s *scanner) invalidate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
}

func (s *scanner) loop() {
	for {
		s.mu.Lock()
		call := s.next
		s.next = nil
		if call == nil {
			s.running = false
			s.mu.Unlock()
			return
		}
		gen := s.gen
		s.mu.Unlock()
		call.idx, call.err = readAll(s.procRoot)
		if call.err == nil {
			s.mu.Lock()
			s.last, s.lastGen = call.idx, gen
			s.mu.Unlock()
		}
		close(call.done)
	}
}

// readAll reads every live process; processes vanishing meanwhile are
// skipped.
func readAll(procRoot string) (*procIndex, error) {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", procRoot, err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", procRoot, err)
	}
	x := &procIndex{bySession: map[int][]procStat{}, byGroup: map[int][]procStat{}, at: time.Now()}
	buf := make([]byte, 1024) // a stat line is under 400 bytes
	for _, name := range names {
		if _, err := strconv.Atoi(name); err != nil {
			continue
		}
		st, err := readStatInto(procRoot+"/"+name+"/stat", buf)
		if err != nil || !st.alive() {
			continue
		}
		x.bySession[st.Session] = append(x.bySession[st.Session], st)
		if st.PGRP != st.Session {
			x.byGroup[st.PGRP] = append(x.byGroup[st.PGRP], st)
		}
	}
	return x, nil
}

// readStatInto reads a stat file with plain system calls into buf: the
// scan reads hundreds of them, and os.ReadFile's stat and allocation per
// file double the cost.
func readStatInto(path string, buf []byte) (procStat, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return procStat{}, err
	}
	n, err := unix.Read(fd, buf)
	unix.Close(fd)
	if err != nil {
		return procStat{}, err
	}
	return parseStat(buf[:n])
}
