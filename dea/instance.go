package dea

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/staging/droplet"
	"github.com/kiln-paas/kiln/warden"
)

// Properties of the containers a DEA creates, by which it (and an
// operator's tools) find them again in the backend.
const (
	// PropertyDEA holds the id of the DEA that created the container.
	PropertyDEA = "kiln.dea"
	// PropertyInstance holds the instance id.
	PropertyInstance = "kiln.instance"
	// PropertyApp holds the app id.
	PropertyApp = "kiln.app"
)

// appProcess is the process id of the app inside its container.
const appProcess = "app"

// instance is one instance of an app on this DEA. Fields below mu-guarded
// are read and written with DEA.mu held.
type instance struct {
	// Fixed at creation.
	id      string
	app     protocol.AppID
	version string
	index   int
	name    string
	limits  protocol.Limits
	start   protocol.Start // the start message (nil Services etc. allowed)
	created time.Time
	ctx     context.Context // ends when the instance is told to stop
	cancel  context.CancelFunc
	done    chan struct{} // closed when its supervisor returns

	// Guarded by DEA.mu.
	state       string
	stateTime   time.Time
	startedAt   time.Time
	uris        []string
	registered  bool // routes are registered with routers
	host        string
	hostIP      string
	port        int // host port
	container   warden.Container
	stopReason  string // "" until a stop, shutdown or evacuation
	evacuated   bool
	notified    bool // droplet.exited sent
	crashReason string
	exitStatus  int
	exitDesc    string
}

func (d *DEA) newInstance(s *protocol.Start, id string, limits protocol.Limits) *instance {
	ctx, cancel := context.WithCancel(d.life)
	now := d.now()
	return &instance{
		id: id, app: s.Droplet, version: s.Version, index: s.Index, name: s.Name,
		limits: limits, start: *s, created: now, ctx: ctx, cancel: cancel,
		done: make(chan struct{}), state: protocol.StateStarting, stateTime: now,
		uris: slices.Clone(s.URIs),
	}
}

func (inst *instance) handle() string { return "kiln-" + inst.id }

type exitResult struct {
	status int
	err    error  // the wait itself failed (the DEA is going away)
	desc   string // set when the instance never ran
	remove bool   // drop the record at once (start failures)
}

// supervise takes an instance from STARTING to its end. proc is nil for a
// new instance and the reattached process for a recovered one.
func (d *DEA) supervise(inst *instance, proc warden.Process) {
	defer close(inst.done)
	t0 := time.Now()
	if proc == nil {
		d.instanceLog(inst, fmt.Sprintf("starting instance (index %d) of version %s", inst.index, inst.version))
		var err error
		proc, err = d.launch(inst)
		if err != nil {
			d.metrics.starts.WithLabelValues("failed").Inc()
			d.finish(inst, exitResult{status: warden.ExitStatusUnknown, desc: "failed to start: " + err.Error(), remove: true})
			return
		}
	}
	// A stop cancels inst.ctx after draining: then TERM, grace, KILL.
	stopOnCancel := context.AfterFunc(inst.ctx, func() {
		if d.cfg.LeaveRunning && d.life.Err() != nil {
			return // the DEA is leaving its instances to the next one
		}
		d.stopContainer(inst, d.cfg.StopGrace)
	})
	defer stopOnCancel()
	exited := make(chan exitResult, 1)
	d.tasks.Go(func() error {
		st, err := proc.Wait(d.life)
		exited <- exitResult{status: st, err: err}
		return nil
	})
	if d.instanceState(inst) == protocol.StateStarting {
		hctx, cancel := context.WithTimeout(inst.ctx, d.healthTimeout(inst))
		healthy := make(chan error, 1)
		d.tasks.Go(func() error { healthy <- d.healthCheck(hctx, inst); return nil })
		select {
		case err := <-healthy:
			cancel()
			switch {
			case err == nil:
				d.markRunning(inst, time.Since(t0))
			case inst.ctx.Err() == nil:
				d.mu.Lock()
				inst.crashReason = err.Error()
				d.mu.Unlock()
				d.metrics.starts.WithLabelValues("failed").Inc()
				d.instanceLog(inst, "health check failed: "+err.Error())
				d.stopContainer(inst, 0)
			}
		case r := <-exited:
			cancel()
			d.finish(inst, r)
			return
		}
	}
	d.finish(inst, <-exited)
}

