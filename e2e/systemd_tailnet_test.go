package e2e

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"

	"github.com/ducksnest/netd/netd/lab"
)

// TestSystemdTailnet: the tailnet lab with every node a systemd container
// running tailscaled.service and the module's netd.service (kind
// systemd-tailscale), tailscaled's operator "netd" as the hosts set it.
// netd, a dynamic user in its sandbox, advertises each node's pod blocks
// through tailscaled's LocalAPI socket, and pods reach one another over
// the tailnet. Without the operator, the LocalAPI refuses netd's write
// and netd names it.
func TestSystemdTailnet(t *testing.T) {
	t.Parallel() // see doc.go
	rootfs := needSystemdLab(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Fatalf("tailscaled needs /dev/net/tun: %v", err)
	}
	tc := tailscaleTools(t)
	tc.UserRoutes = nil
	data, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	st := policyState(t, policyPath, data)
	name, dir := labName(), t.TempDir()
	log := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var l *lab.Lab
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if l != nil {
			if t.Failed() {
				for _, n := range l.Nodes {
					t.Logf("--- journal of netd.service on %s:\n%s", n.Name, l.LogTail(n.Name, 20))
				}
			}
			if err := lab.DownTailnet(ctx, l); err != nil {
				t.Errorf("tailnet down: %v", err)
			}
		}
		if err := lab.Down(ctx, name, dir, log); err != nil {
			t.Errorf("lab down: %v", err)
		}
		if left, _ := filepath.Glob("/run/netns/" + name + "-*"); len(left) > 0 {
			t.Errorf("namespaces left after lab down: %v", left)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	l, tn, err := lab.UpTailscale(ctx, lab.Config{Name: name, State: st, Policy: data, Netd: netdBin, StateDir: dir,
		ConvergeTimeout: 90 * time.Second, Logger: log, Rootfs: rootfs}, tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURE systemd tailnet lab up (4 containers, headscale, tailscaled.service + netd.service each) in %v", time.Since(start).Round(time.Millisecond))

	// netd advertised every node's blocks itself, through the LocalAPI, as
	// the dynamic user "netd" (not root).
	for _, n := range l.Nodes {
		if got := advertised(t, l, n.Name); !slices.Equal(got, prefixStrings(n.PodCIDRs)) {
			t.Errorf("%s: netd advertises %v, want its blocks %v", n.Name, got, n.PodCIDRs)
		}
		pid, err := l.MainPID(ctx, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		if uid := procUID(t, pid); uid == "0" {
			t.Errorf("%s: netd runs as root, not the unit's dynamic user", n.Name)
		}
	}
	rep, err := l.Check(ctx, lab.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		var b strings.Builder
		rep.Print(&b)
		t.Errorf("pod matrix on the systemd tailnet lab:\n%s", b.String())
	}

	// Without the operator, tailscaled refuses netd's write: take the
	// node's block away (as root) and netd's re-advertisement is denied,
	// named in its journal; the operator back, netd advertises again.
	const node = "ultra"
	u, _ := l.Node(node)
	cursor := journalCursor(t, l, node)
	sock := tn.Socket[node]
	tailscaleCLI(t, tc.TailscaleBin, sock, "set", "--operator=")
	tailscaleCLI(t, tc.TailscaleBin, sock, "set", "--advertise-routes=")
	testutil.Poll(t, 60*time.Second, "netd names the refused LocalAPI write", func() (bool, error) {
		_, ok := journalLine(journalSince(t, l, node, cursor), "setting advertised routes", "access denied")
		return ok, nil
	})
	tailscaleCLI(t, tc.TailscaleBin, sock, "set", "--operator=netd")
	testutil.Poll(t, 60*time.Second, "netd advertises its blocks again", func() (bool, error) {
		return slices.Equal(advertised(t, l, node), prefixStrings(u.PodCIDRs)), nil
	})
}

// advertised is the tailnet routes a node's netd says it advertises.
func advertised(t *testing.T, l *lab.Lab, node string) []string {
	t.Helper()
	st, err := l.Status(t.Context(), node)
	if err != nil {
		return nil
	}
	var v struct {
		Tailnet *struct {
			Advertised []string `json:"advertised"`
		} `json:"tailnet"`
	}
	if err := json.Unmarshal(st.Raw, &v); err != nil || v.Tailnet == nil {
		return nil
	}
	slices.Sort(v.Tailnet.Advertised)
	return v.Tailnet.Advertised
}

func prefixStrings(ps []netip.Prefix) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	slices.Sort(out)
	return out
}

// procUID is the real uid of a process.
func procUID(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			return strings.Fields(rest)[0]
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return ""
}

func tailscaleCLI(t *testing.T, bin, sock string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"--socket=" + sock}, args...)...)
	cmd.Env = append(os.Environ(), "TS_NO_LOGS_NO_SUPPORT=true")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tailscale %v: %v: %s", args, err, out)
	}
}
