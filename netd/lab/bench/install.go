package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/netd/routes"
	"github.com/ducksnest/netd/netd/routes/nl"
)

// Install is the kernel install of N routes into an empty table, median
// of the rounds, each way.
type Install struct {
	N                   int
	Netd, IPBatch, BIRD time.Duration
	// Ratios are the medians of the per-round ratios netd/ip-batch and
	// netd/BIRD (the methods run back to back in each round).
	VsIPBatch, VsBIRD float64
}

var (
	installAddr = netip.MustParsePrefix("100.64.0.98/10")
	installGW   = netip.MustParseAddr("100.64.0.2")
)

const installDev = "eth0"

// installPhase times installing N routes three ways in a namespace of its
// own: netd's Reconciler (netd/routes, as its BenchmarkInstall), `ip
// -batch` (including the process start) and BIRD's kernel protocol
// (enabled once the routes are in BIRD's table).
func (r *run) installPhase(ctx context.Context) error {
	rt, err := r.lab.AddRouter(ctx, "inst", lab.OnWAN, installAddr)
	if err != nil {
		return err
	}
	nh, err := netns.GetFromName(rt.NS)
	if err != nil {
		return fmt.Errorf("opening %s: %w", rt.NS, err)
	}
	defer nh.Close()
	k, err := nl.Open(nh, nl.Options{})
	if err != nil {
		return err
	}
	defer k.Close()
	cfg := routes.ConfigFor(r.st.Routing)
	rec, err := routes.New(k, cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return err
	}
	table := strconv.Itoa(cfg.Table)
	count := func() (int, error) {
		ps, err := kernelRoutes(rt.NS, cfg.Table, 0)
		return len(ps), err
	}
	// Every route goes through eth0: taking the link down makes the
	// kernel drop them all at once (ip route flush gives up on 100k).
	flush := func() error {
		for _, state := range []string{"down", "up"} {
			if _, err := ipCmd(ctx, "-n", rt.NS, "link", "set", installDev, state); err != nil {
				return err
			}
		}
		if c, err := count(); err != nil || c != 0 {
			return errors.Join(err, fmt.Errorf("table %s has %d routes after the flush", table, c))
		}
		return nil
	}
	for _, n := range r.cfg.Install {
		prefixes := installPrefixes(n)
		want := make([]routes.Route, n)
		var sb strings.Builder
		for i, p := range prefixes {
			want[i] = routes.Route{Dst: p, NextHops: []routes.NextHop{{Gateway: installGW, Device: installDev, Onlink: true}}, MTU: 1280, AdvMSS: 1240}
			fmt.Fprintf(&sb, "route replace %s via %s dev %s onlink table %d proto %d mtu 1280 advmss 1240\n", p, installGW, installDev, cfg.Table, cfg.Protocol)
		}
		batch := filepath.Join(r.dir, fmt.Sprintf("routes-%d.batch", n))
		if err := os.WriteFile(batch, []byte(sb.String()), 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", batch, err)
		}
		methods := []func() (time.Duration, error){
			func() (time.Duration, error) {
				start := time.Now()
				res, err := rec.Reconcile(ctx, want, true)
				if err == nil && res.Added != n {
					err = fmt.Errorf("netd added %d routes, want %d", res.Added, n)
				}
				return time.Since(start), err
			},
			func() (time.Duration, error) {
				start := time.Now()
				_, err := ipCmd(ctx, "-n", rt.NS, "-batch", batch)
				return time.Since(start), err
			},
			func() (time.Duration, error) { return r.birdInstall(ctx, rt.NS, n) },
		}
		var took [3][]float64
		var vsIP, vsBIRD []float64
		for range max(r.cfg.InstallRounds, 1) {
			var round [3]time.Duration
			for i, m := range methods {
				if err := flush(); err != nil {
					return err
				}
				d, err := m()
				if err != nil {
					return err
				}
				c, err := count()
				if err != nil {
					return err
				}
				if c != n {
					return fmt.Errorf("after install %d: table has %d routes, want %d", i, c, n)
				}
				round[i] = d
				took[i] = append(took[i], float64(d))
			}
			vsIP = append(vsIP, float64(round[0])/float64(round[1]))
			vsBIRD = append(vsBIRD, float64(round[0])/float64(round[2]))
		}
		r.res.Install = append(r.res.Install, Install{
			N: n, Netd: time.Duration(median(took[0])), IPBatch: time.Duration(median(took[1])), BIRD: time.Duration(median(took[2])),
			VsIPBatch: median(vsIP), VsBIRD: median(vsBIRD),
		})
		if err := flush(); err != nil {
			return err
		}
	}
	return nil
}

var exportedRE = regexp.MustCompile(`(\d+) exported`)

// birdInstall starts a BIRD with n static routes and its kernel protocol
// disabled, waits until BIRD has the routes, then times enabling the
// kernel protocol until BIRD says it exported all n (checked in the
// kernel by the caller). BIRD is killed (no route removal) afterwards.
func (r *run) birdInstall(ctx context.Context, ns string, n int) (time.Duration, error) {
	d, err := r.startBIRD(ns, fmt.Sprintf("install%d", n), installConf(installGW, r.st.Routing.Table, n))
	if err != nil {
		return 0, err
	}
	defer func() {
		_ = r.lab.SignalProc(d.key, syscall.SIGKILL)
		_ = r.lab.StopProc(context.WithoutCancel(ctx), d.key, 5*time.Second)
	}()
	loaded := fmt.Sprintf("%d of %d routes", n, n)
	_, err = testutil.Every(50*time.Millisecond).Wait(ctx, 2*time.Minute, loaded, func() (bool, error) {
		out, err := d.birdc(ctx, "show", "route", "count")
		return err == nil && strings.Contains(out, loaded), nil
	})
	if err != nil {
		return 0, fmt.Errorf("BIRD loading %d routes: %w", n, err)
	}
	start := time.Now()
	if _, err := d.birdc(ctx, "enable", "k"); err != nil {
		return 0, err
	}
	_, err = testutil.Every(10*time.Millisecond).Wait(ctx, 5*time.Minute, "the kernel protocol's exports", func() (bool, error) {
		out, err := d.birdc(ctx, "show", "protocols", "all", "k")
		m := exportedRE.FindStringSubmatch(out)
		return err == nil && m != nil && m[1] == strconv.Itoa(n), nil
	})
	if err != nil {
		return 0, fmt.Errorf("BIRD exporting %d routes to the kernel: %w", n, err)
	}
	return time.Since(start), nil
}

// execOut runs a command and returns its combined output.
func execOut(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
