package placement

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Reason says why a DEA declines a request. A declining DEA stays silent on
// the bus; the reason is for its logs and metrics.
type Reason uint8

// Reasons a DEA declines, in the order Decide checks them.
const (
	ReasonNone          Reason = iota // the DEA accepts
	ReasonExcluded                    // the request names this DEA in Exclude
	ReasonDraining                    // the DEA is draining or evacuating
	ReasonStack                       // the DEA does not run the requested stack
	ReasonSlots                       // no instance slot is free
	ReasonMemory                      // not enough unreserved memory
	ReasonDisk                        // not enough unreserved disk
	ReasonDiskThreshold               // the droplet filesystem is above its threshold
)

var reasonNames = [...]string{
	ReasonNone:          "none",
	ReasonExcluded:      "excluded",
	ReasonDraining:      "draining",
	ReasonStack:         "wrong-stack",
	ReasonSlots:         "no-instance-slot",
	ReasonMemory:        "not-enough-memory",
	ReasonDisk:          "not-enough-disk",
	ReasonDiskThreshold: "disk-above-threshold",
}

// String returns the reason as a kebab-case word for logs and metric labels.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", r)
}

// Capacity is what a DEA offers in total.
type Capacity struct {
	// ID is the DEA's id; it feeds the tie-breaker.
	ID string
	// MemoryMB is the memory available to instances. Zero means none.
	MemoryMB int
	// DiskMB is the disk available to instances. Zero means disk is not
	// accounted: requests for disk are not refused for lack of it and disk
	// does not weigh in the score.
	DiskMB int
	// Instances is the maximum number of instances. Zero means no limit.
	Instances int
	// Stacks lists the stacks (runtimes) the DEA runs.
	Stacks []string
}

// Load is what a DEA has committed. Resources count from the moment the DEA
// says yes (see Ledger): held ones against capacity only, confirmed ones in
// the score as well.
type Load struct {
	// MemoryMB and DiskMB are reserved by the DEA's instances.
	MemoryMB int
	DiskMB   int
	// Instances counts tracked instances in every state, including crashed
	// ones the DEA still retains, as the original did.
	Instances int
	// HeldMemoryMB, HeldDiskMB and HeldInstances are held by yes answers
	// whose start has not arrived. They count against capacity, so a DEA
	// never promises the same memory twice, but not in the score: every
	// DEA that answered holds them, so they would delay all DEAs alike
	// rather than rank them.
	HeldMemoryMB  int
	HeldDiskMB    int
	HeldInstances int
	// Apps maps an app id to the number of its instances counted in
	// Instances. Decide only reads it.
	Apps map[string]int
	// CPU is recent CPU utilisation of the DEA's host, 0 (idle) to 1 (busy).
	CPU float64
	// DiskUsed is the used fraction of the filesystem holding droplets,
	// 0 to 1, as df reports it.
	DiskUsed float64
	// Draining is set while the DEA is evacuating or shutting down.
	Draining bool
}

// Request is one instance to place, from dea.discover.
type Request struct {
	App      string
	Index    int
	MemoryMB int
	DiskMB   int
	// Stack is the required stack; "" matches every DEA.
	Stack string
	// Exclude lists DEA ids that must not take the instance (the
	// controller retrying elsewhere). Excluded peers do not count in the
	// reference either.
	Exclude []string
}

// Decision is a DEA's answer to a Request.
type Decision struct {
	// OK is true if the DEA can take the instance.
	OK bool
	// Reason says why not when OK is false.
	Reason Reason
	// Delay is how long to wait before replying when OK is true.
	Delay time.Duration
	// Score is this DEA's absolute score for the request (before it is
	// made relative to its peers and capped); useful in logs.
	Score time.Duration
}

// Weights turn a DEA's load into a score, in time units so the score reads
// as the delay the original absolute formula would have used. Every weight
// must be non-negative.
type Weights struct {
	// SameApp is added per instance of the requested app already on the DEA.
	// It is the largest term so that instances of one app spread: one
	// instance outweighs a 20 % difference in memory use.
	SameApp time.Duration
	// Memory is multiplied by the fraction of memory reserved once the
	// instance is placed. Using the fraction after placement makes a small
	// DEA pay more for a large instance, so mixed sizes balance by
	// utilisation.
	Memory time.Duration
	// Disk is multiplied by the reserved disk fraction after placement.
	Disk time.Duration
	// CPU is multiplied by the DEA's CPU utilisation.
	CPU time.Duration
	// Tie is the span of the tie-breaker: a value in [0, Tie) drawn from
	// SHA1(app, index) mixed with the DEA's id, so equal DEAs take the
	// instances of one app in different, reproducible orders.
	Tie time.Duration
}

// Config holds the placement parameters. The zero value is not usable; start
// from DefaultConfig.
type Config struct {
	// Weights score every DEA, this one and its peers alike.
	Weights Weights
	// MaxDelay caps the reply delay (the original's 250 ms).
	MaxDelay time.Duration
	// DiskThreshold is the used fraction of the droplet filesystem above
	// which the DEA declines (the original's 95 %).
	DiskThreshold float64
	// FreshFor is how long a peer's advert is fully trusted. Past it the
	// peer's weight in the reference fades linearly, moving the delay
	// toward the absolute score; at ForgetAfter the peer is ignored.
	FreshFor    time.Duration
	ForgetAfter time.Duration
}

