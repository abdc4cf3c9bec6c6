package linux

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kiln-paas/kiln/warden"
)

// Each container has a cgroup <CgroupParent>/<handle> with two leaves:
// "init" holds the container's init (unlimited, so a tight memory limit
// cannot kill it, and outside the creating program's own cgroup, so a
// service manager restarting that program does not kill containers), and
// "app" holds every process the container runs, with the limits.

// cgroups drives one container's cgroups on either hierarchy.
type cgroups interface {
	// placeInit arranges for cmd (the init) to join the init leaf: at birth
	// on v2 (clone3 CLONE_INTO_CGROUP), or by placed right after start on
	// v1. done releases what placeInit opened.
	placeInit(cmd *exec.Cmd) (placed func(pid int) error, done func(), err error)
	// joinFiles opens what the init needs to start processes in the app
	// leaf: on v1 the app leaf's "tasks" files (one per hierarchy)
	// followed by the init leaf's, on v2 the app leaf's directory (for
	// CLONE_INTO_CGROUP).
	joinFiles() ([]*os.File, error)
	// setLimits applies l and the per-container settings to the app leaf.
	setLimits(l warden.Limits, r resources) error
	// ignore names the init's host pid, which procs, signal and kill
	// leave out: on v1 a thread of the init visits the app leaf while it
	// starts a process.
	ignore(pid int)
	// procs lists the host pids of the app leaf's processes.
	procs() ([]int, error)
	// signal sends sig to every app process.
	signal(sig unix.Signal) error
	// kill kills every app process at once, including ones forking.
	kill() error
	// oomKills counts the app processes the kernel's OOM killer killed.
	oomKills() (uint64, error)
	// usage measures the app leaf's memory (without reclaimable page
	// cache) and CPU time.
	usage() (mem uint64, cpu time.Duration, err error)
	// destroy kills every process of the container, init included, and
	// removes its cgroups. It returns nil when they are already gone.
	destroy() error
}

// resources are the per-container settings that do not come from
// warden.Limits.
type resources struct {
	cpuShares uint64        // relative weight, v1 cpu.shares scale
	cpuQuota  time.Duration // CPU time per cpuPeriod, 0 = unlimited
	pids      int64         // 0 = unlimited
}

// cpuPeriod is the CFS period quotas are expressed against (the kernel's
// default).
const cpuPeriod = 100 * time.Millisecond

// cgroupDriver creates and finds containers' cgroups.
type cgroupDriver interface {
	create(handle string, l warden.Limits, r resources) (cgroups, error)
	load(handle string) (cgroups, error)
	version() int
}

// v1Subsystems are the v1 hierarchies a container joins.
func v1Subsystems() []cgroup1.Name {
	return []cgroup1.Name{cgroup1.Memory, cgroup1.Cpu, cgroup1.Cpuacct, cgroup1.Pids, cgroup1.Freezer}
}

// v1Systemd is systemd's named v1 hierarchy, where it tracks the
// processes of its services. Containers join it too when it exists, so
// restarting the service that created them does not kill them.
const v1Systemd cgroup1.Name = "systemd"

// v1Hierarchy is the subset of the host's v1 hierarchies kiln uses.
func v1Hierarchy() ([]cgroup1.Subsystem, error) {
	all, err := cgroup1.Default()
	if err != nil {
		return nil, err
	}
	var out []cgroup1.Subsystem
	for _, s := range all {
		if s.Name() == v1Systemd || slices.Contains(v1Subsystems(), s.Name()) {
			out = append(out, s)
		}
	}
	return out, nil
}

// pather is implemented by containerd's v1 subsystems.
type pather interface{ Path(string) string }

// cgroupV1Driver places containers under Parent in each v1 hierarchy.
type cgroupV1Driver struct{ parent string }

func (d cgroupV1Driver) version() int { return 1 }

func (d cgroupV1Driver) base(handle string) string { return "/" + d.parent + "/" + handle }

func (d cgroupV1Driver) create(handle string, l warden.Limits, r resources) (cgroups, error) {
	base := d.base(handle)
	app, err := cgroup1.New(cgroup1.StaticPath(base+"/app"), v1Resources(l, r), cgroup1.WithHierarchy(v1Hierarchy))
	if err != nil {
		return nil, fmt.Errorf("cgroup %s/app: %w", base, err)
	}
	init, err := cgroup1.New(cgroup1.StaticPath(base+"/init"), &specs.LinuxResources{}, cgroup1.WithHierarchy(v1Hierarchy))
	if err != nil {
		_ = app.Delete()
		return nil, fmt.Errorf("cgroup %s/init: %w", base, err)
	}
	return &cgroupsV1{base: base, app: app, init: init}, nil
}

