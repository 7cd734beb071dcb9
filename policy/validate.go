package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/ducksnest/netd/policy/acldoc"
	"github.com/ducksnest/netd/policy/desired"
)

// Defaults applied by Compile to values the file leaves out.
const (
	DefaultOverlayInterface = "tailscale0"
	DefaultOverlayMTU       = 1280
	DefaultLANMTU           = 1500
	DefaultRouteProtocol    = 244
	DefaultRouteTable       = 244
	DefaultRulePriority     = 5260
	DefaultBGPPort          = 179
	DefaultMaxPrefixes      = 1000
	DefaultBlockSize        = 26
	DefaultNodeTag          = "tag:k8s-node"
	// tailscaledRulePriority is the priority of tailscaled's "lookup 52"
	// rule; netd's rule must come first.
	tailscaledRulePriority = 5270
	// minPodMTU is the smallest pod MTU the compiler accepts.
	minPodMTU = 1200
	// hostnameLabel is set on every node implicitly, as the kubelet does,
	// so selectors can name single nodes.
	hostnameLabel = "kubernetes.io/hostname"
)

// encapOverhead is the per-packet cost of each pool encapsulation (IPv4).
var encapOverhead = map[string]int{"": 0, "None": 0, "VXLAN": 50, "VXLANCrossSubnet": 50}

// Validate checks a loaded policy and returns nil or an ErrorList holding
// every problem found, sorted by position.
func Validate(f *File) error {
	_, errs := check(f)
	return errs.Err()
}

// model is the validated policy with addresses parsed and defaults applied:
// what Compile needs beyond the File itself.
type model struct {
	pods, services, overlay netip.Prefix
	lans                    []desired.LAN
	nodes                   []modelNode // file order
	byName                  map[string]int
	pools                   []desired.IPPool
	// poolBroken marks pools whose selector or blockSize is already
	// reported, so that the node blocks in them are not reported again.
	poolBroken   []bool
	routing      desired.Routing
	overlayIface string
	overlayMTU   int
	podMTU       int
	vxlan        bool
	// vxlanPool is the index of the first pool with VXLAN encapsulation,
	// enabled or draining (-1: none): the nodes need UDP 4789 between them.
	vxlanPool       int
	bfd             bool
	bgpPort         int
	maxPrefixes     int
	timers          desired.Timers
	gr              desired.GracefulRestart
	routeReflectors []string
	external        []modelPeer
	nodeTag         string
	tailnet         acldoc.Policy // as it will be pushed
	sync            desired.TailnetSync
}

type modelNode struct {
	overlay, lanAddr netip.Addr
	lan              string
	podCIDRs         []netip.Prefix
	labels           map[string]string // with the implicit hostname label
	asn              uint32
}

type modelPeer struct {
	addr       netip.Addr
	nodes      []string
	exportOwn  bool
	export     []netip.Prefix
	imports    []desired.PrefixRange
	exceptions []netip.Prefix
	maxPrefix  int
	passwdFile string
}

type validator struct {
	f    *File
	errs ErrorList
	m    model
}

func check(f *File) (*model, ErrorList) {
	v := &validator{f: f, m: model{byName: map[string]int{}, vxlanPool: -1}}
	if f.Metadata.Name == "" {
		v.errorf("metadata.name", "name the cluster network, e.g. name: ducksnest", "metadata.name is required")
	}
	v.networks()
	v.overlaySection()
	v.routingSection()
	v.nodes()
	v.pools()
	v.nodePodCIDRs()
	v.bgp()
	v.tailnet()
	v.flows()
	v.tailnetSync()
	return &v.m, v.errs
}

func (v *validator) errorf(path, hint, format string, args ...any) {
	v.errs = append(v.errs, v.f.errorAt(path, fmt.Sprintf(format, args...), hint))
}

// set reports whether the file wrote a value at path (as opposed to
// leaving it out). Files built in Go count non-zero values as written.
func (v *validator) set(path string) bool {
	_, ok := v.f.index[path]
	return ok
}

// prefix parses a canonical IPv4 CIDR. what names it in messages.
func (v *validator) prefix(path, s, what, example string) (netip.Prefix, bool) {
	if s == "" {
		v.errorf(path, "write a CIDR such as "+example, "%s is required", what)
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		hint := "write a CIDR such as " + example
		if a, aerr := netip.ParseAddr(s); aerr == nil && a.Is4() {
			hint = "add the prefix length, e.g. " + s + "/32 for one address"
		}
		v.errorf(path, hint, "%s %q is not a CIDR", what, s)
		return netip.Prefix{}, false
	}
	if !p.Addr().Is4() {
		v.errorf(path, "use an IPv4 CIDR; IPv6 is not supported by "+APIVersion, "%s %q is not IPv4", what, s)
		return netip.Prefix{}, false
	}
	if p != p.Masked() {
		v.errorf(path, "write "+p.Masked().String(), "%s %q has host bits set", what, s)
		return netip.Prefix{}, false
	}
	return p, true
}