// DefaultConfig returns kiln's defaults.
func DefaultConfig() Config {
	return Config{
		Weights: Weights{
			SameApp: 20 * time.Millisecond,
			// 100 ms at a full DEA, as in the original: 1 % of memory is
			// 1 ms, twice the bus jitter, so memory still orders DEAs.
			Memory: 100 * time.Millisecond,
			Disk:   25 * time.Millisecond,
			CPU:    25 * time.Millisecond,
			Tie:    time.Millisecond,
		},
		MaxDelay:      250 * time.Millisecond,
		DiskThreshold: 0.95,
		// DEAs advertise every 5 s; two intervals tolerate one lost advert.
		FreshFor: 10 * time.Second,
		// The original controller dropped adverts after 10 s; kiln keeps
		// fading data for a minute before falling back to absolute scores.
		ForgetAfter: 60 * time.Second,
	}
}

// ErrInvalidConfig is returned (wrapped) by Config.Validate.
var ErrInvalidConfig = errors.New("placement: invalid config")

// Validate reports the first problem with c.
func (c Config) Validate() error {
	w := c.Weights
	switch {
	case w.SameApp < 0 || w.Memory < 0 || w.Disk < 0 || w.CPU < 0 || w.Tie < 0:
		return fmt.Errorf("%w: negative weight", ErrInvalidConfig)
	case c.MaxDelay < 0:
		return fmt.Errorf("%w: negative MaxDelay", ErrInvalidConfig)
	case c.DiskThreshold <= 0 || c.DiskThreshold > 1:
		return fmt.Errorf("%w: DiskThreshold %v not in (0, 1]", ErrInvalidConfig, c.DiskThreshold)
	case c.FreshFor < 0 || c.ForgetAfter < c.FreshFor:
		return fmt.Errorf("%w: need 0 <= FreshFor <= ForgetAfter", ErrInvalidConfig)
	}
	return nil
}

// Decide answers req for a DEA with capacity self and load, knowing its peers
// (which may be nil). It declines with a Reason, or accepts with the reply
// delay: this DEA's score minus the best score among the peers that could
// take the instance, so the best DEA replies at once. Peer scores are
// discounted by staleness; with no usable peer data the delay is the
// absolute score. The delay is capped at cfg.MaxDelay.
//
// Decide is deterministic and does not allocate. It reads peers, so the
// caller must not update peers concurrently.
func Decide(cfg Config, self Capacity, load Load, peers *Cluster, req Request, now time.Time) Decision {
	if r := fits(self, load, req, cfg.DiskThreshold); r != ReasonNone {
		return Decision{Reason: r}
	}
	key := tieKey(req.App, req.Index)
	w := &cfg.Weights
	s := baseScore(w, self.MemoryMB, load.MemoryMB, self.DiskMB, load.DiskMB, load.CPU) +
		requestScore(w, self.MemoryMB, self.DiskMB, req) +
		float64(w.SameApp)*float64(load.Apps[req.App]) +
		float64(w.Tie)*tieFraction(key, idHash(self.ID))
	delay := s - peers.reference(&cfg, req, key, now, s)
	switch {
	case delay < 0:
		delay = 0
	case delay > float64(cfg.MaxDelay):
		delay = float64(cfg.MaxDelay)
	}
	return Decision{OK: true, Delay: time.Duration(delay), Score: time.Duration(s)}
}

// Check reports whether a DEA with capacity c and load l can take r at all,
// without scoring it: ReasonNone if it can, else the first limit in the way,
// in the order of the Reason constants. A DEA uses it to re-check a start
// message; Decide calls it first.
func Check(cfg Config, c Capacity, l Load, r Request) Reason {
	return fits(c, l, r, cfg.DiskThreshold)
}

// fits checks the hard limits, in the order of the Reason constants.
func fits(c Capacity, l Load, r Request, threshold float64) Reason {
	switch {
	case len(r.Exclude) > 0 && slices.Contains(r.Exclude, c.ID):
		return ReasonExcluded
	case l.Draining:
		return ReasonDraining
	case !hasStack(c.Stacks, r.Stack):
		return ReasonStack
	case c.Instances > 0 && l.Instances+l.HeldInstances >= c.Instances:
		return ReasonSlots
	case l.MemoryMB+l.HeldMemoryMB+r.MemoryMB > c.MemoryMB:
		return ReasonMemory
	case c.DiskMB > 0 && l.DiskMB+l.HeldDiskMB+r.DiskMB > c.DiskMB:
		return ReasonDisk
	case l.DiskUsed > threshold:
		return ReasonDiskThreshold
	}
	return ReasonNone
}

func hasStack(stacks []string, s string) bool {
	if s == "" {
		return true
	}
	for _, x := range stacks {
		if x == s {
			return true
		}
	}
	return false
}

// baseScore is the request-independent part of a DEA's score.
func baseScore(w *Weights, memCap, memRes, diskCap, diskRes int, cpu float64) float64 {
	s := float64(w.Memory) * fraction(memRes, memCap)
	if diskCap > 0 {
		s += float64(w.Disk) * fraction(diskRes, diskCap)
	}
	return s + float64(w.CPU)*math.Min(math.Max(cpu, 0), 1)
}

// requestScore is what placing r adds to a DEA's score, apart from the
// same-app and tie terms.
func requestScore(w *Weights, memCap, diskCap int, r Request) float64 {
	s := float64(w.Memory) * fraction(r.MemoryMB, memCap)
	if diskCap > 0 {
		s += float64(w.Disk) * fraction(r.DiskMB, diskCap)
	}
	return s
}

func fraction(n, d int) float64 {
	if d <= 0 {
		return 1
	}
	return float64(n) / float64(d)
}

// freshness is the trust in a peer's advert of the given age: 1 while fresh,
// fading linearly to 0 at ForgetAfter.
func freshness(cfg *Config, age time.Duration) float64 {
	switch {
	case age <= cfg.FreshFor:
		return 1
	case age >= cfg.ForgetAfter:
		return 0
	}
	return float64(cfg.ForgetAfter-age) / float64(cfg.ForgetAfter-cfg.FreshFor)
}
