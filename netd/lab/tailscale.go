package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"tailscale.com/client/local"

	"github.com/ducksnest/netd/acl"
	"github.com/ducksnest/netd/netd/localapi"
)

// The tailscale overlay ("netd lab up --overlay tailscale") replaces the
// emulated tailscale0 of the lab by a real tailnet:
//
//	<lab>-wan   br0 172.31.255.1/24 (MTU 1500): the "internet"; headscale
//	            listens there on :8080 with its embedded DERP server (DERP
//	            over plain HTTP, STUN on :3478) and no other DERP map
//	<lab>-<n>   wan0 172.31.255.<10+i>/24 on that bridge (the underlay), and
//	            tailscaled with a real TUN device tailscale0 that gets the
//	            node's overlay address from headscale (sequential
//	            allocation, nodes registered in overlay address order)
//
// The underlay is private (RFC 1918) on purpose: tailscale only skips its
// HTTPS fallback to the control server (which headscale here does not
// serve) for a private control address. Everything stays offline:
// 172.31.255.0/24 is routed nowhere, no namespace
// has a default route, tailscaled runs with --no-logs-no-support, accept-dns
// off and a private /etc/netns/<ns>/resolv.conf, and the only control and
// DERP server is the lab's headscale. The compiled tailnet policy is applied
// to headscale through the acl package before any node joins, so the pod
// blocks each node advertises are auto-approved.
const (
	tsUnderlay   = "172.31.255.0/24"
	tsControlIP  = "172.31.255.1"
	tsWANDev     = "wan0"
	tsHSPort     = 8080
	tsUserName   = "alice"
	tsUserEmail  = "alice@example.com"
	tailnetDir   = "tailnet"
	tailnetState = "tailnet.json"
)

// TailnetConfig names the Tailscale binaries (see scripts/tailscale-tools.sh).
type TailnetConfig struct {
	TailscaledBin, TailscaleBin, HeadscaleBin string
	// UserRoutes are advertised by hand on the first node (to show that netd
	// keeps routes outside the pod CIDR).
	UserRoutes []netip.Prefix
	// Credentials gives every node's netd the lab headscale's API key, in
	// the variables the NixOS module sets from services.netd.tailnet
	// (HEADSCALE_URL, HEADSCALE_API_KEY_FILE): the writer the policy names
	// (spec.tailnetSync.writer) then keeps the tailnet policy in sync.
	Credentials bool
}

// Tailnet is the lab's running tailnet; tailnet.json records it.
type Tailnet struct {
	TailnetConfig
	Dir    string `json:"dir"`
	URL    string `json:"url"`
	WAN    string `json:"wan"`
	APIKey string `json:"apiKey"`
	// Headscale and Tailscaled are the processes, by node name.
	HeadscaleProc *Process            `json:"headscale"`
	Tailscaled    map[string]*Process `json:"tailscaled"`
	// Socket is the LocalAPI socket of each node's tailscaled.
	Socket map[string]string `json:"socket"`
	// ReApproved counts the times a node's routes had to be approved
	// again by hand (headscale 0.26.1 stops serving approved routes: see
	// tailscale_routes.go). Read it with Reapprovals while the lab runs.
	ReApproved int `json:"reApproved"`

	lab *Lab
	mu  sync.Mutex // ReApproved and approvedAt, written by keepServed
	// approvedAt is when each node's routes were last approved by hand.
	approvedAt map[string]time.Time
}

