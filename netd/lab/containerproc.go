package lab

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Processes inside a systemd container, seen from the host.

// hostPID maps a pid inside the pid namespace of the process leader (a
// container's systemd) to the host pid.
func hostPID(leader, inner int) (int, error) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", leader))
	if err != nil {
		return 0, fmt.Errorf("reading pid namespace of %d: %w", leader, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("listing /proc: %w", err)
	}
	want := strconv.Itoa(inner)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || l != ns {
			continue
		}
		if nspid := statusField(pid, "NSpid"); len(nspid) > 1 && nspid[len(nspid)-1] == want {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no process is pid %d in the container of %d", inner, leader)
}

// statusField returns the fields of a line "Name:\t..." of /proc/PID/status.
func statusField(pid int, name string) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.Fields(rest)
		}
	}
	return nil
}

// ContainerMemory is the memory a node's container uses: the sum over the
// processes inside it (systemd, journald, dbus, logind, netd, ...) of
// their proportional (PSS: shared pages split between their users) and
// resident set sizes, in bytes. nspawn itself (outside) is not counted.
type ContainerMemory struct {
	PSS, RSS int64
	Procs    int
}

// Memory measures a node's container (see ContainerMemory).
func (l *Lab) Memory(node string) (ContainerMemory, error) {
	_, c, err := l.container(node)
	if err != nil {
		return ContainerMemory{}, err
	}
	var m ContainerMemory
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", c.Leader.PID))
	if err != nil {
		return m, fmt.Errorf("reading pid namespace of %s: %w", node, err)
	}
	for _, pid := range cgroupPIDs(c.Cgroups) {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || l != ns {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		if err != nil {
			continue // exited
		}
		m.Procs++
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "Rss:":
				m.RSS += kb << 10
			case "Pss:":
				m.PSS += kb << 10
			}
		}
	}
	return m, nil
}
