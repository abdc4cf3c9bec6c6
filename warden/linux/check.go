package linux

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/containerd/cgroups/v3/cgroup1"
	"golang.org/x/sys/unix"
)

// ErrUnavailable is returned (wrapped, with the details) by Check and New
// when the host cannot run this backend.
var ErrUnavailable = errors.New("linux: host cannot run namespaced containers")

// Check reports whether this host can run the backend with the default
// configuration: it returns nil, or an error matching ErrUnavailable that
// lists every missing piece (root, each namespace kind, creating
// namespaces, each cgroup controller, a writable cgroup hierarchy).
// Programs use it to choose between this backend and warden/process.
func Check() error { return checkHost(DefaultConfig()) }

// checkHost is Check for cfg.
func checkHost(cfg Config) error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, fmt.Sprintf("root privileges (running as uid %d)", os.Geteuid()))
	}
	for _, ns := range []string{"pid", "mnt", "uts", "ipc"} {
		if _, err := os.Stat("/proc/self/ns/" + ns); err != nil {
			missing = append(missing, fmt.Sprintf("%s namespaces (/proc/self/ns/%s: %v)", ns, ns, err))
		}
	}
	if len(missing) == 0 {
		if err := probeNamespaces(); err != nil {
			missing = append(missing, fmt.Sprintf("creating namespaces (%v)", err))
		}
	}
	missing = append(missing, checkCgroups(cfg)...)
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("%w: missing %s", ErrUnavailable, strings.Join(missing, "; "))
}

// probeNamespaces runs a trivial program in the namespaces a container
// uses: seccomp profiles and container runtimes often forbid it even to
// root.
func probeNamespaces() error {
	prog := ""
	for _, p := range []string{"/bin/true", "/usr/bin/true"} {
		if _, err := os.Stat(p); err == nil {
			prog = p
			break
		}
	}
	if prog == "" {
		return errors.New("no /bin/true to probe with")
	}
	cmd := exec.Command(prog)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC,
	}
	return cmd.Run()
}

// checkCgroups lists what the chosen cgroup hierarchy lacks.
func checkCgroups(cfg Config) []string {
	v := cgroupVersion(cfg)
	if v == 0 {
		return []string{"a mounted cgroup hierarchy (/sys/fs/cgroup)"}
	}
	var missing []string
	if v == 2 {
		b, err := os.ReadFile(filepath.Join(cfg.CgroupMount, "cgroup.controllers"))
		if err != nil {
			return []string{fmt.Sprintf("the cgroup v2 hierarchy (%v)", err)}
		}
		have := strings.Fields(string(b))
		for _, c := range []string{"memory", "pids", "cpu"} {
			if !slices.Contains(have, c) {
				missing = append(missing, fmt.Sprintf("the cgroup v2 %s controller (not in %s/cgroup.controllers)", c, cfg.CgroupMount))
			}
		}
		if err := unix.Access(cfg.CgroupMount, unix.W_OK); err != nil {
			missing = append(missing, fmt.Sprintf("a writable cgroup v2 hierarchy (%s: %v)", cfg.CgroupMount, err))
		}
		return missing
	}
	hier, err := v1Hierarchy()
	if err != nil {
		return []string{fmt.Sprintf("cgroup v1 hierarchies (%v)", err)}
	}
	for _, n := range v1Subsystems() {
		i := slices.IndexFunc(hier, func(s cgroup1.Subsystem) bool { return s.Name() == n })
		if i < 0 {
			missing = append(missing, fmt.Sprintf("the cgroup v1 %s hierarchy", n))
			continue
		}
		if p, ok := hier[i].(pather); ok {
			if err := unix.Access(p.Path("/"), unix.W_OK); err != nil {
				missing = append(missing, fmt.Sprintf("a writable cgroup v1 %s hierarchy (%s: %v)", n, p.Path("/"), err))
			}
		}
	}
	return missing
}
