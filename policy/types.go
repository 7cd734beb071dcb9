package policy

import (
	"github.com/ducksnest/netd/policy/acldoc"
)

// APIVersion and Kind identify a policy file. A file with any other pair is
// rejected, so that a future format change is explicit.
const (
	APIVersion = "netd.ducksnest.dev/v1alpha1"
	Kind       = "NetworkPolicy"
)

// File is the policy file as the user writes it. Field names are the YAML
// (and JSON) keys. The tailnet section uses Tailscale's own vocabulary so
// that snippets from Tailscale's documentation can be pasted in.
type File struct {
	APIVersion string   `json:"apiVersion" yaml:"apiVersion" jsonschema:"required,enum=netd.ducksnest.dev/v1alpha1"`
	Kind       string   `json:"kind" yaml:"kind" jsonschema:"required,enum=NetworkPolicy"`
	Metadata   Metadata `json:"metadata" yaml:"metadata" jsonschema:"required"`
	Spec       Spec     `json:"spec" yaml:"spec" jsonschema:"required"`

	// source is the file name given to Load; index maps the absolute path
	// of every value (spec.nodes[2].lanAddress) to its position, keys that
	// of every mapping entry to the position of its key. All are empty for
	// a File built in Go.
	source string
	index  map[string]Pos
	keys   map[string]Pos
}

// Metadata names the policy.
type Metadata struct {
	Name string `json:"name" yaml:"name" jsonschema:"required,description=Name of the cluster network; used in generated headers and labels."`
}

// Spec is the whole network of one cluster.
type Spec struct {
	Networks Networks         `json:"networks" yaml:"networks" jsonschema:"required"`
	Overlay  Overlay          `json:"overlay" yaml:"overlay" jsonschema:"required"`
	Routing  Routing          `json:"routing,omitempty" yaml:"routing,omitempty"`
	Nodes    []Node           `json:"nodes" yaml:"nodes" jsonschema:"required,minItems=1"`
	BGP      BGP              `json:"bgp" yaml:"bgp" jsonschema:"required"`
	Calico   Calico           `json:"calico" yaml:"calico" jsonschema:"required"`
	Tailnet  acldoc.Policy    `json:"tailnet" yaml:"tailnet"`
	Generate TailnetGenerated `json:"generate,omitempty" yaml:"generate,omitempty"`
	// TailnetSync says which netd keeps the tailnet policy in sync and how.
	TailnetSync TailnetSync `json:"tailnetSync,omitempty" yaml:"tailnetSync,omitempty"`
}

// Networks are the address ranges of the cluster. All must be canonical
// CIDRs (no host bits set) and must not overlap one another.
type Networks struct {
	Pods     string `json:"pods" yaml:"pods" jsonschema:"required,description=Pod CIDR (Calico IPAM allocates from pools inside it),example=10.244.0.0/16"`
	Services string `json:"services" yaml:"services" jsonschema:"required,description=Kubernetes service CIDR,example=10.96.0.0/12"`
	Overlay  string `json:"overlay" yaml:"overlay" jsonschema:"required,description=Overlay (Tailscale) node address range,example=100.64.0.0/10"`
	LANs     []LAN  `json:"lans,omitempty" yaml:"lans,omitempty"`
}

// LAN is a local network that the nodes of one site share. Pod traffic
// between two nodes of the same site that both have an address on it takes
// the LAN directly instead of the overlay.
type LAN struct {
	Name string `json:"name" yaml:"name" jsonschema:"required"`
	CIDR string `json:"cidr" yaml:"cidr" jsonschema:"required,example=192.168.0.0/24"`
	Site string `json:"site" yaml:"site" jsonschema:"required,description=Site whose nodes are attached to this LAN"`
	// Interface is the node-side device of the LAN (default: found by address).
	Interface string `json:"interface,omitempty" yaml:"interface,omitempty"`
	MTU       int    `json:"mtu,omitempty" yaml:"mtu,omitempty" jsonschema:"description=LAN MTU (default 1500)"`
}

// Overlay describes the node-to-node tunnel (Tailscale).
type Overlay struct {
	Interface string `json:"interface" yaml:"interface" jsonschema:"required,default=tailscale0"`
	// MTU of the tunnel device. Tailscale's is a fixed 1280.
	MTU int `json:"mtu" yaml:"mtu" jsonschema:"required,default=1280,minimum=1280,maximum=9000"`
}

// Routing says how netd marks the kernel state it owns. The defaults keep
// clear of tailscaled's table 52 and its rule at priority 5270.
type Routing struct {
	// Protocol is the route protocol number netd stamps on its routes (default 244).
	Protocol int `json:"protocol,omitempty" yaml:"protocol,omitempty" jsonschema:"minimum=5,maximum=254"`
	// Table is netd's own routing table (default 244).
	Table int `json:"table,omitempty" yaml:"table,omitempty" jsonschema:"minimum=1,maximum=4294967295"`
	// RulePriority is the priority of netd's "lookup <table>" rule; it must
	// come before tailscaled's 5270 (default 5260).
	RulePriority int `json:"rulePriority,omitempty" yaml:"rulePriority,omitempty" jsonschema:"minimum=1,maximum=5269"`
}

