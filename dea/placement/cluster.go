package placement

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Advert is what a DEA knows of a peer from its latest dea.advertise.
type Advert struct {
	// Capacity is the peer's capacity; Capacity.ID identifies the peer.
	Capacity Capacity
	// Load is the peer's load when it advertised. DiskUsed is not used: a
	// peer above its disk threshold does not advertise.
	Load Load
	// At is when the advert was received, on the caller's clock.
	At time.Time
}

// Cluster is a DEA's view of its peers, built from their adverts. Include
// this DEA's own advert too (every DEA receives its own dea.advertise): then
// every DEA measures itself against the same reference and they agree on the
// order in which they reply.
//
// A Cluster is not safe for concurrent use; Decide only reads it, so a DEA
// may guard it with a sync.RWMutex.
type Cluster struct {
	weights Weights
	peers   []peer           // by slot; free slots are listed in free
	free    []int32          // free slots
	order   []int32          // used slots by ascending base score
	byID    map[string]int32 // id → slot
	apps    map[string][]appRef
	stacks  map[string]uint64 // stack → bit
	oldest  time.Time         // earliest At among peers
}

type appRef struct {
	slot  int32
	count int32
}

type peer struct {
	id                 string
	idHash             uint64
	memCap, memRes     int
	diskCap, diskRes   int
	slots, instances   int
	heldMem, heldDisk  int
	heldInstances      int
	cpu                float64
	stacks             uint64
	draining           bool
	at                 time.Time
	atNS               int64   // at.UnixNano(), for the hot loop
	base               float64 // baseScore under the cluster's weights
	apps               []string
	overflowStackNames []string // stacks beyond the 64 that get a bit
}

// NewCluster returns an empty view that scores peers with w. Pass the same
// weights as the Config given to Decide; with other weights Decide stays
// correct but scans every peer.
func NewCluster(w Weights) *Cluster {
	return &Cluster{
		weights: w,
		byID:    make(map[string]int32),
		apps:    make(map[string][]appRef),
		stacks:  make(map[string]uint64),
	}
}

// Len returns the number of peers in the view.
func (c *Cluster) Len() int { return len(c.order) }

// Upsert records a peer's advert, replacing any earlier one with the same
// Capacity.ID. It copies what it keeps, so the caller may reuse a.
func (c *Cluster) Upsert(a Advert) {
	id := a.Capacity.ID
	slot, ok := c.byID[id]
	if ok {
		c.detach(slot)
	} else if n := len(c.free); n > 0 {
		slot, c.free = c.free[n-1], c.free[:n-1]
	} else {
		slot = int32(len(c.peers))
		c.peers = append(c.peers, peer{})
	}
	c.byID[id] = slot
	p := &c.peers[slot]
	*p = peer{
		id:            id,
		idHash:        idHash(id),
		memCap:        a.Capacity.MemoryMB,
		memRes:        a.Load.MemoryMB,
		diskCap:       a.Capacity.DiskMB,
		diskRes:       a.Load.DiskMB,
		slots:         a.Capacity.Instances,
		instances:     a.Load.Instances,
		heldMem:       a.Load.HeldMemoryMB,
		heldDisk:      a.Load.HeldDiskMB,
		heldInstances: a.Load.HeldInstances,
		cpu:           a.Load.CPU,
		draining:      a.Load.Draining,
		at:            a.At,
		atNS:          a.At.UnixNano(),
	}
	p.base = baseScore(&c.weights, p.memCap, p.memRes, p.diskCap, p.diskRes, p.cpu)
	for _, s := range a.Capacity.Stacks {
		if bit := c.stackBit(s, true); bit != 0 {
			p.stacks |= bit
		} else {
			p.overflowStackNames = append(p.overflowStackNames, s)
		}
	}
	for app, n := range a.Load.Apps {
		if n <= 0 {
			continue
		}
		p.apps = append(p.apps, app)
		c.apps[app] = append(c.apps[app], appRef{slot: slot, count: int32(n)})
	}
	at, _ := slices.BinarySearchFunc(c.order, p.base, func(s int32, b float64) int {
		return cmp.Compare(c.peers[s].base, b)
	})
	c.order = slices.Insert(c.order, at, slot)
	c.refreshOldest()
}

// Remove drops a peer, reporting whether it was known.
func (c *Cluster) Remove(id string) bool {
	slot, ok := c.byID[id]
	if !ok {
		return false
	}
	c.detach(slot)
	delete(c.byID, id)
	c.peers[slot] = peer{}
	c.free = append(c.free, slot)
	c.refreshOldest()
	return true
}

