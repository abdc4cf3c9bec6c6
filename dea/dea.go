// Package dea is kiln's droplet execution agent: the component that runs
// applications. A DEA advertises its capacity on the bus, answers
// dea.discover through dea/placement (the reply delay is the placement
// algorithm), and, told to start an instance, fetches the droplet (cached by
// SHA1), creates a warden container, streams the droplet in, starts the app
// with the platform's environment, health-checks it, registers its routes
// and heartbeats it. It reports crashes at once (droplet.exited and
// router.unregister), stops instances gracefully (unregister, drain, TERM,
// KILL), streams app logs to the bus, answers dea.find.droplet with stats and
// signed URLs to its file server, and survives its own restart by
// reattaching to the instances still running in the backend.
//
// Placement weighs the host's CPU utilisation too: a CPUSampler (by default
// ProcStatCPU, reading /proc/stat) is sampled at the advertise interval, and
// the value scores the DEA's own discover replies and travels to its peers
// as the advert's cpu_load.
//
// A DEA depends only on interfaces: a bus.Bus, a warden.Backend, a Fetcher
// and a CPUSampler, so an embedder runs one inside their own daemon and a
// test runs twenty in one process on bus/membus and warden/fake:
//
//	d, err := dea.New(cfg, dea.Deps{Bus: b, Backend: backend})
//	go d.Run(ctx)
package dea

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/dea/placement"
	"github.com/kiln-paas/kiln/internal/component"
	"github.com/kiln-paas/kiln/warden"
)

// Version is the DEA version in hellos, as the original's 0.99.
const Version = 0.99

// Clock tells the time. Timestamps in messages and placement decisions use
// it; timers do not.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Deps are a DEA's dependencies. Bus and Backend are required.
type Deps struct {
	// Bus connects the DEA to the kernel.
	Bus bus.Bus
	// Backend runs the containers.
	Backend warden.Backend
	// Fetcher obtains droplets; nil means HTTPFetcher with
	// http.DefaultClient.
	Fetcher Fetcher
	// Logger receives the DEA's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the DEA's metrics; nil registers none. If it is
	// also a prometheus.Gatherer, Handler serves it on /metrics.
	Registerer prometheus.Registerer
	// Clock tells the time; nil means the system clock.
	Clock Clock
	// CPU samples the host's CPU utilisation for placement and adverts;
	// nil means a ProcStatCPU reading /proc/stat.
	CPU CPUSampler
}

// DEA is a droplet execution agent. Create it with New and run it with Run.
type DEA struct {
	cfg      Config
	id       string
	bus      bus.Bus
	backend  warden.Backend
	log      *slog.Logger
	clock    Clock
	cpuSrc   CPUSampler
	gatherer prometheus.Gatherer
	metrics  *metrics
	cache    *dropletCache
	comp     *component.Component
	key      []byte // signs file server URLs
	snapPath string
	// statusHost and statusPort are where Handler is reachable, from
	// Config.FileServerURL.
	statusHost string
	statusPort int
	snapMu     sync.Mutex // serialises snapshot writes

	advertiseNow chan struct{}
	intervalSet  chan time.Duration

	mu            sync.Mutex
	instances     map[string]*instance
	ledger        *placement.Ledger
	peers         *placement.Cluster
	diskUsed      float64
	cpu           float64 // last clamped CPUSampler value
	draining      bool
	started       bool
	closing       bool
	registerEvery time.Duration
	life          context.Context // ends when Run has finished with instances
	tasks         errgroup.Group
}