// Node is one machine of the cluster.
type Node struct {
	Name string `json:"name" yaml:"name" jsonschema:"required,description=DNS-1123 label; the Kubernetes node name"`
	Site string `json:"site" yaml:"site" jsonschema:"required,example=home"`
	Role string `json:"role" yaml:"role" jsonschema:"required,enum=control-plane,enum=worker"`
	// OverlayAddress is the node's Tailscale address (inside networks.overlay).
	OverlayAddress string `json:"overlayAddress" yaml:"overlayAddress" jsonschema:"required,example=100.64.0.1"`
	// LANAddress is the node's address on its site's LAN, if it has one.
	LANAddress string `json:"lanAddress,omitempty" yaml:"lanAddress,omitempty"`
	// PodCIDRs are the node's pod blocks for the static pod CIDR source.
	// With Calico IPAM as the source they come from BlockAffinity objects.
	PodCIDRs  []string          `json:"podCIDRs,omitempty" yaml:"podCIDRs,omitempty"`
	Tailscale NodeTailscale     `json:"tailscale,omitempty" yaml:"tailscale,omitempty"`
	Labels    map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	// ASN overrides bgp.asn for this node (private ASNs only).
	ASN uint32 `json:"asn,omitempty" yaml:"asn,omitempty"`
}

// NodeTailscale is the node's identity on the tailnet.
type NodeTailscale struct {
	Hostname string   `json:"hostname,omitempty" yaml:"hostname,omitempty"`
	Tags     []string `json:"tags,omitempty" yaml:"tags,omitempty" jsonschema:"description=Tags such as tag:k8s-node; each must have an owner in tailnet.tagOwners"`
}

// BGP configures the speakers of all nodes.
type BGP struct {
	ASN      uint32 `json:"asn" yaml:"asn" jsonschema:"required,description=Private ASN (64512-65534 or 4200000000-4294967294)"`
	Topology string `json:"topology" yaml:"topology" jsonschema:"required,enum=full-mesh,enum=route-reflector"`
	// RouteReflectors names the nodes that reflect (topology route-reflector).
	RouteReflectors []string        `json:"routeReflectors,omitempty" yaml:"routeReflectors,omitempty"`
	Port            int             `json:"port,omitempty" yaml:"port,omitempty" jsonschema:"description=TCP port (default 179)"`
	Timers          Timers          `json:"timers,omitempty" yaml:"timers,omitempty"`
	GracefulRestart GracefulRestart `json:"gracefulRestart,omitempty" yaml:"gracefulRestart,omitempty"`
	BFD             BFD             `json:"bfd,omitempty" yaml:"bfd,omitempty"`
	// MaxPrefixes is the per-peer import limit for cluster peers (default 1000).
	MaxPrefixes   int            `json:"maxPrefixes,omitempty" yaml:"maxPrefixes,omitempty"`
	ExternalPeers []ExternalPeer `json:"externalPeers,omitempty" yaml:"externalPeers,omitempty"`
}

// Timers are BGP session timers. GoBGP's defaults (hold 90 s, connect
// retry 120 s) are for routers; the compiled defaults are for a cluster.
type Timers struct {
	HoldTime     Duration `json:"holdTime,omitempty" yaml:"holdTime,omitempty" jsonschema:"type=string,description=Hold time (default 9s; 0 or >= 3s)"`
	Keepalive    Duration `json:"keepalive,omitempty" yaml:"keepalive,omitempty" jsonschema:"type=string,description=Keepalive interval (default holdTime/3)"`
	ConnectRetry Duration `json:"connectRetry,omitempty" yaml:"connectRetry,omitempty" jsonschema:"type=string,description=Connect retry (default 2s)"`
}

// GracefulRestart keeps forwarding state across a speaker restart (RFC 4724).
type GracefulRestart struct {
	Enabled     *bool    `json:"enabled,omitempty" yaml:"enabled,omitempty" jsonschema:"description=Default true"`
	RestartTime Duration `json:"restartTime,omitempty" yaml:"restartTime,omitempty" jsonschema:"type=string,description=Advertised restart time (default 120s; at most 4095s)"`
	// StalePathTime bounds how long a restarting peer's routes are kept (default 300s).
	StalePathTime Duration `json:"stalePathTime,omitempty" yaml:"stalePathTime,omitempty" jsonschema:"type=string"`
}

// BFD is fast failure detection between the BGP speakers (netd run --bfd):
// single-hop BFD (RFC 5881) on UDP 3784 over the overlay, so the tailnet
// policy must let the nodes reach each other there.
type BFD struct {
	// Enabled says whether the nodes run BFD (default true). It must match
	// how netd runs (`netd run --bfd`, NixOS services.netd.bfd.enable):
	// the generated tailnet policy opens UDP 3784 between the nodes only
	// when it is on.
	Enabled *bool `json:"enabled,omitempty" yaml:"enabled,omitempty" jsonschema:"description=Default true: the nodes run BFD (UDP 3784) with their BGP peers"`
}

