package placement

import "time"

// Ledger keeps a DEA's reservations so that an instance's memory, disk and
// slot count from the moment the DEA answers yes, not from when the start
// message arrives: two discovers in quick succession then never promise the
// same memory twice.
//
// A yes is a hold until the start confirms it. A yes that does not win is
// never confirmed (the controller tells only the winner), so a hold lapses
// at the time given to Hold. A good deadline is the reply delay plus a round
// trip's margin: a start for this DEA can only follow its own reply. Holds
// count against capacity but not in the score (see Load). Ledger is not
// safe for concurrent use.
type Ledger struct {
	entries map[string]entry
	load    Load
}

type entry struct {
	app       string
	memoryMB  int
	diskMB    int
	until     time.Time // zero once confirmed
	confirmed bool
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{entries: make(map[string]entry), load: Load{Apps: make(map[string]int)}}
}

// Hold reserves r under key until the given time, unless confirmed first. A
// key already present is replaced.
func (l *Ledger) Hold(key string, r Request, until time.Time) {
	l.put(key, entry{app: r.App, memoryMB: r.MemoryMB, diskMB: r.DiskMB, until: until})
}

// Reserve records a confirmed reservation directly, e.g. for instances
// recovered after a restart.
func (l *Ledger) Reserve(key string, r Request) {
	l.put(key, entry{app: r.App, memoryMB: r.MemoryMB, diskMB: r.DiskMB, confirmed: true})
}

// Confirm makes a hold permanent (the start arrived) and reports whether key
// was held.
func (l *Ledger) Confirm(key string) bool {
	e, ok := l.entries[key]
	if !ok {
		return false
	}
	if e.confirmed {
		return true
	}
	l.account(e, -1)
	e.confirmed, e.until = true, time.Time{}
	l.entries[key] = e
	l.account(e, 1)
	return true
}

// Release drops a hold or reservation (the instance was stopped or removed)
// and reports whether key was present.
func (l *Ledger) Release(key string) bool {
	e, ok := l.entries[key]
	if !ok {
		return false
	}
	delete(l.entries, key)
	l.account(e, -1)
	return true
}

// Expire drops the unconfirmed holds whose deadline is not after now and
// returns how many it dropped.
func (l *Ledger) Expire(now time.Time) int {
	n := 0
	for k, e := range l.entries {
		if !e.confirmed && !e.until.After(now) {
			delete(l.entries, k)
			l.account(e, -1)
			n++
		}
	}
	return n
}

// Load returns the reserved totals: confirmed reservations in MemoryMB,
// DiskMB, Instances and Apps, holds in the Held fields. The caller adds CPU,
// DiskUsed and Draining. The Apps map is the ledger's own: read it, do not
// modify it or keep it across ledger updates.
func (l *Ledger) Load() Load { return l.load }

func (l *Ledger) put(key string, e entry) {
	if old, ok := l.entries[key]; ok {
		l.account(old, -1)
	}
	l.entries[key] = e
	l.account(e, 1)
}

func (l *Ledger) account(e entry, sign int) {
	if !e.confirmed {
		l.load.HeldMemoryMB += sign * e.memoryMB
		l.load.HeldDiskMB += sign * e.diskMB
		l.load.HeldInstances += sign
		return
	}
	l.load.MemoryMB += sign * e.memoryMB
	l.load.DiskMB += sign * e.diskMB
	l.load.Instances += sign
	n := l.load.Apps[e.app] + sign
	if n == 0 {
		delete(l.load.Apps, e.app)
	} else {
		l.load.Apps[e.app] = n
	}
}