// New returns a DEA for cfg and deps. It creates BaseDir and the droplet
// cache, and reads the snapshot for the DEA's id; instances are recovered
// by Run.
func New(cfg Config, deps Deps) (*DEA, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Bus == nil || deps.Backend == nil {
		return nil, fmt.Errorf("%w: Deps.Bus and Deps.Backend are required", ErrInvalidConfig)
	}
	d := &DEA{
		cfg:           cfg,
		bus:           deps.Bus,
		backend:       deps.Backend,
		log:           deps.Logger,
		clock:         deps.Clock,
		cpuSrc:        deps.CPU,
		snapPath:      filepath.Join(cfg.BaseDir, "db", "instances.json"),
		advertiseNow:  make(chan struct{}, 1),
		intervalSet:   make(chan time.Duration, 1),
		instances:     map[string]*instance{},
		ledger:        placement.NewLedger(),
		peers:         placement.NewCluster(cfg.Placement.Weights),
		registerEvery: cfg.RegisterInterval,
		life:          context.Background(),
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.clock == nil {
		d.clock = realClock{}
	}
	if d.cpuSrc == nil {
		d.cpuSrc = &ProcStatCPU{}
	}
	fetcher := deps.Fetcher
	if fetcher == nil {
		fetcher = HTTPFetcher{}
	}
	d.id = cfg.ID
	if d.id == "" {
		if snap, err := readSnapshot(d.snapPath); err == nil && snap.DEA != "" {
			d.id = snap.DEA
		} else {
			d.id = uuid.NewString()
		}
	}
	d.log = d.log.With("dea", d.id)
	d.key = make([]byte, 32)
	if _, err := rand.Read(d.key); err != nil {
		return nil, fmt.Errorf("dea: signing key: %w", err)
	}
	if g, ok := deps.Registerer.(prometheus.Gatherer); ok {
		d.gatherer = g
	}
	var err error
	d.metrics, err = newMetrics(deps.Registerer, d)
	if err != nil {
		return nil, err
	}
	d.cache, err = newDropletCache(filepath.Join(cfg.BaseDir, "droplets"), cfg.DropletCacheBytes, cfg.MaxDropletBytes, fetcher,
		func(hit bool) {
			if hit {
				d.metrics.dropletFetches.WithLabelValues("hit").Inc()
			} else {
				d.metrics.dropletFetches.WithLabelValues("miss").Inc()
			}
		})
	if err != nil {
		return nil, err
	}
	if u, err := url.Parse(cfg.FileServerURL); err == nil && u.Host != "" {
		d.statusHost = u.Host
		if p, err := strconv.Atoi(u.Port()); err == nil {
			d.statusPort = p
		}
	}
	d.comp = component.New(component.Config{
		Type: "DEA", Index: cfg.Index, UUID: d.id, Host: d.statusHost,
		User: cfg.StatusUser, Password: cfg.StatusPassword, Logger: d.log,
	}, d.healthy, d.varz)
	return d, nil
}

// ID returns the DEA's id: start messages for it go to dea.<id>.start.
func (d *DEA) ID() string { return d.id }

// Handler serves /healthz, /varz, /metrics (when the Registerer is a
// Gatherer) and the file server under /files/, whose URLs are handed out
// signed in dea.find.droplet replies.
func (d *DEA) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/files/", http.HandlerFunc(d.serveFiles))
	mux.Handle("/", d.comp.Handler(d.gatherer))
	return mux
}

func (d *DEA) now() time.Time { return d.clock.Now() }

func (d *DEA) healthy() error {
	if !d.bus.Stats().Connected {
		return fmt.Errorf("dea %s: bus not connected", d.id)
	}
	return nil
}

// goTask runs f in the DEA's task group unless Run is finishing; it reports
// whether f was started.
func (d *DEA) goTask(f func()) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return false
	}
	d.tasks.Go(func() error { f(); return nil })
	return true
}

// Run subscribes to the DEA's subjects, recovers the instances of a
// previous run from the snapshot, and serves until ctx ends. Then it shuts
// down gracefully: every instance is reported (droplet.exited with
// DEA_SHUTDOWN, so replacements start elsewhere first) and stopped, unless
// Config.LeaveRunning, in which case instances keep running for the next
// DEA. Run returns after that; it returns an error only if the DEA could not
// start.
func (d *DEA) Run(ctx context.Context) error {
	life, cancelLife := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelLife()
	d.mu.Lock()
	if d.started {
		d.mu.Unlock()
		return ErrRunning
	}
	d.started, d.life = true, life
	d.mu.Unlock()

	d.refreshDisk()
	d.sampleCPU()
	d.recoverInstances(ctx)
	subs, err := d.subscribe()
	if err != nil {
		d.finishRun(subs, cancelLife)
		return err
	}
	d.log.Info("dea-started", "stacks", d.cfg.Stacks, "memory_mb", d.cfg.MemoryMB)
	d.publish(protocol.DEAHelloSubject, d.hello())
	d.registerAll()
	d.heartbeat(nil)
	d.advertise()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.comp.Announce(gctx, d.bus) })
	g.Go(func() error { d.greet(gctx); return nil })
	g.Go(func() error { d.loop(gctx); return nil })
	<-ctx.Done()
	_ = g.Wait()

	d.shutdown(life)
	d.finishRun(subs, cancelLife)
	d.log.Info("dea-stopped")
	return nil
}

func (d *DEA) finishRun(subs []bus.Subscription, cancelLife context.CancelFunc) {
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	d.mu.Lock()
	d.closing = true
	d.mu.Unlock()
	cancelLife()
	_ = d.tasks.Wait()
}

// loop runs the DEA's timers until ctx ends.
func (d *DEA) loop(ctx context.Context) {
	adv := time.NewTicker(d.cfg.AdvertiseInterval)
	defer adv.Stop()
	hb := time.NewTicker(d.cfg.HeartbeatInterval)
	defer hb.Stop()
	d.mu.Lock()
	every := d.registerEvery
	d.mu.Unlock()
	reg := time.NewTicker(every)
	defer reg.Stop()
	// Housekeeping: lapsed discover holds, crash retention, disk use. The
	// original checked its disk every 2 s and reaped every 30 s.
	house := time.NewTicker(time.Second)
	defer house.Stop()
	// Adverts on change are spaced by advertGap so a burst of discovers
	// costs peers one advert, not one per discover.
	const advertGap = 50 * time.Millisecond
	var last time.Time
	var soon <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-adv.C:
			d.sampleCPU()
			d.advertise()
			last = time.Now()
		case <-d.advertiseNow:
			if soon == nil {
				soon = time.After(max(advertGap-time.Since(last), 0))
			}
		case <-soon:
			soon = nil
			d.advertise()
			last = time.Now()
		case <-hb.C:
			d.heartbeat(nil)
		case every := <-d.intervalSet:
			reg.Reset(every)
		case <-reg.C:
			d.registerAll()
		case <-house.C:
			d.housekeeping()
		}
	}
}