// Forget drops every peer whose advert was received before t and returns how
// many it dropped. Call it with now minus Config.ForgetAfter to bound the
// view; Decide ignores such peers anyway.
func (c *Cluster) Forget(t time.Time) int {
	var ids []string
	for _, s := range c.order {
		if c.peers[s].at.Before(t) {
			ids = append(ids, c.peers[s].id)
		}
	}
	for _, id := range ids {
		c.Remove(id)
	}
	return len(ids)
}

// detach removes a slot from the order and the app index.
func (c *Cluster) detach(slot int32) {
	p := &c.peers[slot]
	for _, app := range p.apps {
		refs := slices.DeleteFunc(c.apps[app], func(r appRef) bool { return r.slot == slot })
		if len(refs) == 0 {
			delete(c.apps, app)
		} else {
			c.apps[app] = refs
		}
	}
	if i := slices.Index(c.order, slot); i >= 0 {
		c.order = slices.Delete(c.order, i, i+1)
	}
}

func (c *Cluster) refreshOldest() {
	c.oldest = time.Time{}
	for i, s := range c.order {
		if at := c.peers[s].at; i == 0 || at.Before(c.oldest) {
			c.oldest = at
		}
	}
}

// stackBit returns the bit of a stack name, assigning one if add is set and
// fewer than 64 stacks are known; 0 means the stack has no bit.
func (c *Cluster) stackBit(s string, add bool) uint64 {
	if bit, ok := c.stacks[s]; ok || !add || len(c.stacks) >= 64 {
		return bit
	}
	bit := uint64(1) << len(c.stacks)
	c.stacks[s] = bit
	return bit
}

// canTake reports whether the peer's advert says it could take r.
func (p *peer) canTake(r Request, bit uint64) bool {
	switch {
	case p.draining:
		return false
	case len(r.Exclude) > 0 && slices.Contains(r.Exclude, p.id):
		return false
	case r.Stack != "" && p.stacks&bit == 0 && !slices.Contains(p.overflowStackNames, r.Stack):
		return false
	case p.slots > 0 && p.instances+p.heldInstances >= p.slots:
		return false
	case p.memRes+p.heldMem+r.MemoryMB > p.memCap:
		return false
	case p.diskCap > 0 && p.diskRes+p.heldDisk+r.DiskMB > p.diskCap:
		return false
	}
	return true
}

// reference returns the score this DEA's delay is measured from: the lowest
// staleness-discounted score among peers that could take r. With no usable
// peer it is 0 (the absolute score is the delay); with peers known but none
// able to take r it is self scaled by the best freshness, so a DEA alone in
// being able to take r answers at once when its view is fresh.
func (c *Cluster) reference(cfg *Config, r Request, key uint64, now time.Time, self float64) float64 {
	if c == nil || len(c.order) == 0 {
		return 0
	}
	w := &cfg.Weights
	sameWeights := *w == c.weights
	// A peer's discounted score is at least fmin × its base score, and the
	// order is by base score, so the scan can stop early.
	fmin := freshness(cfg, now.Sub(c.oldest))
	nowNS := now.UnixNano()
	var bit uint64
	if r.Stack != "" {
		bit = c.stackBit(r.Stack, false)
	}
	refs := c.apps[r.App]
	best, maxF := math.Inf(1), 0.0
	for _, slot := range c.order {
		p := &c.peers[slot]
		base := p.base
		if !sameWeights {
			base = baseScore(w, p.memCap, p.memRes, p.diskCap, p.diskRes, p.cpu)
		} else if base*fmin >= best {
			break
		}
		f := 1.0
		if fmin < 1 {
			if f = freshness(cfg, time.Duration(nowNS-p.atNS)); f == 0 {
				continue
			}
		}
		if f > maxF {
			maxF = f
		}
		if !p.canTake(r, bit) {
			continue
		}
		s := base + requestScore(w, p.memCap, p.diskCap, r) +
			float64(w.SameApp)*float64(countFor(refs, slot)) +
			float64(w.Tie)*tieFraction(key, p.idHash)
		if f*s < best {
			best = f * s
		}
	}
	if math.IsInf(best, 1) {
		return self * maxF
	}
	return best
}

func countFor(refs []appRef, slot int32) int32 {
	for _, r := range refs {
		if r.slot == slot {
			return r.count
		}
	}
	return 0
}