func (d cgroupV1Driver) load(handle string) (cgroups, error) {
	base := d.base(handle)
	c := &cgroupsV1{base: base}
	var err1, err2 error
	c.app, err1 = cgroup1.Load(cgroup1.StaticPath(base+"/app"), cgroup1.WithHierarchy(v1Hierarchy))
	c.init, err2 = cgroup1.Load(cgroup1.StaticPath(base+"/init"), cgroup1.WithHierarchy(v1Hierarchy))
	if err := errors.Join(err1, err2); err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			return nil, fmt.Errorf("cgroup %s: %w", base, warden.ErrNotFound)
		}
		return nil, fmt.Errorf("cgroup %s: %w", base, err)
	}
	return c, nil
}

// v1Resources turns limits into containerd's v1 resources. A zero memory
// limit is written as -1 (unlimited) so lowering to zero lifts the limit.
func v1Resources(l warden.Limits, r resources) *specs.LinuxResources {
	mem := int64(-1)
	if l.MemoryBytes > 0 {
		mem = int64(min(l.MemoryBytes, 1<<62))
	}
	res := &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &mem}}
	cpu := &specs.LinuxCPU{}
	if r.cpuShares > 0 {
		shares := r.cpuShares
		cpu.Shares = &shares
	}
	if r.cpuQuota > 0 {
		quota, period := r.cpuQuota.Microseconds(), uint64(cpuPeriod.Microseconds())
		cpu.Quota, cpu.Period = &quota, &period
	}
	res.CPU = cpu
	if r.pids > 0 {
		pids := r.pids
		res.Pids = &specs.LinuxPids{Limit: &pids}
	}
	return res
}

// cgroupsV1 is one container's v1 cgroups.
type cgroupsV1 struct {
	base      string
	app, init cgroup1.Cgroup
	initPID   atomic.Int64
}

func (c *cgroupsV1) ignore(pid int) { c.initPID.Store(int64(pid)) }

func (c *cgroupsV1) placeInit(*exec.Cmd) (func(int) error, func(), error) {
	return func(pid int) error { return c.init.AddProc(uint64(pid)) }, func() {}, nil
}

func (c *cgroupsV1) leafPaths(leaf string) []string {
	var out []string
	for _, s := range c.app.Subsystems() {
		if p, ok := s.(pather); ok {
			out = append(out, p.Path(c.base+"/"+leaf))
		}
	}
	return out
}

func (c *cgroupsV1) subsystemPath(n cgroup1.Name, leaf string) (string, bool) {
	for _, s := range c.app.Subsystems() {
		if p, ok := s.(pather); ok && s.Name() == n {
			return p.Path(c.base + "/" + leaf), true
		}
	}
	return "", false
}

func (c *cgroupsV1) joinFiles() ([]*os.File, error) {
	return openFiles(append(c.leafPaths("app"), c.leafPaths("init")...), "tasks", os.O_WRONLY)
}

func openFiles(dirs []string, name string, flag int) ([]*os.File, error) {
	var files []*os.File
	for _, d := range dirs {
		f, err := os.OpenFile(filepath.Join(d, name), flag, 0)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("cgroup: %w", err)
		}
		files = append(files, f)
	}
	return files, nil
}

func (c *cgroupsV1) setLimits(l warden.Limits, r resources) error {
	if err := c.app.Update(v1Resources(l, r)); err != nil {
		return fmt.Errorf("cgroup %s: update: %w", c.base, err)
	}
	return nil
}

func (c *cgroupsV1) procs() ([]int, error) { return c.procsOf(c.app) }

func (c *cgroupsV1) procsOf(g cgroup1.Cgroup) ([]int, error) {
	subs := g.Subsystems()
	if len(subs) == 0 {
		return nil, nil
	}
	// Every hierarchy holds the same processes; freezer (or whichever
	// comes first) will do.
	name := subs[0].Name()
	for _, s := range subs {
		if s.Name() == cgroup1.Freezer {
			name = s.Name()
		}
	}
	ps, err := g.Processes(name, true)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("cgroup %s: %w", c.base, err)
	}
	out := make([]int, 0, len(ps))
	for _, p := range ps {
		if int64(p.Pid) != c.initPID.Load() || g == c.init {
			out = append(out, p.Pid)
		}
	}
	return out, nil
}

func (c *cgroupsV1) signal(sig unix.Signal) error {
	pids, err := c.procs()
	if err != nil {
		return err
	}
	killPIDs(pids, sig)
	return nil
}

func killPIDs(pids []int, sig unix.Signal) {
	for _, pid := range pids {
		_ = unix.Kill(pid, sig) // ESRCH: exited meanwhile
	}
}