// ExternalPeer is a BGP speaker outside the cluster, such as a home router.
type ExternalPeer struct {
	Name    string `json:"name" yaml:"name" jsonschema:"required"`
	Address string `json:"address" yaml:"address" jsonschema:"required"`
	ASN     uint32 `json:"asn" yaml:"asn" jsonschema:"required"`
	// Nodes names the nodes that peer with it (default: every node of the
	// site whose LAN contains the address).
	Nodes []string `json:"nodes,omitempty" yaml:"nodes,omitempty"`
	// Export is what the peer may receive: "pods" (the node's own blocks),
	// "services" (the service CIDR), or explicit CIDRs.
	Export []string `json:"export,omitempty" yaml:"export,omitempty"`
	// Import is what the node accepts from it: CIDRs, each optionally with a
	// maximum length as "10.0.0.0/8 le 24". Empty: nothing. An import may
	// not reach a reserved range: the pod, service or overlay range, a LAN,
	// or the default route (netd's table is looked up before the main
	// table, so such a route would capture the cluster's traffic).
	Import []string `json:"import,omitempty" yaml:"import,omitempty"`
	// ImportReserved lists exact prefixes strictly inside a reserved range
	// that the peer may announce all the same (a LAN subnet behind the
	// router, say). None may hold a node's pod block or address, or the
	// peer's own address.
	ImportReserved []string `json:"importReserved,omitempty" yaml:"importReserved,omitempty" jsonschema:"description=Exact CIDRs inside a cluster range or LAN that this peer may announce (explicit opt-in)"`
	MaxPrefixes    int      `json:"maxPrefixes,omitempty" yaml:"maxPrefixes,omitempty"`
	Password       string   `json:"passwordFile,omitempty" yaml:"passwordFile,omitempty" jsonschema:"description=File holding the TCP MD5 password"`
}

// Calico is the Calico configuration derived from the policy.
type Calico struct {
	IPPools []IPPool `json:"ipPools" yaml:"ipPools" jsonschema:"required,minItems=1"`
}

// IPPool is a Calico IPPool. cidr and blockSize are immutable in Calico:
// changing them makes a new pool and drains the old one.
type IPPool struct {
	Name          string `json:"name" yaml:"name" jsonschema:"required"`
	CIDR          string `json:"cidr" yaml:"cidr" jsonschema:"required"`
	BlockSize     int    `json:"blockSize,omitempty" yaml:"blockSize,omitempty" jsonschema:"description=IPv4 block prefix length (20-32; default 26)"`
	NodeSelector  string `json:"nodeSelector,omitempty" yaml:"nodeSelector,omitempty" jsonschema:"description=Calico selector (default all())"`
	NATOutgoing   bool   `json:"natOutgoing,omitempty" yaml:"natOutgoing,omitempty"`
	Encapsulation string `json:"encapsulation,omitempty" yaml:"encapsulation,omitempty" jsonschema:"enum=None,enum=VXLAN,enum=VXLANCrossSubnet"`
	Disabled      bool   `json:"disabled,omitempty" yaml:"disabled,omitempty"`
}

// TailnetGenerated controls what the compiler adds to the tailnet policy.
type TailnetGenerated struct {
	// NodeTag is the tag that marks cluster nodes (default tag:k8s-node).
	NodeTag string `json:"nodeTag,omitempty" yaml:"nodeTag,omitempty"`
	// Disabled turns generation off; the tailnet section is then used as is.
	Disabled bool `json:"disabled,omitempty" yaml:"disabled,omitempty"`
}

// TailnetSync says which netd daemon writes the tailnet policy to the
// control server (a netd run with tailnet credentials) and what it may
// overwrite.
type TailnetSync struct {
	// Writer is the node whose netd writes the tailnet policy when netd runs
	// without Kubernetes. With --kubeconfig the holder of the
	// kube-system/netd-tailnet Lease writes instead, and Writer is not used.
	Writer string `json:"writer,omitempty" yaml:"writer,omitempty" jsonschema:"description=Node whose netd writes the tailnet policy when netd runs without Kubernetes (with --kubeconfig the holder of the kube-system/netd-tailnet Lease writes)"`
	// Ownership is shared (default: a policy edited outside netd is
	// reported as drift and left alone) or exclusive (netd owns the tailnet
	// policy outright: drift is reported and overwritten).
	Ownership string `json:"ownership,omitempty" yaml:"ownership,omitempty" jsonschema:"enum=shared,enum=exclusive,description=shared (default): an edit made outside netd is reported and never overwritten; exclusive: it is reported and overwritten"`
	// Interval is how often the writer re-reads the live policy and the
	// nodes' routes (default 1m, at least 1s).
	Interval Duration `json:"interval,omitempty" yaml:"interval,omitempty" jsonschema:"type=string,description=How often the writer re-checks the live tailnet policy and route approvals (Go duration; default 1m)"`
}