func (d *DEA) instanceState(inst *instance) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return inst.state
}

func (d *DEA) healthTimeout(inst *instance) time.Duration {
	if s := inst.start.HealthCheckTimeout; s > 0 {
		return time.Duration(s) * time.Second
	}
	return d.cfg.HealthCheckTimeout
}

// logsDirTar is a tar archive holding the empty logs/ directory.
var logsDirTar = func() []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "logs/", Typeflag: tar.TypeDir, Mode: 0o755})
	_ = tw.Close()
	return buf.Bytes()
}()

// launch fetches the droplet, creates the container, streams the droplet
// in and starts the app.
func (d *DEA) launch(inst *instance) (warden.Process, error) {
	ctx := inst.ctx
	s := &inst.start
	uri := s.ExecutableURI
	if uri == "" {
		uri = s.ExecutableFile
	}
	f, err := d.cache.open(ctx, s.SHA1, uri)
	if err != nil {
		return nil, fmt.Errorf("fetch droplet: %w", err)
	}
	defer f.Close()
	c, err := d.backend.Create(ctx, warden.ContainerSpec{
		Handle:     inst.handle(),
		Properties: warden.Properties{PropertyDEA: d.id, PropertyInstance: inst.id, PropertyApp: string(inst.app)},
		Limits: warden.Limits{
			MemoryBytes:     uint64(inst.limits.Mem) << 20,
			DiskBytes:       uint64(inst.limits.Disk) << 20,
			FileDescriptors: uint64(inst.limits.FDs),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	d.mu.Lock()
	inst.container = c
	d.mu.Unlock()
	if err := c.StreamIn(ctx, "/", bytes.NewReader(logsDirTar)); err != nil {
		return nil, fmt.Errorf("create logs directory: %w", err)
	}
	info, err := droplet.StreamIn(ctx, c, "/", f)
	if err != nil {
		return nil, fmt.Errorf("extract droplet: %w", err)
	}
	// A backend choosing a free port may race with another program (or
	// its own reservations) for it: a few tries ride that out.
	var pm warden.PortMapping
	for try := 0; try < 3; try++ {
		if pm, err = c.NetIn(ctx, 0, 0); !errors.Is(err, warden.ErrExists) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("map port: %w", err)
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("container info: %w", err)
	}
	started := d.now()
	env, err := appEnv(s, inst.id, int(pm.ContainerPort), inst.limits, started)
	if err != nil {
		return nil, err
	}
	command := s.Command
	if command == "" {
		command = info.StartCommand
	}
	path, args := droplet.LaunchCommand(command)
	lim := newLogLimiter(d.cfg.LogRate, d.cfg.LogBurst)
	proc, err := c.Run(ctx, warden.ProcessSpec{
		ID: appProcess, Path: path, Args: args, Env: warden.MergeEnv(nil, env),
		StdoutPath: stdoutLog, StderrPath: stderrLog,
	}, warden.ProcessIO{
		Stdout: &logWriter{d: d, inst: inst, stream: "stdout", lim: lim},
		Stderr: &logWriter{d: d, inst: inst, stream: "stderr", lim: lim},
	})
	if err != nil {
		return nil, fmt.Errorf("run %q: %w", command, err)
	}
	host := d.cfg.Host
	if host == "" {
		host = ci.HostIP
	}
	d.mu.Lock()
	inst.hostIP, inst.host, inst.port, inst.startedAt = ci.HostIP, host, int(pm.HostPort), started
	d.mu.Unlock()
	return proc, nil
}

// healthCheck waits until the instance is healthy or ctx ends.
func (d *DEA) healthCheck(ctx context.Context, inst *instance) error {
	kind := inst.start.HealthCheckType
	if kind == "" {
		kind = protocol.HealthCheckPort
	}
	if kind == protocol.HealthCheckProcess || kind == protocol.HealthCheckNone {
		return nil
	}
	d.mu.Lock()
	addr := net.JoinHostPort(inst.hostIP, strconv.Itoa(inst.port))
	d.mu.Unlock()
	probe := func(ctx context.Context) error {
		var dl net.Dialer
		conn, err := dl.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	if kind == protocol.HealthCheckHTTP {
		endpoint := inst.start.HealthCheckEndpoint
		if endpoint == "" || endpoint[0] != '/' {
			endpoint = "/" + endpoint
		}
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		probe = func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+endpoint, nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				return fmt.Errorf("GET %s: %s", endpoint, resp.Status)
			}
			return nil
		}
	}
	var last error
	for {
		// Each attempt gets at most a second, as the original's 0.25 s
		// connect timeout plus room for an HTTP answer.
		actx, cancel := context.WithTimeout(ctx, time.Second)
		err := probe(actx)
		cancel()
		if err == nil {
			return nil
		}
		// Keep the app's answer rather than the deadline that cut the
		// last attempt short.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		t := time.NewTimer(d.cfg.HealthCheckInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %s check of %s: %v", ErrHealthCheck, kind, addr, last)
		case <-t.C:
		}
	}
}

// markRunning moves a healthy instance to RUNNING and registers its routes.
func (d *DEA) markRunning(inst *instance, took time.Duration) {
	d.mu.Lock()
	if inst.state != protocol.StateStarting || inst.stopReason != "" {
		d.mu.Unlock()
		return
	}
	inst.state, inst.stateTime = protocol.StateRunning, d.now()
	inst.registered = len(inst.uris) > 0
	reg := d.registerMsgLocked(inst, inst.uris)
	port := inst.port
	d.mu.Unlock()
	d.metrics.starts.WithLabelValues("running").Inc()
	d.metrics.startSeconds.Observe(took.Seconds())
	d.heartbeat(inst)
	if reg != nil {
		d.publish(protocol.RouterRegister, reg)
	}
	d.log.Info("instance-running", "app", inst.app, "instance", inst.id, "index", inst.index, "port", port, "took", took)
	d.instanceLog(inst, fmt.Sprintf("health check passed; instance running on port %d", port))
	d.changed()
}

// registerMsgLocked returns the route message for uris of inst, or nil if
// there is nothing to register.
func (d *DEA) registerMsgLocked(inst *instance, uris []string) *protocol.Register {
	if len(uris) == 0 || inst.port == 0 {
		return nil
	}
	tags := map[string]string{"component": "dea-" + strconv.Itoa(d.cfg.Index)}
	if inst.start.Framework != "" {
		tags["framework"] = inst.start.Framework
	}
	if inst.start.Runtime != "" {
		tags["runtime"] = inst.start.Runtime
	}
	return &protocol.Register{
		DEA: d.id, App: inst.app, Host: inst.host, Port: inst.port, URIs: slices.Clone(uris),
		Tags: tags, PrivateInstanceID: inst.id, PrivateInstanceIndex: strconv.Itoa(inst.index),
	}
}

// finish handles an instance's end: a crash (nobody asked), a stop, a
// shutdown or a failed start.
func (d *DEA) finish(inst *instance, r exitResult) {
	if r.err != nil {
		// The DEA is going away and leaves the process running.
		return
	}
	now := d.now()
	d.mu.Lock()
	reason := inst.stopReason
	crashed := reason == ""
	var unreg *protocol.Register
	if inst.registered {
		unreg = d.registerMsgLocked(inst, inst.uris)
		unreg.Tags = nil
		inst.registered = false
	}
	d.mu.Unlock()
	// Routes go first: every request routed after this point is a 502.
	if unreg != nil {
		d.publish(protocol.RouterUnregister, unreg)
	}
	desc := r.desc
	if desc == "" {
		desc = d.exitDescription(inst, r.status)
	}
	d.mu.Lock()
	if crashed {
		inst.state = protocol.StateCrashed
		reason = protocol.ReasonCrashed
	} else {
		inst.state = protocol.StateStopped
	}
	inst.stateTime, inst.exitStatus, inst.exitDesc = now, r.status, desc
	notify := !inst.notified
	inst.notified = true
	d.ledger.Release(inst.id)
	remove := !crashed || r.remove || inst.start.Flapping
	if remove {
		delete(d.instances, inst.id)
	}
	d.mu.Unlock()
	if notify {
		ex := protocol.Exited{
			Droplet: inst.app, Version: inst.version, Instance: inst.id, Index: inst.index,
			Reason: reason, ExitStatus: r.status, ExitDescription: desc,
		}
		if crashed {
			ex.CrashTimestamp = now.Unix()
		}
		d.publish(protocol.DropletExited, ex)
	}
	d.heartbeat(inst)
	if crashed {
		d.metrics.crashes.Inc()
		d.log.Warn("instance-crashed", "app", inst.app, "instance", inst.id, "index", inst.index, "status", r.status, "description", desc)
		d.instanceLog(inst, fmt.Sprintf("instance (index %d) crashed with status %d: %s", inst.index, r.status, desc))
	} else {
		d.metrics.stops.Inc()
		d.log.Info("instance-stopped", "app", inst.app, "instance", inst.id, "reason", reason)
		d.instanceLog(inst, fmt.Sprintf("instance (index %d) stopped (%s)", inst.index, reason))
	}
	if remove {
		d.destroyContainer(inst)
	} else {
		// Keep the files for crash logs; free ports and stray processes.
		d.stopContainer(inst, 0)
	}
	d.changed()
}

func (d *DEA) exitDescription(inst *instance, status int) string {
	d.mu.Lock()
	reason, c := inst.crashReason, inst.container
	d.mu.Unlock()
	if reason != "" {
		return reason
	}
	if c != nil {
		ctx, cancel := context.WithTimeout(d.life, time.Second)
		info, err := c.Info(ctx)
		cancel()
		if err == nil && slices.Contains(info.Events, warden.EventOutOfMemory) {
			return "out of memory"
		}
	}
	switch {
	case status == warden.ExitStatusUnknown:
		return "app exited (status unknown)"
	case status > 128 && status < 128+65:
		return fmt.Sprintf("app was killed by %s", warden.Signal(status-128))
	}
	return fmt.Sprintf("app exited with status %d", status)
}

// stopInstance stops inst for reason: unregister, drain (when drain and the
// instance was RUNNING), then TERM and KILL through its supervisor. A
// crashed instance is deleted. Repeated calls are no-ops.
func (d *DEA) stopInstance(inst *instance, reason string, drain bool) {
	d.mu.Lock()
	if inst.stopReason != "" {
		d.mu.Unlock()
		return
	}
	inst.stopReason = reason
	if inst.state == protocol.StateCrashed {
		delete(d.instances, inst.id)
		d.mu.Unlock()
		d.log.Info("crashed-instance-deleted", "app", inst.app, "instance", inst.id)
		d.destroyContainer(inst)
		d.changed()
		return
	}
	wasRunning := inst.state == protocol.StateRunning
	var unreg *protocol.Register
	if inst.registered {
		unreg = d.registerMsgLocked(inst, inst.uris)
		unreg.Tags = nil
		inst.registered = false
	}
	d.mu.Unlock()
	if unreg != nil {
		d.publish(protocol.RouterUnregister, unreg)
	}
	if drain && wasRunning && d.cfg.DrainTimeout > 0 {
		t := time.NewTimer(d.cfg.DrainTimeout)
		select {
		case <-t.C:
		case <-d.life.Done():
			t.Stop()
		}
	}
	inst.cancel()
}

func (d *DEA) stopContainer(inst *instance, grace time.Duration) {
	d.mu.Lock()
	c := inst.container
	d.mu.Unlock()
	if c == nil {
		return
	}
	if err := c.Stop(d.life, grace); err != nil && !errors.Is(err, warden.ErrNotFound) {
		d.log.Warn("container-stop-failed", "instance", inst.id, "error", err)
	}
}

func (d *DEA) destroyContainer(inst *instance) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(d.life), 30*time.Second)
	defer cancel()
	if err := d.backend.Destroy(ctx, inst.handle()); err != nil {
		d.log.Warn("container-destroy-failed", "instance", inst.id, "error", err)
	}
}

// heartbeat publishes dea.heartbeat for one instance, or for all when inst
// is nil (sent even when empty only for the full form).
func (d *DEA) heartbeat(inst *instance) {
	d.mu.Lock()
	hb := protocol.Heartbeat{DEA: d.id, Droplets: []protocol.InstanceHeartbeat{}}
	if inst != nil {
		hb.Droplets = append(hb.Droplets, heartbeatOf(inst))
	} else {
		for _, in := range d.instances {
			hb.Droplets = append(hb.Droplets, heartbeatOf(in))
		}
	}
	d.mu.Unlock()
	if inst == nil && len(hb.Droplets) == 0 {
		return
	}
	d.publish(protocol.DEAHeartbeat, hb)
}

func heartbeatOf(inst *instance) protocol.InstanceHeartbeat {
	return protocol.InstanceHeartbeat{
		Droplet: inst.app, Version: inst.version, Instance: inst.id, Index: inst.index,
		State: inst.state, StateTimestamp: unixFloat(inst.stateTime),
	}
}

func unixFloat(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