// kill freezes the app leaf so no process can fork while the list is
// read, kills every listed process and thaws it: the kills are delivered
// on thaw.
func (c *cgroupsV1) kill() error { return c.killGroup(c.app) }

func (c *cgroupsV1) killGroup(g cgroup1.Cgroup) error {
	frozen := g.Freeze() == nil
	pids, err := c.procsOf(g)
	killPIDs(pids, unix.SIGKILL)
	if frozen {
		if terr := g.Thaw(); terr != nil {
			err = errors.Join(err, terr)
		}
	}
	return err
}

func (c *cgroupsV1) oomKills() (uint64, error) {
	p, ok := c.subsystemPath(cgroup1.Memory, "app")
	if !ok {
		return 0, nil
	}
	return readKey(filepath.Join(p, "memory.oom_control"), "oom_kill")
}

func (c *cgroupsV1) usage() (uint64, time.Duration, error) {
	m, err := c.app.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return 0, 0, fmt.Errorf("cgroup %s: stat: %w", c.base, err)
	}
	var mem uint64
	var cpu time.Duration
	if m.Memory != nil && m.Memory.Usage != nil {
		mem = m.Memory.Usage.Usage - min(m.Memory.TotalInactiveFile, m.Memory.Usage.Usage)
	}
	if m.CPU != nil && m.CPU.Usage != nil {
		cpu = time.Duration(m.CPU.Usage.Total)
	}
	return mem, cpu, nil
}

func (c *cgroupsV1) destroy() error {
	deadline := time.Now().Add(10 * time.Second)
	for _, g := range []cgroup1.Cgroup{c.app, c.init} {
		for {
			if err := c.killGroup(g); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			// Dying processes leave the group within moments.
			err := g.Delete()
			if err == nil || errors.Is(err, cgroup1.ErrCgroupDeleted) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("cgroup %s: %w", c.base, err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	hier, err := v1Hierarchy()
	if err != nil {
		return err
	}
	for _, s := range hier {
		if p, ok := s.(pather); ok {
			if err := os.Remove(p.Path(c.base)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("cgroup %s: %w", c.base, err)
			}
		}
	}
	return nil
}

// writeControl writes a cgroup control file (which must exist: cgroupfs
// cannot create files).
func writeControl(file, value string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readKey reads "key value" lines (memory.oom_control, memory.events) and
// returns key's value; a missing key is 0.
func readKey(file, key string) (uint64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, fmt.Errorf("cgroup: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("cgroup: %s: %w", file, err)
			}
			return n, nil
		}
	}
	return 0, sc.Err()
}

// cgroupV2Driver places containers under Mount/Parent on the unified
// hierarchy.
type cgroupV2Driver struct{ mount, parent string }

func (d cgroupV2Driver) version() int { return 2 }

func (d cgroupV2Driver) group(handle string) string { return "/" + d.parent + "/" + handle }

func (d cgroupV2Driver) create(handle string, l warden.Limits, r resources) (cgroups, error) {
	group := d.group(handle)
	top, err := cgroup2.NewManager(d.mount, group, &cgroup2.Resources{})
	if err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", group, err)
	}
	c := &cgroupsV2{dir: filepath.Join(d.mount, group), top: top}
	// Enabling the controllers for "app" enables them on every ancestor.
	// Only available ones: setLimits reports a limit that needs a missing
	// one (Check requires memory, pids and cpu).
	enable := &cgroup2.Resources{}
	if avail, err := os.ReadFile(filepath.Join(d.mount, "cgroup.controllers")); err == nil {
		have := strings.Fields(string(avail))
		if slices.Contains(have, "memory") {
			enable.Memory = &cgroup2.Memory{}
		}
		if slices.Contains(have, "pids") {
			enable.Pids = &cgroup2.Pids{}
		}
		if slices.Contains(have, "cpu") {
			enable.CPU = &cgroup2.CPU{}
		}
	}
	if c.app, err = top.NewChild("app", enable); err == nil {
		c.init, err = top.NewChild("init", nil)
	}
	if err == nil {
		err = c.setLimits(l, r)
	}
	if err != nil {
		_ = c.destroy()
		return nil, fmt.Errorf("cgroup %s: %w", group, err)
	}
	return c, nil
}

func (d cgroupV2Driver) load(handle string) (cgroups, error) {
	group := d.group(handle)
	dir := filepath.Join(d.mount, group)
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", group, warden.ErrNotFound)
	}
	c := &cgroupsV2{dir: dir}
	var err1, err2, err3 error
	c.top, err1 = cgroup2.Load(group, cgroup2.WithMountpoint(d.mount))
	c.app, err2 = cgroup2.Load(group+"/app", cgroup2.WithMountpoint(d.mount))
	c.init, err3 = cgroup2.Load(group+"/init", cgroup2.WithMountpoint(d.mount))
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("cgroup %s: %w", group, err)
	}
	return c, nil
}