func (d *DEA) housekeeping() {
	now := d.now()
	d.mu.Lock()
	d.ledger.Expire(now)
	var reap []*instance
	for _, inst := range d.instances {
		if inst.state == protocol.StateCrashed && now.Sub(inst.stateTime) >= d.cfg.CrashRetention {
			reap = append(reap, inst)
			delete(d.instances, inst.id)
		}
	}
	d.mu.Unlock()
	d.refreshDisk()
	for _, inst := range reap {
		d.log.Info("crashed-instance-reaped", "app", inst.app, "instance", inst.id)
		d.destroyContainer(inst)
	}
	if len(reap) > 0 {
		d.changed()
	}
}

// refreshDisk measures how full the filesystem holding BaseDir is.
func (d *DEA) refreshDisk() {
	var st unix.Statfs_t
	if err := unix.Statfs(d.cfg.BaseDir, &st); err != nil || st.Blocks == 0 {
		return
	}
	used := 1 - float64(st.Bavail)/float64(st.Blocks)
	d.mu.Lock()
	d.diskUsed = used
	d.mu.Unlock()
}

// sampleCPU takes the host's CPU utilisation from the sampler. It runs at
// the advertise interval only, so the sampler's deltas span a steady
// period, and adverts on change carry the latest periodic value.
func (d *DEA) sampleCPU() {
	v := clampCPU(d.cpuSrc.CPU())
	d.mu.Lock()
	d.cpu = v
	d.mu.Unlock()
}

// changed notes that the DEA's instances changed: advertise soon and
// persist the instance table.
func (d *DEA) changed() {
	d.loadChanged()
	d.saveSnapshot()
}

// loadChanged notes that the DEA's scored load changed: advertise soon.
// Holds alone do not call it: peers do not score them (every DEA that
// answered a discover holds alike), so they travel in periodic adverts.
func (d *DEA) loadChanged() {
	select {
	case d.advertiseNow <- struct{}{}:
	default:
	}
}

// publish encodes v and publishes it, logging failures.
func (d *DEA) publish(subject string, v any) {
	data, err := json.Marshal(v)
	if err == nil {
		err = d.bus.Publish(subject, data)
	}
	if err != nil {
		d.log.Warn("publish-failed", "subject", subject, "error", err)
	}
}

func (d *DEA) hello() protocol.DEAHello {
	return protocol.DEAHello{ID: d.id, IP: d.cfg.Host, Port: d.statusPort, Version: Version}
}

func (d *DEA) capacity() placement.Capacity {
	return placement.Capacity{
		ID: d.id, MemoryMB: d.cfg.MemoryMB, DiskMB: d.cfg.DiskMB,
		Instances: d.cfg.MaxInstances, Stacks: d.cfg.Stacks,
	}
}

// loadLocked is the DEA's load for placement; d.mu is held. Apps is the
// ledger's map: read it only while holding d.mu.
func (d *DEA) loadLocked() placement.Load {
	l := d.ledger.Load()
	l.DiskUsed = d.diskUsed
	l.CPU = d.cpu
	l.Draining = d.draining
	return l
}

func (d *DEA) load() placement.Load {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loadLocked()
}

func (d *DEA) instanceCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.instances)
}

// limits fills a message's zero limits with the defaults.
func (d *DEA) limits(l protocol.Limits) protocol.Limits {
	if l.Mem <= 0 {
		l.Mem = d.cfg.DefaultLimits.Mem
	}
	if l.Disk <= 0 {
		l.Disk = d.cfg.DefaultLimits.Disk
	}
	if l.FDs <= 0 {
		l.FDs = d.cfg.DefaultLimits.FDs
	}
	return l
}

func newInstanceID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// varz is the DEA's part of /varz.
func (d *DEA) varz() map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.ledger.Load()
	state := "RUNNING"
	if d.draining {
		state = "SHUTTING_DOWN"
	}
	var running []map[string]any
	for _, inst := range d.instances {
		running = append(running, map[string]any{
			"droplet": inst.app, "instance": inst.id, "index": inst.index,
			"state": inst.state, "mem_quota_mb": inst.limits.Mem,
		})
	}
	return map[string]any{
		"apps_max_memory": d.cfg.MemoryMB, "apps_reserved_memory": l.MemoryMB + l.HeldMemoryMB,
		"num_apps": len(d.instances), "state": state, "running_apps": running,
		"stacks": d.cfg.Stacks,
	}
}
