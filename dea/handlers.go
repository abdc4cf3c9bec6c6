package dea

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/kiln-paas/kiln/bus"
	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/dea/placement"
)

// errBadMessage marks messages dropped for their content.
var errBadMessage = errors.New("bad message")

// handlers maps each subject the DEA listens on to its handler. A handler
// returns an error (wrapping errBadMessage for bad input) to have it logged
// and counted.
func (d *DEA) handlers() map[string]func(*bus.Msg) error {
	return map[string]func(*bus.Msg) error{
		protocol.DEADiscover:           d.onDiscover,
		protocol.DEAStartSubject(d.id): d.onStart,
		protocol.DEAStartSubject("*"):  d.onPeerStart,
		protocol.DEAStop:               d.onStop,
		protocol.DEAUpdate:             d.onUpdate,
		protocol.DEAFindDroplet:        d.onFindDroplet,
		protocol.DEAStatus:             d.onStatus,
		protocol.DEALocate:             d.onLocate,
		protocol.DEAAdvertise:          d.onAdvertise,
		protocol.RouterStart:           d.onRouterStart,
		protocol.HealthManagerStart:    d.onHealthManagerStart,
	}
}

func (d *DEA) subscribe() ([]bus.Subscription, error) {
	var subs []bus.Subscription
	for subject, h := range d.handlers() {
		s, err := d.bus.Subscribe(subject, d.wrap(subject, h))
		if err != nil {
			return subs, fmt.Errorf("dea %s: subscribe %s: %w", d.id, subject, err)
		}
		subs = append(subs, s)
	}
	return subs, nil
}

// wrap counts, logs and contains a handler: bad input is dropped, and a
// panic (a bug) is logged rather than taking the DEA down.
func (d *DEA) wrap(subject string, h func(*bus.Msg) error) bus.Handler {
	label := subject
	if label == protocol.DEAStartSubject(d.id) {
		label = "dea.<id>.start"
	}
	return func(m *bus.Msg) {
		d.metrics.messages.WithLabelValues(label).Inc()
		defer func() {
			if r := recover(); r != nil {
				buf := make([]byte, 4096)
				buf = buf[:runtime.Stack(buf, false)]
				d.metrics.badMessages.WithLabelValues(label).Inc()
				d.log.Error("handler-panic", "subject", subject, "panic", fmt.Sprint(r), "stack", string(buf))
			}
		}()
		if err := h(m); err != nil {
			if errors.Is(err, errBadMessage) {
				d.metrics.badMessages.WithLabelValues(label).Inc()
			}
			d.log.Warn("message-dropped", "subject", subject, "error", err)
		}
	}
}

func decode[T any, PT interface {
	*T
	protocol.Message
}](data []byte) (T, error) {
	v, err := protocol.Decode[T, PT](data)
	if err != nil {
		return v, fmt.Errorf("%w: %w", errBadMessage, err)
	}
	return v, nil
}

func holdKey(app protocol.AppID, index int) string {
	return "hold/" + string(app) + "/" + strconv.Itoa(index)
}

func (d *DEA) onDiscover(m *bus.Msg) error {
	req, err := decode[protocol.Discover](m.Data)
	if err != nil {
		return err
	}
	if m.Reply == "" {
		return fmt.Errorf("%w: dea.discover without reply subject", errBadMessage)
	}
	if slices.Contains(req.Exclude, d.id) {
		return nil
	}
	limits := d.limits(req.Limits)
	stack := req.Stack
	if stack == "" {
		stack = req.Runtime
	}
	preq := placement.Request{App: string(req.Droplet), Index: req.Index, MemoryMB: limits.Mem, DiskMB: limits.Disk, Stack: stack}
	now := d.now()
	key := holdKey(req.Droplet, req.Index)
	d.mu.Lock()
	d.ledger.Expire(now)
	dec := placement.Decide(d.cfg.Placement, d.capacity(), d.loadLocked(), d.peers, preq, now)
	if dec.OK {
		// Memory counts from the yes, so the next discover sees it.
		d.ledger.Hold(key, preq, now.Add(dec.Delay+d.cfg.HoldTimeout))
	}
	d.mu.Unlock()
	if !dec.OK {
		d.metrics.discoverDecline.WithLabelValues(dec.Reason.String()).Inc()
		d.log.Debug("discover-declined", "app", req.Droplet, "index", req.Index, "reason", dec.Reason.String())
		return nil
	}
	reply := m.Reply
	if dec.Delay <= 0 {
		d.discoverReply(reply, key, preq)
		return nil
	}
	d.goTask(func() {
		t := time.NewTimer(dec.Delay)
		defer t.Stop()
		select {
		case <-t.C:
			d.discoverReply(reply, key, preq)
		case <-d.life.Done():
		}
	})
	return nil
}

