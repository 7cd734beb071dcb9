package doctor

import (
	"context"
	"net/netip"
	"time"

	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"

	"github.com/ducksnest/netd/netd/daemon"
	"github.com/ducksnest/netd/netd/routes/nl"
)

// Kernel is the part of nl.Kernel the checks read: routes, rules, devices,
// addresses and route lookups, all with the dump retry.
type Kernel interface {
	ListRoutes(ctx context.Context, table int) ([]nl.Route, error)
	ListRules(ctx context.Context) ([]nl.Rule, error)
	LinkName(ctx context.Context, index int) (string, error)
	AddrDevice(ctx context.Context, a netip.Addr) (string, error)
	Links(ctx context.Context) ([]nl.Link, error)
	RouteGet(ctx context.Context, q nl.RouteQuery) (nl.Lookup, error)
}

var _ Kernel = nl.Kernel(nil)

// Sysctl reads a sysctl by its /proc/sys path ("net/ipv4/ip_forward").
type Sysctl interface {
	Get(name string) (string, error)
}

// Firewall dumps the live iptables and nftables rules.
type Firewall interface {
	Rules(ctx context.Context) (*Ruleset, error)
}

// Sockets lists the TCP sockets in the listen state.
type Sockets interface {
	TCPListeners() ([]Listener, error)
}

// Listener is a listening TCP socket.
type Listener struct {
	Addr  netip.AddrPort
	Inode uint64
	// Owner is "comm[pid]" of the process holding it, if found.
	Owner string
}

// Prober sends ICMP from a local address.
type Prober interface {
	// Ping sends an echo request of size bytes (the whole IP packet) with
	// DF set.
	Ping(ctx context.Context, src, dst netip.Addr, size int, timeout time.Duration) (PingResult, error)
	// Timestamp sends an ICMP timestamp request (type 13) and returns the
	// peer's clock against ours.
	Timestamp(ctx context.Context, src, dst netip.Addr, timeout time.Duration) (TimestampResult, error)
}

// PingResult is what came back for a DF echo request.
type PingResult struct {
	Reply bool
	RTT   time.Duration
	// FragNeeded: ICMP "fragmentation needed" from From, with the next-hop
	// MTU.
	FragNeeded bool
	MTU        int
	From       netip.Addr
	// LocalTooBig: our own kernel refused it (EMSGSIZE): larger than the
	// device MTU, the route's MTU or a cached path MTU.
	LocalTooBig bool
	// Other is any other ICMP error.
	Other string
}

func (r PingResult) String() string {
	switch {
	case r.Reply:
		return "reply in " + r.RTT.Round(10*time.Microsecond).String()
	case r.FragNeeded:
		return "frag-needed (mtu " + itoa(r.MTU) + ") from " + r.From.String()
	case r.LocalTooBig:
		return "refused by the local kernel (EMSGSIZE)"
	case r.Other != "":
		return r.Other
	}
	return "no answer"
}

// TimestampResult is the answer to an ICMP timestamp request.
type TimestampResult struct {
	Reply bool
	// Offset is the peer's clock minus ours, measured NTP-style (the
	// midpoint of the round trip); accurate to RTT/2 plus 1 ms.
	Offset time.Duration
	RTT    time.Duration
}

// TailscaleAPI is the part of tailscaled's LocalAPI the checks read.
type TailscaleAPI interface {
	GetPrefs(ctx context.Context) (*ipn.Prefs, error)
	Status(ctx context.Context) (*ipnstate.Status, error)
}

// NetdStatus reads the running netd's status and its BFD sessions.
type NetdStatus interface {
	Status(ctx context.Context) (daemon.Status, error)
	// BFD returns each BFD peer's session state (up or not), from netd's
	// netd_bfd_session_up metric; ok is false if netd runs without BFD.
	BFD(ctx context.Context) (up map[netip.Addr]bool, ok bool, err error)
}

// Cluster reads the Kubernetes API.
type Cluster interface {
	// Felix returns the live FelixConfiguration "default" and where it was
	// read ("projectcalico.org/v3" or "crd.projectcalico.org/v1").
	Felix(ctx context.Context) (FelixConfig, string, error)
	// ServerTime returns the API server's clock (its Date header) and the
	// round trip of the request.
	ServerTime(ctx context.Context) (time.Time, time.Duration, error)
}

// FelixConfig holds the FelixConfiguration fields the policy sets; a nil
// field is unset in the object (Felix uses its default).
type FelixConfig struct {
	InterfaceExclude *string
	MTUIfacePattern  *string
	IptablesMarkMask *uint32
}