// cgroupsV2 is one container's v2 cgroups.
type cgroupsV2 struct {
	dir            string // host path of <parent>/<handle>
	top, app, init *cgroup2.Manager
}

// ignore does nothing: on v2 processes are born in the app leaf, and no
// thread of the init ever joins it.
func (c *cgroupsV2) ignore(int) {}

func (c *cgroupsV2) placeInit(cmd *exec.Cmd) (func(int) error, func(), error) {
	f, err := os.Open(filepath.Join(c.dir, "init"))
	if err != nil {
		return nil, nil, fmt.Errorf("cgroup: %w", err)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = int(f.Fd())
	return func(int) error { return nil }, func() { f.Close() }, nil
}

func (c *cgroupsV2) joinFiles() ([]*os.File, error) {
	return openFiles([]string{filepath.Join(c.dir, "app")}, ".", os.O_RDONLY|unix.O_DIRECTORY)
}

// setLimits writes the v2 files directly: containerd's v2 resources cannot
// express "max" for memory.
func (c *cgroupsV2) setLimits(l warden.Limits, r resources) error {
	app := filepath.Join(c.dir, "app")
	mem := "max"
	if l.MemoryBytes > 0 {
		mem = strconv.FormatUint(l.MemoryBytes, 10)
	}
	pids := "max"
	if r.pids > 0 {
		pids = strconv.FormatInt(r.pids, 10)
	}
	files := [][2]string{{"memory.max", mem}, {"memory.swap.max", "max"}, {"pids.max", pids}}
	if l.MemoryBytes > 0 {
		files[1][1] = "0" // the limit is on memory, not memory plus swap
	}
	if r.cpuShares > 0 {
		// The conversion runc and systemd use: shares 2..262144 onto
		// weight 1..10000.
		w := 1 + (min(max(r.cpuShares, 2), 262144)-2)*9999/262142
		files = append(files, [2]string{"cpu.weight", strconv.FormatUint(w, 10)})
	}
	quota := "max"
	if r.cpuQuota > 0 {
		quota = strconv.FormatInt(r.cpuQuota.Microseconds(), 10)
	}
	files = append(files, [2]string{"cpu.max", quota + " " + strconv.FormatInt(cpuPeriod.Microseconds(), 10)})
	for _, f := range files {
		err := writeControl(filepath.Join(app, f[0]), f[1])
		// A missing file is a missing controller (or no swap): fine as
		// long as nothing is to be limited with it.
		if errors.Is(err, os.ErrNotExist) && (f[0] == "memory.swap.max" || strings.HasPrefix(f[1], "max")) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cgroup: %s: %w", f[0], err)
		}
	}
	return nil
}

func (c *cgroupsV2) procs() ([]int, error) {
	ps, err := c.app.Procs(true)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = int(p)
	}
	return out, nil
}

func (c *cgroupsV2) signal(sig unix.Signal) error {
	pids, err := c.procs()
	if err != nil {
		return err
	}
	killPIDs(pids, sig)
	return nil
}

// kill writes cgroup.kill, which the kernel applies to the whole group
// atomically (containerd falls back to freezing on kernels before 5.14).
func (c *cgroupsV2) kill() error { return c.app.Kill() }

func (c *cgroupsV2) oomKills() (uint64, error) {
	return readKey(filepath.Join(c.dir, "app", "memory.events"), "oom_kill")
}

func (c *cgroupsV2) usage() (uint64, time.Duration, error) {
	m, err := c.app.StatFiltered(cgroup2.StatCPU | cgroup2.StatMemory)
	if err != nil {
		return 0, 0, fmt.Errorf("cgroup: stat: %w", err)
	}
	var mem uint64
	var cpu time.Duration
	if m.Memory != nil {
		mem = m.Memory.Usage - min(m.Memory.InactiveFile, m.Memory.Usage)
	}
	if m.CPU != nil {
		cpu = time.Duration(m.CPU.UsageUsec) * time.Microsecond
	}
	return mem, cpu, nil
}

func (c *cgroupsV2) destroy() error {
	if _, err := os.Stat(c.dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if c.top != nil {
		if err := c.top.Kill(); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cgroup: kill: %w", err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, leaf := range []string{"app", "init", ""} {
		dir := filepath.Join(c.dir, leaf)
		for {
			err := unix.Rmdir(dir)
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			// EBUSY until the killed processes have left.
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				return fmt.Errorf("cgroup: remove %s: %w", dir, err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}