// discoverReply answers a discover unless the DEA can no longer take the
// instance (it started draining, or its hold lapsed or was taken by a
// start meanwhile): it never promises what it cannot give.
func (d *DEA) discoverReply(reply, key string, r placement.Request) {
	d.mu.Lock()
	ok := d.ledger.Release(key)
	if ok {
		ok = placement.Check(d.cfg.Placement, d.capacity(), d.loadLocked(), r) == placement.ReasonNone
	}
	if ok {
		d.ledger.Hold(key, r, d.now().Add(d.cfg.HoldTimeout))
	}
	d.mu.Unlock()
	if !ok {
		d.metrics.discoverDecline.WithLabelValues("changed-before-reply").Inc()
		return
	}
	d.metrics.discoverReplies.Inc()
	d.publish(reply, d.hello())
}

func (d *DEA) onStart(m *bus.Msg) error {
	s, err := decode[protocol.Start](m.Data)
	if err != nil {
		return err
	}
	if !validSHA1(s.SHA1) {
		return fmt.Errorf("%w: start %s: sha1 %q is not 40 hex digits", errBadMessage, s.Droplet, s.SHA1)
	}
	limits := d.limits(s.Limits)
	preq := placement.Request{App: string(s.Droplet), Index: s.Index, MemoryMB: limits.Mem, DiskMB: limits.Disk, Stack: s.Stack}
	id := newInstanceID()
	d.mu.Lock()
	if d.closing {
		d.mu.Unlock()
		return fmt.Errorf("start %s/%d: dea is stopping: %w", s.Droplet, s.Index, ErrNoCapacity)
	}
	d.ledger.Release(holdKey(s.Droplet, s.Index))
	if reason := placement.Check(d.cfg.Placement, d.capacity(), d.loadLocked(), preq); reason != placement.ReasonNone {
		d.mu.Unlock()
		d.metrics.starts.WithLabelValues("refused").Inc()
		d.publishLog(protocol.LogLine{App: s.Droplet, Index: s.Index, Source: protocol.SourceDEA,
			Timestamp: d.now().UnixNano(), Line: "start refused: " + reason.String()})
		return fmt.Errorf("start %s/%d: %s: %w", s.Droplet, s.Index, reason, ErrNoCapacity)
	}
	d.ledger.Reserve(id, preq)
	inst := d.newInstance(&s, id, limits)
	d.instances[id] = inst
	d.mu.Unlock()
	d.log.Info("instance-starting", "app", s.Droplet, "index", s.Index, "instance", id, "version", s.Version)
	d.heartbeat(inst)
	d.changed()
	if !d.goTask(func() { d.supervise(inst, nil) }) {
		d.mu.Lock()
		delete(d.instances, id)
		d.ledger.Release(id)
		d.mu.Unlock()
	}
	return nil
}

