package lab

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
)

var systemdKinds = []string{KindSystemd, KindSystemdTailscale, KindSystemdKube}

// The container's unit is the module's unit with only the store paths
// mapped: line for line the same, except the lines that held a
// placeholder, and no placeholder left but X-Reload-Triggers'.
func TestContainerUnitMapsOnlyStorePaths(t *testing.T) {
	for _, kind := range systemdKinds {
		for _, node := range append(slices.Clone(labNodes), "n9") {
			u, err := NixOSUnitFor(kind, node)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ContainerUnit(u)
			if err != nil {
				t.Fatalf("%s/%s: %v", kind, node, err)
			}
			in, out := strings.Split(u.Unit, "\n"), strings.Split(got, "\n")
			if len(in) != len(out) {
				t.Fatalf("%s/%s: %d lines became %d", kind, node, len(in), len(out))
			}
			for i := range in {
				if in[i] != out[i] && !placeholderRE.MatchString(in[i]) {
					t.Errorf("%s/%s: line %q changed to %q", kind, node, in[i], out[i])
				}
				if m := placeholderRE.FindString(out[i]); m != "" && !strings.HasPrefix(out[i], "X-Reload-Triggers=") {
					t.Errorf("%s/%s: placeholder %s left in %q", kind, node, m, out[i])
				}
			}
			for _, want := range []string{
				"ExecStart=/usr/local/bin/netd run '--policy=/etc/netd/policy.yaml' '--node=" + node + "'",
				"ExecReload=/usr/bin/kill -HUP $MAINPID",
				`Environment="PATH=/usr/bin:/usr/bin:/usr/bin:/usr/bin:/usr/bin:/usr/sbin:/usr/sbin:/usr/sbin:/usr/sbin:/usr/sbin"`,
			} {
				if !strings.Contains(got, want+"\n") && !strings.Contains(got, want+" ") {
					t.Errorf("%s/%s: unit lacks %q", kind, node, want)
				}
			}
		}
	}
}

func TestContainerUnitRefusesUnknownStorePaths(t *testing.T) {
	u := NixOSUnit{Unit: "[Service]\nExecStart=@netd@/bin/netd run\nExecStartPre=@iproute2@/bin/ip link\n"}
	if _, err := ContainerUnit(u); err == nil || !strings.Contains(err.Error(), "@iproute2@") {
		t.Fatalf("ContainerUnit with @iproute2@: %v, want an error naming it", err)
	}
}

// The systemd kinds are the deployed unit: graceful stop (the module's
// default), and only the listed lab differences.
func TestSystemdKindsAreTheDeployedUnit(t *testing.T) {
	for _, kind := range systemdKinds {
		for _, node := range labNodes {
			u, err := NixOSUnitFor(kind, node)
			if err != nil {
				t.Fatal(err)
			}
			bare, err := NixOSUnitFor(overlayEmulated, node)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(u.Argv, "--stop-mode=graceful") {
				t.Errorf("%s/%s: not the deployed --stop-mode=graceful: %q", kind, node, u.Argv)
			}
			// Flags beyond the bare lab's: exactly what the kind adds.
			var extra []string
			for _, a := range u.Argv {
				if !slices.Contains(bare.Argv, a) && a != "--stop-mode=graceful" {
					extra = append(extra, a)
				}
			}
			want := map[string][]string{
				KindSystemd:          nil,
				KindSystemdTailscale: {"--tailscale-socket=/run/tailscale/tailscaled.sock"},
				KindSystemdKube:      {"--kubeconfig=%d/kubeconfig", "--sync-calico=true"},
			}[kind]
			if !slices.Equal(extra, want) {
				t.Errorf("%s/%s: flags beyond the bare lab's %q, want %q", kind, node, extra, want)
			}
			hasCred := strings.Contains(u.Unit, "\nLoadCredential=kubeconfig:/var/lib/secrets/kubernetes/netd.kubeconfig\n")
			if hasCred != (kind == KindSystemdKube) {
				t.Errorf("%s/%s: LoadCredential of the kubeconfig present = %v", kind, node, hasCred)
			}
		}
	}
}

