package process

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat. The kernel fixes
// it at 100 for user space whatever CONFIG_HZ is, so no sysconf is needed.
const userHZ = 100

// procStat is what the backend reads from /proc/<pid>/stat.
type procStat struct {
	PID     int
	State   byte // R, S, D, Z, T, ...
	PGRP    int
	Session int
	// CPUTicks is utime+stime+cutime+cstime: the process's own CPU time
	// plus that of children it has waited for.
	CPUTicks uint64
	// StartTicks is when the process started, in ticks after boot; with
	// the pid it identifies a process across pid reuse.
	StartTicks uint64
	// RSSPages is the resident set size in pages.
	RSSPages uint64
}

// alive reports whether the process still runs (zombies have exited).
func (s procStat) alive() bool { return s.State != 'Z' && s.State != 'X' }

// parseStat decodes the contents of /proc/<pid>/stat. The command name
// (field 2) is parenthesised and may itself hold spaces and parentheses,
// so fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return procStat{}, errors.New("stat: no command name")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return procStat{}, fmt.Errorf("stat: pid: %w", err)
	}
	// fields[0] is field 3 (state).
	fields := strings.Fields(string(b[closing+1:]))
	if len(fields) < 22 || len(fields[0]) != 1 {
		return procStat{}, fmt.Errorf("stat: %d fields after the command name, want at least 22", len(fields))
	}
	num := func(field int) (uint64, error) {
		v, err := strconv.ParseUint(fields[field-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: field %d: %w", field, err)
		}
		return v, nil
	}
	var vals [6]uint64
	for i, field := range []int{5, 6, 14, 15, 22, 24} {
		if vals[i], err = num(field); err != nil {
			return procStat{}, err
		}
	}
	cutime, err := strconv.ParseInt(fields[16-3], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stat: field 16: %w", err)
	}
	cstime, err := strconv.ParseInt(fields[17-3], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("stat: field 17: %w", err)
	}
	return procStat{
		PID:        pid,
		State:      fields[0][0],
		PGRP:       int(vals[0]),
		Session:    int(vals[1]),
		CPUTicks:   vals[2] + vals[3] + uint64(max(cutime, 0)) + uint64(max(cstime, 0)),
		StartTicks: vals[4],
		RSSPages:   vals[5],
	}, nil
}

// readStat reads one process's stat; a missing process is os.ErrNotExist.
func readStat(procRoot string, pid int) (procStat, error) {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// memTotal reads MemTotal from /proc/meminfo, in bytes.
func memTotal(procRoot string) (uint64, error) {
	f, err := os.Open(procRoot + "/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("meminfo: %w", err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("meminfo: no MemTotal")
}

// ticksToDuration converts CPU ticks to time.
func ticksToDuration(t uint64) time.Duration {
	return time.Duration(t) * (time.Second / userHZ)
}