// onPeerStart sees the starts sent to every DEA: a start for another DEA
// means the controller chose it, so this DEA's hold for that instance (if
// it also said yes) is released at once rather than when it lapses.
func (d *DEA) onPeerStart(m *bus.Msg) error {
	if m.Subject == protocol.DEAStartSubject(d.id) {
		return nil
	}
	var s struct {
		Droplet protocol.AppID `json:"droplet"`
		Index   int            `json:"index"`
	}
	if json.Unmarshal(m.Data, &s) != nil || s.Droplet == "" {
		return nil // someone else's bad message; its DEA counts it
	}
	d.mu.Lock()
	released := d.ledger.Release(holdKey(s.Droplet, s.Index))
	d.mu.Unlock()

	if released {
		d.loadChanged()
	}
	return nil
}

// matching returns the instances f selects.
func (d *DEA) matching(f *protocol.InstanceFilter) []*instance {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*instance
	for _, inst := range d.instances {
		if f.Match(inst.app, inst.version, inst.id, inst.index, inst.state) {
			out = append(out, inst)
		}
	}
	return out
}

func (d *DEA) onStop(m *bus.Msg) error {
	f, err := decode[protocol.Stop](m.Data)
	if err != nil {
		return err
	}
	for _, inst := range d.matching(&f) {
		d.goTask(func() { d.stopInstance(inst, protocol.ReasonStopped, true) })
	}
	return nil
}

func (d *DEA) onUpdate(m *bus.Msg) error {
	u, err := decode[protocol.Update](m.Data)
	if err != nil {
		return err
	}
	for _, inst := range d.matching(&protocol.InstanceFilter{Droplet: u.Droplet}) {
		d.mu.Lock()
		var added, removed []string
		for _, x := range u.URIs {
			if !slices.Contains(inst.uris, x) {
				added = append(added, x)
			}
		}
		for _, x := range inst.uris {
			if !slices.Contains(u.URIs, x) {
				removed = append(removed, x)
			}
		}
		inst.uris = slices.Clone(u.URIs)
		var reg, unreg *protocol.Register
		if inst.registered || (inst.state == protocol.StateRunning && inst.stopReason == "") {
			unreg = d.registerMsgLocked(inst, removed)
			reg = d.registerMsgLocked(inst, added)
			inst.registered = len(inst.uris) > 0
		}
		d.mu.Unlock()
		if unreg != nil {
			unreg.Tags = nil
			d.publish(protocol.RouterUnregister, unreg)
		}
		if reg != nil {
			d.publish(protocol.RouterRegister, reg)
		}
	}
	d.saveSnapshot()
	return nil
}

func (d *DEA) onFindDroplet(m *bus.Msg) error {
	f, err := decode[protocol.FindDroplet](m.Data)
	if err != nil {
		return err
	}
	if m.Reply == "" {
		return fmt.Errorf("%w: dea.find.droplet without reply subject", errBadMessage)
	}
	for _, inst := range d.matching(&f.InstanceFilter) {
		d.publish(m.Reply, d.findReply(inst, f.IncludeStats))
	}
	return nil
}

func (d *DEA) findReply(inst *instance, stats bool) protocol.FindDropletReply {
	now := d.now()
	d.mu.Lock()
	r := protocol.FindDropletReply{
		DEA: d.id, Version: inst.version, Droplet: inst.app, Instance: inst.id, Index: inst.index,
		State: inst.state, StateTimestamp: unixFloat(inst.stateTime), Staged: inst.id,
		FileURI: d.fileURL(inst.id, now), Host: inst.host, Port: inst.port,
	}
	running := inst.state == protocol.StateRunning
	c, started, uris := inst.container, inst.startedAt, slices.Clone(inst.uris)
	d.mu.Unlock()
	if !stats || !running || c == nil {
		return r
	}
	st := &protocol.InstanceStats{
		Name: inst.name, Host: r.Host, Port: r.Port, URIs: uris, Uptime: now.Sub(started).Seconds(),
		MemQuota: int64(inst.limits.Mem) << 20, DiskQuota: int64(inst.limits.Disk) << 20,
		FDsQuota: inst.limits.FDs, Cores: runtime.NumCPU(),
	}
	ctx, cancel := context.WithTimeout(d.life, time.Second)
	defer cancel()
	if info, err := c.Info(ctx); err == nil {
		cpu := 0.0
		if up := now.Sub(started); up > 0 {
			cpu = float64(info.Usage.CPU) / float64(up) * 100
		}
		st.Usage = &protocol.Usage{
			Time: now.UTC().Format(vcapTime), CPU: cpu,
			Mem: int64(info.Usage.MemoryBytes >> 10), Disk: int64(info.Usage.DiskBytes),
		}
	}
	r.Stats = st
	return r
}

