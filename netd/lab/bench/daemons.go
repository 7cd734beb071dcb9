package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
)

// daemon is a reference daemon (BIRD, gobgpd) started in a namespace.
type daemon struct {
	key, ns, dir string
	pid          int
}

// startBIRD runs bird -f with conf in ns, its socket in a new dir.
func (r *run) startBIRD(ns, name, conf string) (*daemon, error) {
	d := &daemon{key: r.key("bird-" + name), ns: ns}
	d.dir = filepath.Join(r.dir, d.key)
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, fmt.Errorf("making %s: %w", d.dir, err)
	}
	cfg := filepath.Join(d.dir, "bird.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", cfg, err)
	}
	p, err := r.lab.Spawn(d.key, ns, filepath.Join(d.dir, "bird.log"), "bird", "-f", "-c", cfg,
		"-s", filepath.Join(d.dir, "bird.ctl"), "-P", filepath.Join(d.dir, "bird.pid"))
	if err != nil {
		return nil, err
	}
	d.pid = p.PID
	return d, nil
}

// birdc runs a BIRD command on d's control socket.
func (d *daemon) birdc(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "birdc", append([]string{"-s", filepath.Join(d.dir, "bird.ctl")}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("birdc %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// birdEstablished reports whether every named BGP protocol of d is
// Established.
func (d *daemon) birdEstablished(ctx context.Context, protos []string) (bool, error) {
	out, err := d.birdc(ctx, "show", "protocols")
	return err == nil && allEstablished(out, protos), nil // an error: not up yet
}

// allEstablished reports whether `birdc show protocols` lists every one of
// protos as up and Established.
func allEstablished(out string, protos []string) bool {
	up := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[3] == "up" && f[len(f)-1] == "Established" {
			up[f[0]] = true
		}
	}
	for _, p := range protos {
		if !up[p] {
			return false
		}
	}
	return true
}

// startGoBGPd runs gobgpd with conf in ns and announces blocks through its
// API.
func (r *run) startGoBGPd(ctx context.Context, ns, name, conf string, nexthop netip.Addr, blocks []netip.Prefix) (*daemon, error) {
	d := &daemon{key: r.key("gobgpd-" + name), ns: ns}
	d.dir = filepath.Join(r.dir, d.key)
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, fmt.Errorf("making %s: %w", d.dir, err)
	}
	cfg := filepath.Join(d.dir, "gobgpd.toml")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", cfg, err)
	}
	p, err := r.lab.Spawn(d.key, ns, filepath.Join(d.dir, "gobgpd.log"), "gobgpd", "-f", cfg, "--api-hosts", "127.0.0.1:50051", "--pprof-disable", "-p")
	if err != nil {
		return nil, err
	}
	d.pid = p.PID
	for _, b := range blocks {
		_, err := testutil.Every(100*time.Millisecond).Wait(ctx, 20*time.Second, "gobgpd to take the route", func() (bool, error) {
			_, err := d.gobgp(ctx, "global", "rib", "add", "-a", "ipv4", b.String(), "nexthop", nexthop.String())
			return err == nil, nil
		})
		if err != nil {
			return nil, fmt.Errorf("announcing %s from gobgpd in %s: %w", b, ns, err)
		}
	}
	return d, nil
}

// gobgp runs the gobgp CLI against d.
func (d *daemon) gobgp(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	argv := append([]string{"netns", "exec", d.ns, "gobgp", "-u", "127.0.0.1", "-p", "50051"}, args...)
	out, err := exec.CommandContext(ctx, "ip", argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("gobgp %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

var destinationsRE = regexp.MustCompile(`Destination:\s*(\d+)`)

// gobgpDestinations is the number of destinations in d's global table.
func (d *daemon) gobgpDestinations(ctx context.Context) (int, error) {
	out, err := d.gobgp(ctx, "global", "rib", "summary", "-a", "ipv4")
	if err != nil {
		return 0, err
	}
	return parseDestinations(out)
}

// parseDestinations reads the count of `gobgp global rib summary`.
func parseDestinations(out string) (int, error) {
	m := destinationsRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no destination count in %q", out)
	}
	return strconv.Atoi(m[1])
}

// kernelRoutes lists the IPv4 destinations in table of ns (proto 0: any
// protocol).
func kernelRoutes(ns string, table, proto int) ([]netip.Prefix, error) {
	h, err := handleIn(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	rs, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing table %d in %s: %w", table, ns, err)
	}
	out := make([]netip.Prefix, 0, len(rs))
	for _, rt := range rs {
		if rt.Dst == nil || proto != 0 && int(rt.Protocol) != proto {
			continue
		}
		a, ok := netip.AddrFromSlice(rt.Dst.IP)
		if !ok {
			continue
		}
		bits, _ := rt.Dst.Mask.Size()
		out = append(out, netip.PrefixFrom(a.Unmap(), bits))
	}
	return out, nil
}

func handleIn(ns string) (*netlink.Handle, error) {
	nh, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("opening namespace %s: %w", ns, err)
	}
	defer nh.Close()
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", ns, err)
	}
	return h, nil
}

// countWithin counts the prefixes inside within.
func countWithin(ps []netip.Prefix, within netip.Prefix) int {
	n := 0
	for _, p := range ps {
		if within.Contains(p.Addr()) && p.Bits() >= within.Bits() {
			n++
		}
	}
	return n
}

// hasAll reports whether have contains every one of want.
func hasAll(have, want []netip.Prefix) bool {
	set := make(map[netip.Prefix]bool, len(have))
	for _, p := range have {
		set[p] = true
	}
	for _, p := range want {
		if !set[p] {
			return false
		}
	}
	return true
}

// metricIn reads one unlabelled metric from the netd metrics endpoint of
// ns (dialled from inside the namespace).
func metricIn(ctx context.Context, ns, addr, name string) (float64, error) {
	var conn net.Conn
	err := lab.InNS(ns, func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		conn = c
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("dialling metrics in %s: %w", ns, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: netd\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, fmt.Errorf("asking metrics in %s: %w", ns, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, fmt.Errorf("reading metrics in %s: %w", ns, err)
	}
	defer resp.Body.Close()
	return parseMetric(bufio.NewScanner(resp.Body), name)
}

// parseMetric finds the unlabelled sample of name in Prometheus text.
func parseMetric(sc *bufio.Scanner, name string) (float64, error) {
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %w", name, err)
		}
		return v, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("reading metrics: %w", err)
	}
	return 0, fmt.Errorf("no metric %s", name)
}

// pause waits d (a measurement window, not a synchronisation).
func pause(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