// addr parses an IPv4 address.
func (v *validator) addr(path, s, what, example string) (netip.Addr, bool) {
	if s == "" {
		v.errorf(path, "write an address such as "+example, "%s is required", what)
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		hint := "write an address such as " + example
		if p, perr := netip.ParsePrefix(s); perr == nil {
			hint = "write the address without a prefix length: " + p.Addr().String()
		}
		v.errorf(path, hint, "%s %q is not an IP address", what, s)
		return netip.Addr{}, false
	}
	if !a.Is4() {
		v.errorf(path, "use an IPv4 address; IPv6 is not supported by "+APIVersion, "%s %q is not IPv4", what, s)
		return netip.Addr{}, false
	}
	return a, true
}

var (
	dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	ifaceName    = regexp.MustCompile(`^[A-Za-z0-9_.@:+-]{1,15}$`)
)

func checkDNSLabel(s string) (msg, hint string, ok bool) {
	if len(s) > 63 {
		return "is longer than 63 characters", "shorten it", false
	}
	if !dns1123Label.MatchString(s) {
		fixed := strings.Trim(regexp.MustCompile(`[^a-z0-9-]+`).ReplaceAllString(strings.ToLower(s), "-"), "-")
		hint := "use lower-case letters, digits and '-', starting and ending with a letter or digit"
		if fixed != "" && dns1123Label.MatchString(fixed) {
			hint += ", e.g. " + fixed
		}
		return "is not a valid DNS-1123 label", hint, false
	}
	return "", "", true
}

type namedPrefix struct {
	path, what string
	p          netip.Prefix
}

func (v *validator) networks() {
	n := v.f.Spec.Networks
	var all []namedPrefix
	if p, ok := v.prefix("spec.networks.pods", n.Pods, "networks.pods", "10.244.0.0/16"); ok {
		v.m.pods = p
		all = append(all, namedPrefix{"spec.networks.pods", "networks.pods", p})
	}
	if p, ok := v.prefix("spec.networks.services", n.Services, "networks.services", "10.96.0.0/12"); ok {
		v.m.services = p
		all = append(all, namedPrefix{"spec.networks.services", "networks.services", p})
	}
	if p, ok := v.prefix("spec.networks.overlay", n.Overlay, "networks.overlay", "100.64.0.0/10"); ok {
		v.m.overlay = p
		all = append(all, namedPrefix{"spec.networks.overlay", "networks.overlay", p})
	}
	names := map[string]bool{}
	for i, l := range n.LANs {
		path := joinIndex("spec.networks.lans", i)
		switch {
		case l.Name == "":
			v.errorf(path+".name", "name the LAN, e.g. name: home-lan", "LAN %d has no name", i)
		case names[l.Name]:
			v.errorf(path+".name", "give every LAN its own name", "LAN name %q is used twice", l.Name)
		}
		names[l.Name] = true
		if l.Site == "" {
			v.errorf(path+".site", "set site: to the site of the nodes on this LAN, e.g. home", "LAN %q has no site", l.Name)
		}
		if l.Interface != "" && !ifaceName.MatchString(l.Interface) {
			v.errorf(path+".interface", "use a Linux interface name of at most 15 characters, e.g. enp1s0", "LAN %q: interface %q is not a valid interface name", l.Name, l.Interface)
		}
		mtu := l.MTU
		if mtu == 0 {
			mtu = DefaultLANMTU
		} else if mtu < 576 || mtu > 9216 {
			v.errorf(path+".mtu", "use the LAN's real MTU, usually 1500 (or leave it out)", "LAN %q: MTU %d is out of range 576-9216", l.Name, l.MTU)
		}
		p, ok := v.prefix(path+".cidr", l.CIDR, fmt.Sprintf("LAN %q cidr", l.Name), "192.168.0.0/24")
		if !ok {
			continue
		}
		v.m.lans = append(v.m.lans, desired.LAN{Name: l.Name, Prefix: p, Site: l.Site, Interface: l.Interface, MTU: mtu})
		all = append(all, namedPrefix{path + ".cidr", fmt.Sprintf("LAN %q", l.Name), p})
	}
	for i := range all {
		for j := range i {
			if all[i].p.Overlaps(all[j].p) {
				v.errorf(all[i].path, "the cluster networks and LANs must be disjoint; pick a range that does not overlap",
					"%s %s overlaps %s %s", all[i].what, all[i].p, all[j].what, all[j].p)
			}
		}
	}
}