func (d *DEA) onStatus(m *bus.Msg) error {
	if m.Reply == "" {
		return fmt.Errorf("%w: dea.status without reply subject", errBadMessage)
	}
	d.mu.Lock()
	l := d.ledger.Load()
	r := protocol.DEAStatusReply{
		DEAHello: d.hello(), MaxMemory: d.cfg.MemoryMB, ReservedMemory: l.MemoryMB + l.HeldMemoryMB,
		NumClients: len(d.instances),
	}
	if d.draining {
		r.State = "SHUTTING_DOWN"
	}
	d.mu.Unlock()
	d.publish(m.Reply, r)
	return nil
}

func (d *DEA) onLocate(*bus.Msg) error {
	d.advertise()
	return nil
}

func (d *DEA) onHealthManagerStart(*bus.Msg) error {
	d.heartbeat(nil)
	return nil
}

func (d *DEA) onRouterStart(m *bus.Msg) error {
	h, err := decode[protocol.RouterHello](m.Data)
	if err != nil {
		return err
	}
	d.routerHello(h)
	return nil
}

// routerHello adopts the register interval a router asks for (the
// shortest any router asked for) and re-registers every route at once.
func (d *DEA) routerHello(h protocol.RouterHello) {
	if s := h.MinimumRegisterIntervalInSeconds; s > 0 {
		every := time.Duration(s) * time.Second
		d.mu.Lock()
		changed := every < d.registerEvery
		if changed {
			d.registerEvery = every
		}
		d.mu.Unlock()
		if changed {
			select {
			case d.intervalSet <- every:
			default:
				<-d.intervalSet
				d.intervalSet <- every
			}
		}
	}
	d.registerAll()
}

// greet asks routers for their register interval, once at start.
func (d *DEA) greet(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.GreetTimeout)
	defer cancel()
	m, err := d.bus.Request(ctx, protocol.RouterGreet, []byte("{}"))
	if err != nil {
		d.log.Debug("router-greet-unanswered", "error", err)
		return
	}
	h, err := protocol.Decode[protocol.RouterHello](m.Data)
	if err != nil {
		d.metrics.badMessages.WithLabelValues(protocol.RouterGreet).Inc()
		d.log.Warn("message-dropped", "subject", protocol.RouterGreet, "error", err)
		return
	}
	d.routerHello(h)
}

// registerAll (re-)registers the routes of every RUNNING instance.
func (d *DEA) registerAll() {
	d.mu.Lock()
	var regs []*protocol.Register
	for _, inst := range d.instances {
		if inst.registered {
			if r := d.registerMsgLocked(inst, inst.uris); r != nil {
				regs = append(regs, r)
			}
		}
	}
	d.mu.Unlock()
	for _, r := range regs {
		d.publish(protocol.RouterRegister, r)
	}
}

func (d *DEA) advertise() {
	d.mu.Lock()
	l := d.ledger.Load()
	a := protocol.Advertise{
		ID: d.id, AvailableMemory: max(d.cfg.MemoryMB-l.MemoryMB-l.HeldMemoryMB, 0), Runtimes: d.cfg.Stacks,
		Stacks: d.cfg.Stacks, MaxMemory: d.cfg.MemoryMB, ReservedMemory: l.MemoryMB,
		MaxDisk: d.cfg.DiskMB, ReservedDisk: l.DiskMB, Instances: l.Instances,
		MaxInstances: d.cfg.MaxInstances, AppCounts: make(map[string]int, len(l.Apps)),
		CPULoad: d.cpu, Draining: d.draining,
	}
	for k, v := range l.Apps {
		a.AppCounts[k] = v
	}
	d.mu.Unlock()
	d.publish(protocol.DEAAdvertise, a)
}

