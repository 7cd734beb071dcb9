package chaos

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
)

// hostilePrefixes are what the external peer announces and netd must never
// install: a node's pod block, a more-specific of another, the service
// range, the overlay, a node's overlay address, the LAN, the default
// route.
var hostilePrefixes = []string{"10.244.1.0/24", "10.244.2.128/25", "10.96.0.0/12", "100.64.0.0/10", "100.64.0.3/32", "192.168.0.0/25", "0.0.0.0/0"}

// extPeer is a gobgpd standing in for the policy's external peer on the
// LAN (the example's home router), which announces hostilePrefixes.
type extPeer struct {
	name    string // the policy's peer name (home-router)
	addr    netip.Addr
	asn     int
	router  *lab.Router
	conf    string
	logPath string
	apiPort int
	key     string
	starts  int
	running bool
}

// peerConf is the gobgpd configuration: the peer's address and ASN, one
// ebgp-multihop session with each LAN node's overlay address (netd speaks
// BGP from there; AddRouter routes those via the nodes' LAN addresses).
func peerConf(addr netip.Addr, asn, nodeASN int, nodes []netip.Addr) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[global.config]\n  as = %d\n  router-id = %q\n  local-address-list = [%q]\n  port = 179\n", asn, addr, addr)
	fmt.Fprintf(&b, "[[peer-groups]]\n  [peer-groups.config]\n    peer-group-name = \"nodes\"\n    peer-as = %d\n", nodeASN)
	fmt.Fprintf(&b, "  [peer-groups.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = 2\n  [peer-groups.transport.config]\n    local-address = %q\n", addr)
	for _, n := range nodes {
		fmt.Fprintf(&b, "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = %q\n    peer-group = \"nodes\"\n", n)
	}
	return b.String()
}

// startPeer adds the router namespace on the first LAN and starts gobgpd
// in it.
func (r *run) startPeer(ctx context.Context, name string, addr netip.Addr, asn, nodeASN int) error {
	if _, err := exec.LookPath("gobgpd"); err != nil {
		return fmt.Errorf("the peer-flap fault needs gobgpd and gobgp (apt install gobgpd): %w", err)
	}
	if len(r.lab.LANs) == 0 {
		return fmt.Errorf("lab %s has no LAN for the external peer", r.lab.Name)
	}
	bits := r.lab.LANs[0].Prefix.Bits()
	// A fresh namespace name per run: a second run on the same lab leaves
	// the first's to lab down.
	rt, err := r.lab.AddRouter(ctx, fmt.Sprintf("xp%d", time.Now().UnixNano()%1e6), lab.OnLAN, netip.PrefixFrom(addr, bits))
	if err != nil {
		return err
	}
	var nodes []netip.Addr
	for _, n := range r.lab.Nodes {
		if n.LAN == r.lab.LANs[0].Name {
			nodes = append(nodes, n.OverlayAddr)
		}
	}
	p := &extPeer{name: name, addr: addr, asn: asn, router: rt, apiPort: 50070 + int(time.Now().UnixNano()%100),
		conf: filepath.Join(r.dir, "peer.toml"), logPath: filepath.Join(r.dir, "peer.log")}
	if err := os.WriteFile(p.conf, []byte(peerConf(addr, asn, nodeASN, nodes)), 0o600); err != nil {
		return fmt.Errorf("writing peer config: %w", err)
	}
	r.peer = p
	return r.spawnPeer(ctx)
}

func (r *run) spawnPeer(ctx context.Context) error {
	p := r.peer
	p.starts++
	p.key = fmt.Sprintf("chaos-peer-%d", p.starts)
	if _, err := r.lab.Spawn(p.key, p.router.NS, p.logPath, "gobgpd", "-f", p.conf, "--api-hosts", fmt.Sprintf("127.0.0.1:%d", p.apiPort), "--pprof-disable", "-p"); err != nil {
		return err
	}
	p.running = true
	for _, pfx := range hostilePrefixes {
		args := []string{"netns", "exec", p.router.NS, "gobgp", "-p", fmt.Sprint(p.apiPort), "global", "rib", "add", pfx, "-a", "ipv4", "nexthop", p.addr.String()}
		_, err := testutil.Wait(30*time.Second, "gobgp global rib add "+pfx, func() (bool, error) {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return exec.CommandContext(ctx, "ip", args...).Run() == nil, nil
		})
		if err != nil {
			return fmt.Errorf("external peer: %w", err)
		}
	}
	return nil
}

// flapPeer ends gobgpd (SIGKILL or SIGTERM) and starts it again.
func (r *run) flapPeer(ctx context.Context, kill bool) error {
	p := r.peer
	if kill {
		if err := r.lab.SignalProc(p.key, syscall.SIGKILL); err != nil {
			return fmt.Errorf("killing the external peer: %w", err)
		}
		if _, err := testutil.Wait(10*time.Second, "external peer gone", func() (bool, error) { return !r.lab.ProcRunning(p.key), nil }); err != nil {
			return err
		}
	} else if err := r.lab.StopProc(ctx, p.key, 5*time.Second); err != nil {
		return fmt.Errorf("stopping the external peer: %w", err)
	}
	p.running = false
	return r.spawnPeer(ctx)
}

// stopPeer ends gobgpd (its namespace goes with lab down).
func (r *run) stopPeer(ctx context.Context) {
	if r.peer != nil && r.lab.ProcRunning(r.peer.key) {
		_ = r.lab.StopProc(ctx, r.peer.key, 5*time.Second)
	}
}