// UpTailscale builds the lab with a real tailnet as the overlay, joins
// every node, applies the compiled tailnet policy to headscale, advertises
// each node's pod blocks, starts netd on every node not in cfg.Hold and
// waits for convergence. On error what was made is left for Down /
// DownTailnet.
func UpTailscale(ctx context.Context, cfg Config, tc TailnetConfig) (*Lab, *Tailnet, error) {
	if err := cfg.defaults(); err != nil {
		return nil, nil, err
	}
	for _, b := range []string{tc.TailscaledBin, tc.TailscaleBin, tc.HeadscaleBin, cfg.Netd} {
		if b == "" {
			return nil, nil, errors.New("tailscale lab needs netd, tailscaled, tailscale and headscale binaries")
		}
	}
	l, err := Build(ctx, cfg)
	if err != nil {
		return l, nil, err
	}
	tn := &Tailnet{TailnetConfig: tc, Dir: filepath.Join(l.StateDir, tailnetDir), WAN: l.WAN,
		URL: fmt.Sprintf("http://%s:%d", tsControlIP, tsHSPort), Tailscaled: map[string]*Process{}, Socket: map[string]string{}, lab: l}
	if cfg.Rootfs != "" {
		// Containers first: tailscaled runs inside them (tailscale_systemd.go).
		if err := tn.bootSystemd(ctx, cfg.Rootfs); err != nil {
			return l, tn, err
		}
	}
	if err := tn.up(ctx, cfg); err != nil {
		return l, tn, err
	}
	kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	l.stopTailnet = stop
	go tn.keepServed(kctx)
	// netd itself advertises each node's pod blocks as subnet routes and
	// checks learned routes against what Tailscale forwards: the module's
	// unit for a node with tailscaled, at this node's socket.
	l.TailscaleSockets = map[string]string{}
	for _, n := range l.Nodes {
		l.TailscaleSockets[n.Name] = tn.Socket[n.Name]
	}
	if tc.Credentials {
		if err := tn.credentials(); err != nil {
			return l, tn, err
		}
	}
	if err := l.save(); err != nil {
		return l, tn, err
	}
	var run []string
	for _, n := range l.Nodes {
		if slices.Contains(cfg.Hold, n.Name) {
			continue
		}
		if err := l.StartNetd(ctx, n.Name); err != nil {
			return l, tn, err
		}
		run = append(run, n.Name)
	}
	if err := tn.WaitRoutes(ctx, 60*time.Second); err != nil {
		return l, tn, err
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.ConvergeTimeout)
	defer cancel()
	return l, tn, l.WaitConverged(cctx, run)
}

func (tn *Tailnet) up(ctx context.Context, cfg Config) error {
	l := tn.lab
	if err := os.MkdirAll(tn.Dir, 0o700); err != nil {
		return fmt.Errorf("making tailnet dir: %w", err)
	}
	if err := tn.underlay(); err != nil {
		return err
	}
	if err := tn.startHeadscale(ctx); err != nil {
		return err
	}
	key, err := tn.hs(ctx, "apikeys", "create", "--expiration", "24h")
	if err != nil {
		return err
	}
	tn.APIKey = strings.TrimSpace(key)
	if err := tn.save(); err != nil {
		return err
	}
	res, err := acl.Apply(ctx, tn.ACLTarget(), &cfg.State.Tailnet, acl.Options{Log: l.log})
	if err != nil {
		return fmt.Errorf("applying the tailnet policy to headscale: %w", err)
	}
	l.log.Info("tailnet policy applied to headscale", "written", res.Written, "version", res.Version)
	if _, err := tn.hs(ctx, "users", "create", tsUserName, "--email", tsUserEmail); err != nil {
		return err
	}
	nodes := slices.Clone(l.Nodes)
	slices.SortFunc(nodes, func(a, b *Node) int { return a.OverlayAddr.Compare(b.OverlayAddr) })
	for i, n := range nodes {
		dn, err := cfg.State.Node(n.Name)
		if err != nil {
			return err
		}
		var extra []netip.Prefix
		if i == 0 {
			extra = tn.UserRoutes
		}
		if err := tn.join(ctx, n, dn.Tailscale.Tags, extra); err != nil {
			return fmt.Errorf("joining %s to the tailnet: %w", n.Name, err)
		}
	}
	return nil
}