func TestMountsUnder(t *testing.T) {
	if got := unescapeMount(`/run/a\040b/root`); got != "/run/a b/root" {
		t.Errorf("unescapeMount = %q", got)
	}
	ms, err := mountsUnder("/proc")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ms, "/proc") {
		t.Errorf("mountsUnder(/proc) = %v, want /proc in it", ms)
	}
	if ms, _ := mountsUnder("/proc/no/such/dir"); len(ms) != 0 {
		t.Errorf("mountsUnder of a plain path = %v", ms)
	}
}

func TestContainerCgroupsAreTheLabs(t *testing.T) {
	cgs, err := containerCgroups("lab1", "firebat")
	if err != nil {
		testutil.Skip(t, "no systemd cgroup hierarchy here: %v", err)
	}
	for _, cg := range cgs {
		if !strings.HasSuffix(cg, "/netd-lab/lab1/firebat") || !strings.HasPrefix(cg, "/sys/fs/cgroup") {
			t.Errorf("cgroup %s is not the lab's", cg)
		}
	}
	if isNspawnOf(os.Getpid(), "lab1-firebat") {
		t.Error("the test process taken for systemd-nspawn")
	}
}

// needRootfs returns the systemd lab's root file system or skips.
func needRootfs(t *testing.T) string {
	t.Helper()
	needRoot(t)
	rootfs := os.Getenv("NETD_LAB_ROOTFS")
	why := ""
	switch _, err := exec.LookPath("systemd-nspawn"); {
	case err != nil:
		why = "systemd-nspawn not found (apt-get install systemd-container)"
	case rootfs == "":
		why = `NETD_LAB_ROOTFS is not set: eval "$(bash scripts/systemd-rootfs.sh)"`
	}
	if why != "" {
		testutil.Skip(t, "%s", why)
	}
	return rootfs
}

// Down removes the containers of a crashed run by their cgroups, when
// lab.json lists the namespaces but not the containers: no nspawn, no
// mount, no cgroup, no namespace is left.
func TestSystemdLabDownAfterCrash(t *testing.T) {
	rootfs := needRootfs(t)
	st := testState()
	st.Nodes = st.Nodes[:2]
	name, dir := fmt.Sprintf("dns%04x", rand.IntN(1<<16)), t.TempDir()
	log := slog.New(slog.NewTextHandler(tWriter{t}, nil))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = Down(ctx, name, dir, log)
	})
	// No netd runs (every node held): the containers are the subject.
	l, err := Up(ctx, Config{Name: name, State: st, Policy: []byte("# test\n"), StateDir: dir, Logger: log,
		Netd: "/bin/true", Rootfs: rootfs, Hold: []string{st.Nodes[0].Name, st.Nodes[1].Name}})
	if err != nil {
		t.Fatal(err)
	}
	var nspawns []*Process
	var cgs []string
	for _, n := range l.Nodes {
		out, err := l.Systemctl(ctx, n.Name, "is-system-running")
		if s := strings.TrimSpace(out); err != nil || s != "running" {
			t.Errorf("%s: system %q (%v)", n.Name, s, err)
		}
		if h, _ := l.InContainer(ctx, n.Name, "hostname"); strings.TrimSpace(h) != n.Name {
			t.Errorf("%s: hostname %q", n.Name, h)
		}
		nspawns = append(nspawns, n.Container.Nspawn)
		cgs = append(cgs, n.Container.Cgroups...)
	}
	// The crash: the state file lists the namespaces (Build records each
	// before making it) but none of the containers (as when netd lab up
	// dies while booting them). Down finds them by their cgroups.
	crashed, err := Load(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range crashed.Nodes {
		n.Container = nil
	}
	if err := crashed.save(); err != nil {
		t.Fatal(err)
	}
	if err := Down(ctx, name, dir, log); err != nil {
		t.Fatal(err)
	}
	for _, p := range nspawns {
		if alive(p) {
			t.Errorf("systemd-nspawn pid %d survived lab down", p.PID)
		}
	}
	for _, cg := range cgs {
		if _, err := os.Stat(cg); err == nil {
			t.Errorf("cgroup %s left", cg)
		}
	}
	if ms, _ := mountsUnder(dir); len(ms) > 0 {
		t.Errorf("mounts left: %v", ms)
	}
	if left := l.ownNamespaces(); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
}
