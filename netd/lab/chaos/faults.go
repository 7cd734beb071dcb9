package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
)

// restartNetd stops (SIGKILL if kill, else SIGTERM) and starts a node's
// netd again, in the stop mode its next SIGTERM fault after fault i needs.
func (r *run) restartNetd(ctx context.Context, node string, i int, kill bool) error {
	var err error
	if kill {
		err = r.lab.KillNetd(ctx, node)
	} else {
		err = r.lab.StopNetd(ctx, node, 10*time.Second)
	}
	if err != nil {
		return err
	}
	return r.lab.StartNetdArgs(ctx, node, "--stop-mode", nextMode(r.faults, i, node))
}

// inject applies fault i and lifts it again (a freeze thawed, a link back
// up, the good policy back); the caller then waits for the invariants.
func (r *run) inject(ctx context.Context, i int, f Fault) error {
	switch f.Class {
	case Kill9:
		return r.restartNetd(ctx, f.Node, i, true)
	case SigtermGraceful, SigtermWithdraw:
		return r.restartNetd(ctx, f.Node, i, false)
	case StopShort, StopLong:
		if err := r.lab.SignalNetd(f.Node, syscall.SIGSTOP); err != nil {
			return err
		}
		err := sleep(ctx, f.Hold)
		if cerr := r.lab.SignalNetd(f.Node, syscall.SIGCONT); cerr != nil {
			return cerr
		}
		return err
	case LANFlap:
		return r.hold(ctx, f, func(up bool) error { return r.lab.SetLANLink(f.Node, up) })
	case OverlayFlap:
		return r.hold(ctx, f, func(up bool) error { return r.lab.SetOverlayLink(f.Node, up) })
	case Netem:
		n, err := r.lab.Node(f.Node)
		if err != nil {
			return err
		}
		return r.hold(ctx, f, func(up bool) error { return r.degrade(context.WithoutCancel(ctx), n.NS, f, !up) })
	case ReloadValid:
		d, err := r.policy.toggle()
		r.digest = d
		return err
	case ReloadBroken:
		if err := r.policy.writeBroken(); err != nil {
			return err
		}
		_, err := testutil.Wait(30*time.Second, "every netd to reject the broken policy", func() (bool, error) {
			for _, n := range r.lab.Nodes {
				st, err := statusOf(ctx, r.lab, n.Name)
				if err != nil || st.Policy.LastError == "" {
					return false, ctx.Err()
				}
			}
			return true, nil
		})
		if werr := r.policy.writeCurrent(); werr != nil {
			return werr
		}
		return err
	case PeerFlap:
		return r.flapPeer(ctx, f.Kill)
	case TailscaledRest:
		return r.tailnet.RestartTailscaled(ctx, f.Node)
	case APIRestart:
		if err := r.kube.server.StopAPIServer(); err != nil {
			return fmt.Errorf("stopping the API server: %w", err)
		}
		err := sleep(ctx, f.Hold)
		if serr := r.kube.server.StartAPIServer(); serr != nil {
			return fmt.Errorf("starting the API server: %w", serr)
		}
		return err
	case AffinityChurn:
		return r.churnAffinity(ctx, f.Node)
	}
	return fmt.Errorf("unknown fault class %q", f.Class)
}

// hold applies set(false), waits f.Hold and applies set(true) (also when
// ctx ends, so that nothing stays cut).
func (r *run) hold(ctx context.Context, f Fault, set func(up bool) error) error {
	if err := set(false); err != nil {
		return err
	}
	err := sleep(ctx, f.Hold)
	if uerr := set(true); uerr != nil {
		return uerr
	}
	return err
}

func tc(ctx context.Context, ns string, args ...string) error {
	out, err := exec.CommandContext(ctx, "tc", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tc -n %s %s: %w: %s", ns, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// nftTable is the table the lossy-link fault adds when the kernel has no
// netem.
const nftTable = "netd_chaos"

// degrade adds (on) or removes the loss and delay of fault f on the
// overlay interface of the node in ns: with netem when the kernel has it,
// otherwise loss alone, by an nftables random drop on the way out.
func (r *run) degrade(ctx context.Context, ns string, f Fault, on bool) error {
	dev := r.lab.Overlay.Interface
	if r.netem {
		if !on {
			return tc(ctx, ns, "qdisc", "del", "dev", dev, "root")
		}
		return tc(ctx, ns, "qdisc", "replace", "dev", dev, "root", "netem",
			"loss", fmt.Sprintf("%d%%", f.Loss), "delay", fmt.Sprintf("%dms", f.Delay.Milliseconds()))
	}
	if !on {
		_, err := nft(ctx, ns, "delete table inet "+nftTable)
		return err
	}
	_, err := nft(ctx, ns, fmt.Sprintf("add table inet %[1]s\nadd chain inet %[1]s out { type filter hook postrouting priority 0; }\nadd rule inet %[1]s out oifname %[2]q numgen random mod 100 < %[3]d drop\n", nftTable, dev, f.Loss))
	return err
}

// hasNetem reports whether tc can add a netem qdisc (in ns, on lo).
func hasNetem(ctx context.Context, ns string) bool {
	if tc(ctx, ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms") != nil {
		return false
	}
	_ = tc(ctx, ns, "qdisc", "del", "dev", "lo", "root")
	return true
}

func nft(ctx context.Context, ns, script string) (string, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("nft in %s (%q): %w: %s", ns, script, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
