package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/netd/lab/chaos"
)

func newLabChaosCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "run a seeded chaos soak on the lab: random faults, a prober between every pod pair, invariants and budgets",
		Long: `Runs a random sequence of faults on random nodes of the lab, with random
gaps, from a seed that reproduces it: netd killed (kill -9) and restarted,
SIGTERM restarts (graceful and withdraw stop modes), SIGSTOP shorter and
longer than the BGP hold time, LAN and overlay link flaps, netem loss and
delay on a node's overlay link, a valid and a broken policy reload, and
the policy's external BGP peer (a gobgpd on the LAN) flapping while it
announces what netd must never install.

Meanwhile every pod pings every other pod (--interval) and each lost echo
request is attributed to the fault in progress. After each fault is lifted
the invariants must hold again within --settle-timeout: every node's netd
table holds exactly the routes the policy and the live state call for
(next hop, device, MTU; nothing stale or missing), the foreign routes
planted at the start (table 244 and main) are untouched, every session is
established, every netd runs the expected policy. netd's goroutines, open
fds and RSS must not grow over the run.

The report is one row per fault class: faults, packets lost, recovery
p50/p99, budget, verdict. Budgets: 0 lost for restarts, reloads, the
external peer and pairs not crossing a netem link; at most the detection
time (1s) per pod pair for silent failures (SIGSTOP, link cuts) on pairs
whose path they do not cut. Exit status 1 on any violated invariant or
budget, naming the seed and the fault.

With no lab of that name it brings one up (and down at the end unless
--keep); with a lab already up (netd lab up --name ...) it runs on it.`,
		Example: `  netd lab chaos --name hchaos --duration 30m --seed 42
  netd lab chaos --duration 2m --seed 7 --classes kill9,sigterm-graceful,reload-broken
  netd lab chaos --kube --duration 10m`,
		Args: noArgs,
	}
	var output string
	fs, name, stateDir := labFlags(cmd)
	addOutputFlag(cmd, &output, "text", "text", "json", "yaml")
	duration := fs.Duration("duration", 5*time.Minute, "how long to inject faults")
	seed := fs.Uint64("seed", 0, "seed of the fault sequence (0: from the clock; printed to reproduce)")
	classes := fs.String("classes", "all", "comma-separated fault classes: "+fmt.Sprint(chaos.AllClasses))
	gapMin := fs.Duration("gap-min", 2*time.Second, "shortest quiet time before a fault")
	gapMax := fs.Duration("gap-max", 10*time.Second, "longest quiet time before a fault")
	interval := fs.Duration("interval", 20*time.Millisecond, "echo request interval per pod pair (10-20ms)")
	settle := fs.Duration("settle-timeout", 2*time.Minute, "how long the invariants may take to hold again after a fault")
	policyPath := fs.String("policy", defaultLabPolicy, "policy file of the lab it brings up")
	overlay := fs.String("overlay", "emulated", "overlay of the lab it brings up: emulated or tailscale")
	keep := fs.Bool("keep", false, "leave the lab it brought up running")
	kubeAPI := fs.Bool("kube", false, "run every netd with --kubeconfig against a real kube-apiserver and etcd ($KUBE_APISERVER, $ETCD or scripts/kube-tools.sh), pod blocks from Calico BlockAffinities; adds the apiserver-restart and affinity-churn faults")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, stdout, stderr := cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()
		if *overlay != "emulated" && *overlay != "tailscale" {
			return usageErrorf(cmd, "--overlay must be emulated or tailscale, not %q", *overlay)
		}
		cs, err := chaos.ParseClasses(*classes)
		if err != nil {
			return usageErrorf(cmd, "--classes: %v", err)
		}
		if *interval < time.Millisecond || *gapMax < *gapMin || *duration <= 0 {
			return usageErrorf(cmd, "need --interval >= 1ms, --gap-max >= --gap-min and --duration > 0")
		}
		if *seed == 0 {
			*seed = uint64(time.Now().UnixNano() % 1e9)
		}
		log := slog.New(slog.NewTextHandler(stderr, nil))
		dir := *stateDir
		if dir == "" {
			dir = lab.StateDirFor(*name)
		}
		l, err := lab.Load(dir, log)
		if errors.Is(err, lab.ErrNoLab) {
			if l, err = upChaosLab(ctx, *name, dir, *policyPath, *overlay, cmd, log); !*keep {
				upped := l
				defer func() {
					dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
					defer cancel()
					if upped != nil {
						if err := lab.DownTailnet(dctx, upped); err != nil {
							log.Warn("ending the lab's tailnet", "err", err)
						}
					}
					if err := lab.Down(dctx, *name, dir, log); err != nil {
						log.Warn("lab down", "err", err)
					}
				}()
			}
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "chaos soak on lab %s, seed %d (reproduce: netd lab chaos --seed %d --duration %v --classes %s)\n", l.Name, *seed, *seed, *duration, *classes)
		rep, err := chaos.Run(ctx, l, chaos.Config{Seed: *seed, Duration: *duration, Classes: cs, GapMin: *gapMin, GapMax: *gapMax,
			Interval: *interval, SettleTimeout: *settle, Kube: *kubeAPI, Dir: l.StateDir, Compile: compileSource, Logger: log})
		if rep != nil {
			if output != "text" {
				if werr := writeStructured(stdout, output, rep); werr != nil {
					return werr
				}
			} else {
				rep.Print(stdout)
			}
		}
		if err != nil {
			return err
		}
		if !rep.OK() {
			return exitError{code: exitFailure}
		}
		return nil
	}
	return cmd
}

// upChaosLab brings up the lab the soak runs on.
func upChaosLab(ctx context.Context, name, dir, policyPath, overlay string, cmd *cobra.Command, log *slog.Logger) (*lab.Lab, error) {
	data, st, err := loadLabPolicy(policyPath, policyPath == defaultLabPolicy, cmd.InOrStdin(), log)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding own executable: %w", err)
	}
	cfg := lab.Config{Name: name, StateDir: dir, State: st, Policy: data, Netd: self, ConvergeTimeout: 90 * time.Second, Logger: log}
	if overlay == "tailscale" {
		tc, err := tailscaleTools(ctx, cmd.ErrOrStderr())
		if err != nil {
			return nil, err
		}
		tc.Credentials = true
		l, _, err := lab.UpTailscale(ctx, cfg, tc)
		return l, err
	}
	return lab.Up(ctx, cfg)
}
