package dea

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
)

// CPUSampler reports the recent CPU utilisation of the DEA's host, from 0
// (idle) to 1 (busy). The DEA calls CPU once when Run starts and then once
// per Config.AdvertiseInterval, just before each periodic dea.advertise; the
// value is the DEA's placement.Load.CPU for its own discover decisions until
// the next call, and travels to its peers as the advert's cpu_load. A
// sampler measures the time between calls and smooths as it sees fit.
// Values outside [0, 1] are clamped and NaN counts as 0.
type CPUSampler interface {
	CPU() float64
}

// FixedCPU is a CPUSampler that always reports its own value: for tests,
// and for embedders that want CPU left out of placement (FixedCPU(0)).
type FixedCPU float64

// CPU returns f.
func (f FixedCPU) CPU() float64 { return float64(f) }

// DefaultCPUSmoothing is ProcStatCPU's default weight of the newest sample:
// with the default 5 s advertise interval, a step change in load shows
// half in the next advert and 94 % after four.
const DefaultCPUSmoothing = 0.5

// ErrProcStat is returned (wrapped) by ProcStatCPU.Sample when the stat file
// cannot be read or has no usable aggregate "cpu" line.
var ErrProcStat = errors.New("dea: cannot read CPU times")

// ProcStatCPU is the default CPUSampler: host CPU utilisation from the
// aggregate "cpu" line of Linux's /proc/stat. Each sample is the busy share
// of the CPU time that passed since the previous sample (busy is total
// minus idle minus iowait), smoothed by an exponentially weighted moving
// average. The first sample covers the time since boot and seeds the
// average. The zero value is ready to use; it is safe for concurrent use.
type ProcStatCPU struct {
	// Path is the file to read; "" means /proc/stat.
	Path string
	// Smoothing is the weight of the newest sample in the average, in
	// (0, 1]; 1 means no smoothing. Zero or out of range means
	// DefaultCPUSmoothing.
	Smoothing float64

	mu     sync.Mutex
	prev   cpuTimes
	seeded bool
	avg    float64
}

// CPU returns Sample's value; on error it returns the previous average
// (0 before any successful sample), so a host without /proc/stat places by
// memory and disk alone.
func (p *ProcStatCPU) CPU() float64 {
	v, _ := p.Sample()
	return v
}

// Sample reads the stat file and returns the updated average. If the file
// cannot be read or parsed, it returns the previous average and an error
// wrapping ErrProcStat. If no CPU time passed since the previous sample (or
// the counters went backwards), the average is left as it is.
func (p *ProcStatCPU) Sample() (float64, error) {
	path := p.Path
	if path == "" {
		path = "/proc/stat"
	}
	data, err := os.ReadFile(path)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		return p.avg, fmt.Errorf("%w: %w", ErrProcStat, err)
	}
	cur, err := parseProcStat(data)
	if err != nil {
		return p.avg, err
	}
	busy, ok := busyFraction(p.prev, cur)
	p.prev = cur
	switch {
	case !ok:
	case !p.seeded:
		p.avg, p.seeded = busy, true
	default:
		alpha := p.Smoothing
		if !(alpha > 0 && alpha <= 1) {
			alpha = DefaultCPUSmoothing
		}
		p.avg += alpha * (busy - p.avg)
	}
	return p.avg, nil
}

// cpuTimes are the cumulative times, in clock ticks, of an aggregate "cpu"
// line of /proc/stat. guest and guest_nice are left out: the kernel already
// counts them in user and nice.
type cpuTimes struct {
	user, nice, system, idle, iowait, irq, softirq, steal uint64
}

// total is all CPU time; idle includes iowait (a CPU waiting for I/O could
// run something else).
func (c cpuTimes) total() uint64 {
	return c.user + c.nice + c.system + c.idle + c.iowait + c.irq + c.softirq + c.steal
}

func (c cpuTimes) idleAll() uint64 { return c.idle + c.iowait }

// busyFraction is the busy share of the CPU time between prev and cur, in
// [0, 1]. It reports false if no time passed or the counters went
// backwards overall (a reset). Single counters that step back (iowait
// does on some kernels) are tolerated: the result is clamped.
func busyFraction(prev, cur cpuTimes) (float64, bool) {
	pt, ct := prev.total(), cur.total()
	if ct <= pt {
		return 0, false
	}
	dTotal := float64(ct - pt)
	dIdle := float64(cur.idleAll()) - float64(prev.idleAll())
	return math.Min(math.Max((dTotal-dIdle)/dTotal, 0), 1), true
}

// parseProcStat finds the aggregate "cpu" line in the contents of
// /proc/stat and parses its times. Kernels before 2.5.41 have only the
// first four fields; missing later fields count as 0.
func parseProcStat(data []byte) (cpuTimes, error) {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		fields := bytes.Fields(line)
		if len(fields) == 0 || string(fields[0]) != "cpu" {
			continue
		}
		fields = fields[1:]
		if len(fields) < 4 {
			return cpuTimes{}, fmt.Errorf("%w: cpu line has %d fields, want at least 4", ErrProcStat, len(fields))
		}
		var v [8]uint64
		for i := range min(len(fields), len(v)) {
			n, err := strconv.ParseUint(string(fields[i]), 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("%w: cpu field %d: %w", ErrProcStat, i+1, err)
			}
			v[i] = n
		}
		c := cpuTimes{user: v[0], nice: v[1], system: v[2], idle: v[3], iowait: v[4], irq: v[5], softirq: v[6], steal: v[7]}
		// A sum that overflows would make deltas meaningless.
		if !sumFits(v[:]) {
			return cpuTimes{}, fmt.Errorf("%w: cpu times overflow", ErrProcStat)
		}
		return c, nil
	}
	return cpuTimes{}, fmt.Errorf("%w: no aggregate cpu line", ErrProcStat)
}

// sumFits reports whether the sum of v fits in a uint64.
func sumFits(v []uint64) bool {
	var s uint64
	for _, x := range v {
		if s+x < s {
			return false
		}
		s += x
	}
	return true
}

// clampCPU brings a sampler's value into [0, 1]; NaN is 0.
func clampCPU(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return math.Min(math.Max(v, 0), 1)
}