func (v *validator) overlaySection() {
	o := v.f.Spec.Overlay
	v.m.overlayIface, v.m.overlayMTU = o.Interface, o.MTU
	if o.Interface == "" {
		v.errorf("spec.overlay.interface", "set interface: "+DefaultOverlayInterface, "overlay.interface is required")
	} else if !ifaceName.MatchString(o.Interface) {
		v.errorf("spec.overlay.interface", "use a Linux interface name of at most 15 characters, e.g. "+DefaultOverlayInterface, "overlay.interface %q is not a valid interface name", o.Interface)
	}
	switch {
	case o.MTU == 0:
		v.errorf("spec.overlay.mtu", "set mtu: 1280 for Tailscale", "overlay.mtu is required")
	case o.MTU < 1280:
		v.errorf("spec.overlay.mtu", "Tailscale's tunnel MTU is 1280; IPv4 paths for the cluster need at least that", "overlay.mtu %d is below 1280", o.MTU)
	case o.MTU > 9000:
		v.errorf("spec.overlay.mtu", "use the MTU of the tunnel device (1280 for Tailscale)", "overlay.mtu %d is above 9000", o.MTU)
	}
}

// reservedProtocols are route protocol numbers used by the kernel or by
// routing daemons netd may run next to (iproute2's rt_protos).
var reservedProtocols = map[int]string{
	0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated", 9: "ra", 10: "mrt",
	11: "zebra", 12: "bird (Calico's BIRD)", 13: "dnrouted", 14: "xorp", 15: "ntk", 16: "dhcp",
	18: "keepalived", 42: "babel", 80: "Calico Felix", 99: "openr", 186: "bgp (FRR)", 187: "isis (FRR)",
	188: "ospf (FRR)", 189: "rip (FRR)", 192: "eigrp (FRR)",
}

// reservedTables are tables netd must never own.
var reservedTables = map[int64]string{52: "tailscaled's table", 253: "the default table", 254: "the main table", 255: "the local table"}

func (v *validator) routingSection() {
	r := v.f.Spec.Routing
	v.m.routing = desired.Routing{Protocol: DefaultRouteProtocol, Table: DefaultRouteTable, RulePriority: DefaultRulePriority}
	if r.Protocol != 0 || v.set("spec.routing.protocol") {
		if name, ok := reservedProtocols[r.Protocol]; ok {
			v.errorf("spec.routing.protocol", fmt.Sprintf("pick an unused number such as %d", DefaultRouteProtocol), "routing.protocol %d is reserved for %s", r.Protocol, name)
		} else if r.Protocol < 0 || r.Protocol > 254 {
			v.errorf("spec.routing.protocol", fmt.Sprintf("pick a number in 5-254 such as %d", DefaultRouteProtocol), "routing.protocol %d is out of range", r.Protocol)
		}
		v.m.routing.Protocol = r.Protocol
	}
	if r.Table != 0 || v.set("spec.routing.table") {
		if name, ok := reservedTables[int64(r.Table)]; ok {
			v.errorf("spec.routing.table", fmt.Sprintf("pick a table of netd's own, such as %d", DefaultRouteTable), "routing.table %d is %s", r.Table, name)
		} else if r.Table <= 0 || int64(r.Table) > 1<<32-1 {
			v.errorf("spec.routing.table", fmt.Sprintf("pick a table in 1-4294967295 such as %d", DefaultRouteTable), "routing.table %d is out of range", r.Table)
		}
		v.m.routing.Table = r.Table
	}
	if r.RulePriority != 0 || v.set("spec.routing.rulePriority") {
		if r.RulePriority <= 0 || r.RulePriority >= tailscaledRulePriority {
			v.errorf("spec.routing.rulePriority",
				fmt.Sprintf("use a priority in 1-5269 so netd's rule comes before tailscaled's lookup of table 52 at 5270, e.g. %d", DefaultRulePriority),
				"routing.rulePriority %d is not below %d", r.RulePriority, tailscaledRulePriority)
		}
		v.m.routing.RulePriority = r.RulePriority
	}
}