// credentials writes the API key where netd reads it (as the module's
// LoadCredential= does) and sets the module's variables for every netd.
func (tn *Tailnet) credentials() error {
	if tn.lab.Systemd != nil {
		return errors.New("tailnet credentials for netd are not wired into the systemd lab's containers")
	}
	key := filepath.Join(tn.Dir, "tailnet-api-key")
	if err := os.WriteFile(key, []byte(tn.APIKey+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing the API key file: %w", err)
	}
	tn.lab.NetdEnv = append(tn.lab.NetdEnv, "HEADSCALE_URL="+tn.URL, "HEADSCALE_API_KEY_FILE="+key)
	return nil
}

// underlay turns the emulated overlay into the underlay: the node's
// tailscale0 veth (and the table 52 emulation) goes, a wan0 veth with an
// underlay address takes its place on the WAN bridge (MTU 1500).
func (tn *Tailnet) underlay() error {
	l := tn.lab
	err := withHandle(l.WAN, func(h *netlink.Handle) error {
		br, err := h.LinkByName("br0")
		if err != nil {
			return fmt.Errorf("finding br0: %w", err)
		}
		if err := h.LinkSetMTU(br, 1500); err != nil {
			return fmt.Errorf("setting br0 mtu: %w", err)
		}
		return h.AddrAdd(br, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(netip.MustParseAddr(tsControlIP), 24))})
	})
	if err != nil {
		return err
	}
	base := netip.MustParsePrefix(tsUnderlay).Addr()
	for i, n := range l.Nodes {
		err := withHandle(n.NS, func(h *netlink.Handle) error {
			if lk, err := h.LinkByName(l.Overlay.Interface); err == nil {
				if err := h.LinkDel(lk); err != nil {
					return fmt.Errorf("removing emulated %s: %w", l.Overlay.Interface, err)
				}
			}
			rule := netlink.NewRule()
			rule.Priority, rule.Table, rule.Family = tailscalePriority, tailscaleTable, netlink.FAMILY_V4
			if err := h.RuleDel(rule); err != nil {
				return fmt.Errorf("removing emulated rule %d: %w", tailscalePriority, err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		a := base
		for range 10 + i {
			a = a.Next()
		}
		if err := l.uplink(n.NS, tsWANDev, netip.PrefixFrom(a, 24), 1500, l.WAN, ifname("t", i, n.Name)); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		if err := privateResolvConf(n.NS); err != nil {
			return err
		}
	}
	return privateResolvConf(l.WAN)
}

// privateResolvConf gives ns its own resolv.conf (ip netns exec bind-mounts
// /etc/netns/<ns>/resolv.conf over /etc/resolv.conf): nothing run there can
// use or change the host's resolver.
func privateResolvConf(ns string) error {
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("making %s: %w", dir, err)
	}
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("# netd lab: no DNS in here\nnameserver 127.0.0.1\n"), 0o644)
}

// ACLTarget is the headscale of the lab as an acl target; its HTTP client
// dials from inside the WAN namespace.
func (tn *Tailnet) ACLTarget() acl.Target {
	return acl.Target{Kind: acl.KindHeadscale, BaseURL: tn.URL, APIKey: tn.APIKey, HeadscaleCLI: tn.HeadscaleBin,
		HTTPClient: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: tn.dialWAN}}}
}

func (tn *Tailnet) dialWAN(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := InNS(tn.WAN, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Client is the LocalAPI client of a node's tailscaled.
func (tn *Tailnet) Client(node string) *local.Client {
	return localapi.NewLocalClient(tn.Socket[node])
}

func (tn *Tailnet) save() error {
	tn.mu.Lock()
	b, err := json.MarshalIndent(tn, "", "  ")
	tn.mu.Unlock()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(tn.Dir, tailnetState), b, 0o600)
}

// LoadTailnet reads the tailnet of a lab built earlier.
func LoadTailnet(l *Lab) (*Tailnet, error) {
	b, err := os.ReadFile(filepath.Join(l.StateDir, tailnetDir, tailnetState))
	if err != nil {
		return nil, fmt.Errorf("reading tailnet state: %w", err)
	}
	tn := &Tailnet{lab: l}
	if err := json.Unmarshal(b, tn); err != nil {
		return nil, fmt.Errorf("decoding tailnet state: %w", err)
	}
	return tn, nil
}

// DownTailnet ends the lab's headscale and tailscaled processes (by their
// recorded PIDs), removes the private resolv.conf directories and the
// tailnet state. Call it before Down (which ends whatever else runs in the
// lab namespaces and deletes them). Safe to repeat.
func DownTailnet(ctx context.Context, l *Lab) error {
	if l.stopTailnet != nil {
		l.stopTailnet()
	}
	var errs []error
	if tn, err := LoadTailnet(l); err == nil {
		for _, p := range tn.Tailscaled {
			if alive(p) {
				errs = append(errs, l.kill(ctx, p.PID, 10*time.Second))
			}
		}
		if p := tn.HeadscaleProc; p != nil && alive(p) {
			errs = append(errs, l.kill(ctx, p.PID, 10*time.Second))
		}
	}
	for _, ns := range append([]string{l.WAN}, nodeNSs(l)...) {
		if ns != "" && strings.HasPrefix(ns, l.Name+"-") {
			errs = append(errs, os.RemoveAll(filepath.Join("/etc/netns", ns)))
		}
	}
	_ = os.Remove("/etc/netns") // only if empty
	errs = append(errs, os.RemoveAll(filepath.Join(l.StateDir, tailnetDir)))
	return errors.Join(errs...)
}

func nodeNSs(l *Lab) []string {
	var out []string
	for _, n := range l.Nodes {
		out = append(out, n.NS)
	}
	return out
}
