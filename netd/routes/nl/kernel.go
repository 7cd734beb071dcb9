// Package nl is the narrow kernel interface of netd's routing: list the
// routes of one table, list/add/delete policy rules, apply a batch of route
// replace/delete operations, resolve device names, find the device that
// holds an address (the LAN device), list devices, and ask which route a
// packet takes (netd doctor). Every read netd's routing makes of the
// kernel goes through it, so the fake sees it and the real implementation
// retries interrupted dumps. Netlink implements it
// on a *netlink.Handle plus a raw NETLINK_ROUTE socket that sends many route
// messages per sendmsg; Fake keeps the state in memory and prints it as
// `ip route`/`ip rule`-like text for tests.
package nl

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Kernel is everything netd's routing needs from the kernel.
type Kernel interface {
	// ListRoutes returns every IPv4 route in table, of any protocol.
	ListRoutes(ctx context.Context, table int) ([]Route, error)
	// ListRules returns the IPv4 policy rules.
	ListRules(ctx context.Context) ([]Rule, error)
	// AddRule adds r; adding a rule that exists is not an error.
	AddRule(ctx context.Context, r Rule) error
	// DelRule deletes r; deleting a rule that is gone is not an error.
	DelRule(ctx context.Context, r Rule) error
	// Apply performs ops in order and returns one error per op (nil if it
	// succeeded). Deleting a route that is gone succeeds.
	Apply(ctx context.Context, ops []Op) []error
	// LinkIndex returns the index of the device called name.
	LinkIndex(ctx context.Context, name string) (int, error)
	// LinkName returns the name of the device with the given index.
	LinkName(ctx context.Context, index int) (string, error)
	// AddrDevice returns the name of the device that holds the IPv4
	// address a.
	AddrDevice(ctx context.Context, a netip.Addr) (string, error)
	// Links lists the devices with their MTU and state.
	Links(ctx context.Context) ([]Link, error)
	// RouteGet asks the kernel which route a packet to q.Dst takes (`ip
	// route get`), through the policy rules: the table it was found in,
	// the device and the gateway.
	RouteGet(ctx context.Context, q RouteQuery) (Lookup, error)
}

// Route is one kernel route (IPv4).
type Route struct {
	Dst      netip.Prefix
	Table    int
	Protocol int
	Priority int // RTA_PRIORITY, the route metric
	Tos      int
	Type     int // RTN_*; 0 means unicast when writing
	Scope    int // RT_SCOPE_*; 0 (universe) unless a device route
	NextHops []NextHop
	MTU      int // RTAX_MTU, 0 if unset
	AdvMSS   int // RTAX_ADVMSS, 0 if unset
}

// NextHop is one path of a route; a route with several is ECMP.
type NextHop struct {
	Gateway   netip.Addr // invalid for a device route
	LinkIndex int        // 0 if the kernel is to pick the device
	Onlink    bool       // RTNH_F_ONLINK: the gateway is on the link even without a covering subnet
}

// OpKind is what an Op does.
type OpKind int

// Operations.
const (
	// Replace creates the route or replaces the one with the same
	// destination, tos and priority in the table.
	Replace OpKind = iota
	// Delete removes the route with the same destination, table, protocol,
	// tos and priority.
	Delete
)

func (k OpKind) String() string {
	if k == Delete {
		return "delete"
	}
	return "replace"
}

// Op is one route write.
type Op struct {
	Kind  OpKind
	Route Route
}

// Rule is an IPv4 policy rule. Only the fields netd looks at are kept; a
// rule with any selector this type cannot express has Selectors set.
type Rule struct {
	Priority int
	Table    int
	Protocol int // FRA_PROTOCOL: who installed the rule
	// Selectors is true if the rule matches on anything (source,
	// destination, mark, interface, ...), i.e. it is not "from all".
	Selectors bool
	// Desc is the kernel's rule in words, for logs and the fake's dump.
	Desc string
}

// String renders r like `ip rule`.
func (r Rule) String() string {
	if r.Desc != "" {
		return r.Desc
	}
	s := fmt.Sprintf("%d: from all lookup %s", r.Priority, tableName(r.Table))
	if r.Protocol != 0 {
		s += " proto " + strconv.Itoa(r.Protocol)
	}
	return s
}

func tableName(t int) string {
	switch t {
	case unix.RT_TABLE_MAIN:
		return "main"
	case unix.RT_TABLE_LOCAL:
		return "local"
	case unix.RT_TABLE_DEFAULT:
		return "default"
	}
	return strconv.Itoa(t)
}

// Format renders r like `ip route show table all`; name maps a link index
// to a device name (nil: print the index).
func (r Route) Format(name func(int) string) string {
	var b strings.Builder
	switch r.Type {
	case 0, unix.RTN_UNICAST:
	case unix.RTN_BLACKHOLE:
		b.WriteString("blackhole ")
	case unix.RTN_UNREACHABLE:
		b.WriteString("unreachable ")
	case unix.RTN_LOCAL:
		b.WriteString("local ")
	default:
		fmt.Fprintf(&b, "type%d ", r.Type)
	}
	b.WriteString(r.Dst.String())
	hop := func(h NextHop) {
		if h.Gateway.IsValid() {
			b.WriteString(" via " + h.Gateway.String())
		}
		if h.LinkIndex != 0 {
			dev := strconv.Itoa(h.LinkIndex)
			if name != nil {
				dev = name(h.LinkIndex)
			}
			b.WriteString(" dev " + dev)
		}
		if h.Onlink {
			b.WriteString(" onlink")
		}
	}
	if len(r.NextHops) == 1 {
		hop(r.NextHops[0])
	}
	b.WriteString(" table " + tableName(r.Table))
	b.WriteString(" proto " + protoName(r.Protocol))
	if r.Scope != 0 {
		b.WriteString(" scope " + strconv.Itoa(r.Scope))
	}
	if r.Priority != 0 {
		b.WriteString(" metric " + strconv.Itoa(r.Priority))
	}
	if r.Tos != 0 {
		b.WriteString(" tos " + strconv.Itoa(r.Tos))
	}
	if r.MTU != 0 {
		b.WriteString(" mtu " + strconv.Itoa(r.MTU))
	}
	if r.AdvMSS != 0 {
		b.WriteString(" advmss " + strconv.Itoa(r.AdvMSS))
	}
	if len(r.NextHops) > 1 {
		for _, h := range r.NextHops {
			b.WriteString(" nexthop")
			hop(h)
		}
	}
	return b.String()
}

func protoName(p int) string {
	switch p {
	case unix.RTPROT_KERNEL:
		return "kernel"
	case unix.RTPROT_BOOT:
		return "boot"
	case unix.RTPROT_STATIC:
		return "static"
	}
	return strconv.Itoa(p)
}

// String renders r with link indexes.
func (r Route) String() string { return r.Format(nil) }