// onAdvertise keeps the latest advert of every DEA, this one included (so
// all DEAs measure themselves against the same reference), with its
// receipt time.
func (d *DEA) onAdvertise(m *bus.Msg) error {
	a, err := decode[protocol.Advertise](m.Data)
	if err != nil {
		return err
	}
	capMem, resMem := a.MaxMemory, a.ReservedMemory
	if capMem == 0 {
		// An original DEA: only its free memory is known.
		capMem, resMem = a.AvailableMemory, 0
	}
	stacks := a.Stacks
	if len(stacks) == 0 {
		stacks = a.Runtimes
	}
	adv := placement.Advert{
		Capacity: placement.Capacity{ID: a.ID, MemoryMB: capMem, DiskMB: a.MaxDisk, Instances: a.MaxInstances, Stacks: stacks},
		Load: placement.Load{MemoryMB: resMem, DiskMB: a.ReservedDisk, Instances: a.Instances,
			Apps: a.AppCounts, CPU: a.CPULoad, Draining: a.Draining},
		At: d.now(),
	}
	d.mu.Lock()
	d.peers.Upsert(adv)
	d.peers.Forget(adv.At.Add(-d.cfg.Placement.ForgetAfter))
	d.mu.Unlock()
	return nil
}

// Evacuate empties the DEA ahead of maintenance: it stops answering
// discover and start, reports every instance as DEA_EVACUATION so the
// health manager has replacements started elsewhere, waits
// Config.EvacuationDelay (or until ctx ends) for them, then stops the
// instances (unregister, drain, TERM, KILL) and returns. Run keeps serving
// until its own context ends.
func (d *DEA) Evacuate(ctx context.Context) error {
	insts := d.drainAndNotify(protocol.ReasonDEAEvacuation)
	d.log.Info("dea-evacuating", "instances", len(insts))
	t := time.NewTimer(d.cfg.EvacuationDelay)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	d.stopAll(insts, protocol.ReasonDEAEvacuation)
	return ctx.Err()
}

// drainAndNotify marks the DEA draining and sends droplet.exited with
// reason for every live instance not yet notified; it returns the live
// instances.
func (d *DEA) drainAndNotify(reason string) []*instance {
	d.mu.Lock()
	d.draining = true
	var live []*instance
	var exits []protocol.Exited
	for _, inst := range d.instances {
		if inst.state == protocol.StateCrashed {
			continue
		}
		live = append(live, inst)
		if !inst.notified {
			inst.notified = true
			inst.evacuated = reason == protocol.ReasonDEAEvacuation
			exits = append(exits, protocol.Exited{
				Droplet: inst.app, Version: inst.version, Instance: inst.id, Index: inst.index, Reason: reason,
			})
		}
	}
	d.mu.Unlock()
	for _, ex := range exits {
		d.publish(protocol.DropletExited, ex)
	}
	d.advertise()
	return live
}

// stopAll stops insts concurrently and waits for their supervisors.
func (d *DEA) stopAll(insts []*instance, reason string) {
	var wg sync.WaitGroup
	for _, inst := range insts {
		wg.Go(func() {
			d.stopInstance(inst, reason, true)
			<-inst.done
		})
	}
	wg.Wait()
}

// shutdown ends Run: report and stop every instance, or leave them running
// for the next DEA.
func (d *DEA) shutdown(context.Context) {
	if d.cfg.LeaveRunning {
		d.mu.Lock()
		d.draining = true
		d.mu.Unlock()
		d.saveSnapshot()
		d.log.Info("dea-leaving-instances-running", "instances", d.instanceCount())
		return
	}
	insts := d.drainAndNotify(protocol.ReasonDEAShutdown)
	d.stopAll(insts, protocol.ReasonDEAShutdown)
	d.saveSnapshot()
}
