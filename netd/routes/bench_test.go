package routes

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ducksnest/netd/netd/routes/internal/nstest"
	"github.com/ducksnest/netd/netd/routes/nl"
)

// benchRoutes returns n /26 pod blocks, each via an onlink gateway on ts0.
func benchRoutes(n int) []Route {
	out := make([]Route, n)
	for i := range out {
		a := uint32(10)<<24 | uint32(i)<<6
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), 26)
		out[i] = rt(dst.String(), 1280, onlink("100.64.0.2", "ts0"))
	}
	return out
}

// BenchmarkInstall installs 10k, 50k and 100k routes into an empty table 244
// in one fresh namespace, three ways in the same process: netd's batch
// writer through Reconcile, `ip -batch` (including its process start) and
// one netlink.RouteReplace per route on a Handle. It also times a no-op
// Reconcile of 100k routes (read + diff).
func BenchmarkInstall(b *testing.B) {
	ctx := context.Background()
	ns := nstest.New(b)
	ns.Script(b, `
link add ts0 mtu 1280 type veth peer name ts0p
link set ts0p up
link set ts0 up
addr add 100.64.0.1/32 dev ts0
`)
	k, err := nl.Open(ns.Handle, nl.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { k.Close() })
	r, err := New(k, testCfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	kE, err := nl.Open(ns.Handle, nl.Options{AckErrorsOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { kE.Close() })
	rE, err := New(kE, testCfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	h := k.Handle()
	ts0, err := k.LinkIndex(ctx, "ts0")
	if err != nil {
		b.Fatal(err)
	}
	flush := func(b *testing.B) {
		b.StopTimer()
		defer b.StartTimer()
		if err := r.RemoveAll(ctx); err != nil {
			b.Fatal(err)
		}
	}
	check := func(b *testing.B, n int) {
		b.StopTimer()
		defer b.StartTimer()
		got, err := k.ListRoutes(ctx, testCfg.Table)
		if err != nil || len(got) != n {
			b.Fatalf("table has %d routes (err %v), want %d", len(got), err, n)
		}
	}
	routesPerSec := func(b *testing.B, n int) {
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "routes/s")
	}

	for _, n := range []int{10_000, 50_000, 100_000} {
		want := benchRoutes(n)
		file := filepath.Join(b.TempDir(), "routes.batch")
		var sb strings.Builder
		for _, w := range want {
			fmt.Fprintf(&sb, "route replace %s via 100.64.0.2 dev ts0 onlink table 244 proto 244 mtu 1280 advmss 1240\n", w.Dst)
		}
		if err := os.WriteFile(file, []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		gw := net.ParseIP("100.64.0.2").To4()
		installNetd := func(r *Reconciler) error {
			res, err := r.Reconcile(ctx, want, true)
			if err == nil && res.Added != n {
				err = fmt.Errorf("added %d routes, want %d", res.Added, n)
			}
			return err
		}
		installIP := func() error {
			if out, err := exec.Command("ip", "-n", ns.Name, "-batch", file).CombinedOutput(); err != nil {
				return fmt.Errorf("ip -batch: %w: %s", err, out)
			}
			return nil
		}
		installPerRoute := func() error {
			for _, w := range want {
				dst := w.Dst.Addr().As4()
				err := h.RouteReplace(&netlink.Route{
					Dst:       &net.IPNet{IP: dst[:], Mask: net.CIDRMask(w.Dst.Bits(), 32)},
					Gw:        gw,
					LinkIndex: ts0,
					Flags:     int(netlink.FLAG_ONLINK),
					Table:     testCfg.Table,
					Protocol:  netlink.RouteProtocol(testCfg.Protocol),
					MTU:       1280,
					AdvMSS:    1240,
				})
				if err != nil {
					return err
				}
			}
			return nil
		}
		methods := []struct {
			name    string
			install func() error
		}{
			{"netd", func() error { return installNetd(r) }},
			{"netd-ackerrorsonly", func() error { return installNetd(rE) }},
			{"ip-batch", installIP},
			{"per-route", installPerRoute},
		}
		for _, m := range methods {
			b.Run(fmt.Sprintf("n=%d/%s", n, m.name), func(b *testing.B) {
				b.ReportAllocs() // of this process: not of ip(8)
				for range b.N {
					flush(b)
					if err := m.install(); err != nil {
						b.Fatal(err)
					}
					check(b, n)
				}
				routesPerSec(b, n)
			})
		}
		// The CPUs are shared: run the methods back to back in each round
		// and report the median of the per-round ratios.
		b.Run(fmt.Sprintf("n=%d/ratios", n), func(b *testing.B) {
			ratios := map[string][]float64{}
			for range b.N {
				took := make([]time.Duration, len(methods))
				for i, m := range methods {
					flush(b)
					start := time.Now()
					if err := m.install(); err != nil {
						b.Fatal(err)
					}
					took[i] = time.Since(start)
					check(b, n)
				}
				ratios["netd/ip-batch"] = append(ratios["netd/ip-batch"], took[0].Seconds()/took[2].Seconds())
				ratios["netd/per-route"] = append(ratios["netd/per-route"], took[0].Seconds()/took[3].Seconds())
				ratios["ackerrorsonly/ip-batch"] = append(ratios["ackerrorsonly/ip-batch"], took[1].Seconds()/took[2].Seconds())
			}
			for unit, rs := range ratios {
				slices.Sort(rs)
				b.ReportMetric(rs[len(rs)/2], unit)
			}
		})
	}

	b.Run("noop/n=100000", func(b *testing.B) {
		b.StopTimer()
		want := benchRoutes(100_000)
		if _, err := r.Reconcile(ctx, want, true); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		b.ReportAllocs()
		for range b.N {
			res, err := r.Reconcile(ctx, want, true)
			if err != nil || res.Writes() != 0 || res.Unchanged != len(want) {
				b.Fatalf("no-op reconcile: %+v, %v", res, err)
			}
		}
		routesPerSec(b, len(want))
	})
	flush(b)
}
