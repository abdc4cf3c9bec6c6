package dea

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/kiln-paas/kiln/bus/protocol"
	"github.com/kiln-paas/kiln/dea/placement"
	"github.com/kiln-paas/kiln/warden"
)

// snapshot is the DEA's persisted instance table, written after every
// change so a restarted DEA can reattach to its instances.
type snapshot struct {
	DEA       string           `json:"dea"`
	Saved     time.Time        `json:"saved"`
	Instances []instanceRecord `json:"instances"`
}

type instanceRecord struct {
	ID              string          `json:"id"`
	State           string          `json:"state"`
	StateTimestamp  time.Time       `json:"state_timestamp"`
	StartedAt       time.Time       `json:"started_at"`
	Created         time.Time       `json:"created"`
	URIs            []string        `json:"uris"`
	Registered      bool            `json:"registered"`
	Host            string          `json:"host"`
	HostIP          string          `json:"host_ip"`
	Port            int             `json:"port"`
	Limits          protocol.Limits `json:"limits"`
	Start           protocol.Start  `json:"start"`
	ExitStatus      int             `json:"exit_status"`
	ExitDescription string          `json:"exit_description,omitempty"`
	Notified        bool            `json:"notified"`
}

func readSnapshot(path string) (snapshot, error) {
	var s snapshot
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("dea: snapshot %s: %w", path, err)
	}
	return s, nil
}

// saveSnapshot writes the instance table atomically (temporary file,
// fsync, rename), so a crash leaves the old or the new table, never a torn
// one.
func (d *DEA) saveSnapshot() {
	d.mu.Lock()
	s := snapshot{DEA: d.id, Saved: d.now(), Instances: make([]instanceRecord, 0, len(d.instances))}
	for _, inst := range d.instances {
		s.Instances = append(s.Instances, instanceRecord{
			ID: inst.id, State: inst.state, StateTimestamp: inst.stateTime, StartedAt: inst.startedAt,
			Created: inst.created, URIs: slices.Clone(inst.uris), Registered: inst.registered,
			Host: inst.host, HostIP: inst.hostIP, Port: inst.port, Limits: inst.limits, Start: inst.start,
			ExitStatus: inst.exitStatus, ExitDescription: inst.exitDesc, Notified: inst.notified,
		})
	}
	d.mu.Unlock()
	slices.SortFunc(s.Instances, func(a, b instanceRecord) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	d.snapMu.Lock()
	defer d.snapMu.Unlock()
	if err := writeFileAtomic(d.snapPath, s); err != nil {
		d.log.Error("snapshot-failed", "error", err)
	}
}

func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".instances-*.json")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// recoverInstances reloads the snapshot: RUNNING instances whose process
// still runs are reattached (no restart) and supervised again, dead ones
// go through the crash path, crashed ones are kept for their logs, and
// containers of this DEA that the snapshot does not know are destroyed.
func (d *DEA) recoverInstances(ctx context.Context) {
	snap, err := readSnapshot(d.snapPath)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			d.log.Error("snapshot-unreadable", "error", err)
		}
		return
	}
	if snap.DEA != d.id {
		d.log.Warn("snapshot-of-other-dea-ignored", "snapshot_dea", snap.DEA)
		return
	}
	known := map[string]bool{}
	for _, rec := range snap.Instances {
		inst := d.fromRecord(rec)
		known[inst.handle()] = true
		switch rec.State {
		case protocol.StateCrashed:
			d.mu.Lock()
			d.instances[inst.id] = inst
			d.mu.Unlock()
		case protocol.StateRunning:
			if err := d.reattach(ctx, inst); err != nil {
				d.log.Warn("instance-lost-across-restart", "instance", inst.id, "error", err)
				d.lost(inst, "lost while the DEA restarted: "+err.Error())
			}
		default:
			d.lost(inst, "DEA restarted while the instance was "+rec.State)
		}
	}
	// Orphans: containers of this DEA the snapshot does not know.
	cs, err := d.backend.Containers(ctx, warden.Properties{PropertyDEA: d.id})
	if err == nil {
		for _, c := range cs {
			if !known[c.Handle()] {
				d.log.Info("orphan-container-destroyed", "handle", c.Handle())
				_ = d.backend.Destroy(ctx, c.Handle())
			}
		}
	}
	d.saveSnapshot()
}

func (d *DEA) fromRecord(rec instanceRecord) *instance {
	s := rec.Start
	inst := d.newInstance(&s, rec.ID, rec.Limits)
	inst.state, inst.stateTime, inst.startedAt, inst.created = rec.State, rec.StateTimestamp, rec.StartedAt, rec.Created
	inst.uris, inst.registered = rec.URIs, rec.Registered
	inst.host, inst.hostIP, inst.port = rec.Host, rec.HostIP, rec.Port
	inst.exitStatus, inst.exitDesc, inst.notified = rec.ExitStatus, rec.ExitDescription, rec.Notified
	return inst
}

// reattach finds a recovered instance's container and process and
// supervises it again.
func (d *DEA) reattach(ctx context.Context, inst *instance) error {
	c, err := d.backend.Lookup(ctx, inst.handle())
	if err != nil {
		return err
	}
	inst.container = c
	lim := newLogLimiter(d.cfg.LogRate, d.cfg.LogBurst)
	proc, err := c.Attach(ctx, appProcess, warden.ProcessIO{
		Stdout: &logWriter{d: d, inst: inst, stream: "stdout", lim: lim},
		Stderr: &logWriter{d: d, inst: inst, stream: "stderr", lim: lim},
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.instances[inst.id] = inst
	d.ledger.Reserve(inst.id, placement.Request{App: string(inst.app), Index: inst.index, MemoryMB: inst.limits.Mem, DiskMB: inst.limits.Disk})
	d.mu.Unlock()
	d.log.Info("instance-recovered", "app", inst.app, "instance", inst.id, "index", inst.index)
	if !d.goTask(func() { d.supervise(inst, proc) }) {
		return fmt.Errorf("dea is stopping")
	}
	return nil
}

// lost reports a recovered instance that did not survive: crash path
// (unregister, droplet.exited CRASHED) and its container removed.
func (d *DEA) lost(inst *instance, desc string) {
	if inst.registered {
		if r := d.registerMsgLocked(inst, inst.uris); r != nil {
			r.Tags = nil
			d.publish(protocol.RouterUnregister, r)
		}
	}
	if !inst.notified {
		d.publish(protocol.DropletExited, protocol.Exited{
			Droplet: inst.app, Version: inst.version, Instance: inst.id, Index: inst.index,
			Reason: protocol.ReasonCrashed, CrashTimestamp: d.now().Unix(),
			ExitStatus: warden.ExitStatusUnknown, ExitDescription: desc,
		})
	}
	d.destroyContainer(inst)
}
