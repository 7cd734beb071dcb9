package lab

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
)

// Path kinds.
const (
	PathLAN     = "lan"
	PathOverlay = "overlay"
	PathLocal   = "local"
)

// Hop is where a node sends traffic for an address.
type Hop struct {
	Kind  string     `json:"kind"` // lan, overlay, local or the device name
	Dev   string     `json:"dev"`
	Via   netip.Addr `json:"via,omitzero"`
	Table int        `json:"table"`
	MTU   int        `json:"mtu,omitempty"`
}

func (h Hop) String() string {
	s := h.Kind
	if h.Via.IsValid() {
		s += " via " + h.Via.String()
	}
	if h.MTU > 0 {
		s += fmt.Sprintf(" mtu %d", h.MTU)
	}
	return s
}

// Path looks up, in the source pod's node, where traffic from the pod to
// dst goes (as forwarded traffic: input device = the pod's host veth).
func (l *Lab) Path(src Pod, dst netip.Addr) (Hop, error) {
	n, err := l.Node(src.Node)
	if err != nil {
		return Hop{}, err
	}
	var hop Hop
	err = withHandle(n.NS, func(h *netlink.Handle) error {
		rs, err := h.RouteGetWithOptions(dst.AsSlice(), &netlink.RouteGetOptions{Iif: src.HostVeth, SrcAddr: src.Addr.AsSlice()})
		if err != nil {
			return fmt.Errorf("route get %s from %s in %s: %w", dst, src.Addr, n.NS, err)
		}
		if len(rs) == 0 {
			return fmt.Errorf("route get %s in %s: no route", dst, n.NS)
		}
		r := rs[0]
		lk, err := h.LinkByIndex(r.LinkIndex)
		if err != nil {
			return fmt.Errorf("link %d in %s: %w", r.LinkIndex, n.NS, err)
		}
		hop = Hop{Dev: lk.Attrs().Name, Table: r.Table, MTU: r.MTU}
		if a, ok := netip.AddrFromSlice(r.Gw); ok {
			hop.Via = a.Unmap()
		}
		switch {
		case hop.Dev == l.Overlay.Interface:
			hop.Kind = PathOverlay
		case n.LANLink.Interface != "" && hop.Dev == n.LANLink.Interface:
			hop.Kind = PathLAN
		case strings.HasPrefix(hop.Dev, "cali"):
			hop.Kind = PathLocal
		default:
			hop.Kind = hop.Dev
		}
		return nil
	})
	return hop, err
}

// ExpectedMTU is the path MTU a hop should have.
func (l *Lab) ExpectedMTU(src Pod, hop Hop) int {
	n, _ := l.Node(src.Node)
	switch hop.Kind {
	case PathOverlay:
		return l.Overlay.MTU
	case PathLAN:
		return n.LANLink.MTU
	}
	return 0
}

// PairResult is one pod-to-pod check.
type PairResult struct {
	Src  Pod        `json:"src"`
	Dst  Pod        `json:"dst"`
	Path Hop        `json:"path"`
	ICMP PingResult `json:"icmp"`
	TCP  string     `json:"tcp"` // "ok" or the error
	Err  string     `json:"err,omitempty"`
}

// OK reports whether both ICMP and TCP passed.
func (r PairResult) OK() bool { return r.Err == "" && r.ICMP.Reply && r.TCP == "ok" }

// MTUResult is one path-MTU probe between the probe pods of two nodes.
type MTUResult struct {
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Path     Hop    `json:"path"`
	Expected int    `json:"expected"`
	// At is the answer to a DF echo of exactly Expected bytes; Above to
	// one of Expected+1 bytes.
	At    PingResult `json:"at"`
	Above PingResult `json:"above"`
	Err   string     `json:"err,omitempty"`
}

// OK reports whether the echo at the MTU was answered and the one above was refused
// with the right MTU (or by the sender itself when the path MTU equals its
// own device MTU).
func (r MTUResult) OK() bool {
	if r.Err != "" || !r.At.Reply || r.Expected == 0 {
		return false
	}
	return (r.Above.FragNeeded && r.Above.MTU == r.Expected) || (r.Above.LocalTooBig && r.Expected >= 1500)
}

// BulkResult is a bulk TCP transfer.
type BulkResult struct {
	Src   Pod           `json:"src"`
	Dst   Pod           `json:"dst"`
	Path  Hop           `json:"path"`
	Bytes int           `json:"bytes"`
	Took  time.Duration `json:"took"`
	Err   string        `json:"err,omitempty"`
}

// Report is the result of Check.
type Report struct {
	Pairs []PairResult `json:"pairs"`
	MTU   []MTUResult  `json:"mtu"`
	Bulk  *BulkResult  `json:"bulk,omitempty"`
}

// OK reports whether every check passed.
func (r *Report) OK() bool {
	for _, p := range r.Pairs {
		if !p.OK() {
			return false
		}
	}
	for _, m := range r.MTU {
		if !m.OK() {
			return false
		}
	}
	return r.Bulk == nil || r.Bulk.Err == ""
}

// CheckOptions choose what Check does.
type CheckOptions struct {
	Timeout   time.Duration // per probe (default 3s)
	BulkBytes int           // 0: no bulk transfer
	Parallel  int           // default 8
}

// Check runs the pod-to-pod matrix (ICMP and TCP), a path-MTU probe per
// node pair, and, if asked, a bulk TCP transfer over an overlay pair.
func (l *Lab) Check(ctx context.Context, o CheckOptions) (*Report, error) {
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Second
	}
	if o.Parallel == 0 {
		o.Parallel = 8
	}
	pods := l.AllPods()
	echo, err := StartEcho(pods)
	if err != nil {
		return nil, err
	}
	defer echo.Close()
	rep := &Report{}
	for _, s := range pods {
		for _, d := range pods {
			if s.Addr != d.Addr {
				rep.Pairs = append(rep.Pairs, PairResult{Src: s, Dst: d})
			}
		}
	}
	sem := make(chan struct{}, o.Parallel)
	var wg sync.WaitGroup
	for i := range rep.Pairs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			l.checkPair(ctx, echo, &rep.Pairs[i], o.Timeout)
		})
	}
	wg.Wait()
	for _, a := range l.Nodes {
		for _, b := range l.Nodes {
			if a != b && a.Probe != nil && b.Probe != nil {
				rep.MTU = append(rep.MTU, l.ProbeMTU(ctx, *a.Probe, *b.Probe, o.Timeout))
			}
		}
	}
	if o.BulkBytes > 0 {
		rep.Bulk = l.bulk(ctx, echo, o.BulkBytes)
	}
	return rep, nil
}

func (l *Lab) checkPair(ctx context.Context, echo *EchoServers, r *PairResult, timeout time.Duration) {
	hop, err := l.Path(r.Src, r.Dst.Addr)
	if err != nil {
		r.Err = err.Error()
	}
	r.Path = hop
	if r.ICMP, err = Ping(ctx, r.Src.NS, r.Src.Addr, r.Dst.Addr, 84, false, timeout); err != nil {
		r.Err = err.Error()
	}
	ap, _ := echo.Addr(r.Dst.Addr)
	msg := []byte(fmt.Sprintf("hello %s from %s", r.Dst.Addr, r.Src.Addr))
	if _, err := TCPEcho(ctx, r.Src, ap, msg, timeout); err != nil {
		r.TCP = err.Error()
	} else {
		r.TCP = "ok"
	}
}

// ProbeMTU checks the path MTU from probe pod src to probe pod dst: a DF
// echo of exactly the expected MTU must be answered, one byte more must be
// refused with frag-needed carrying the expected MTU.
func (l *Lab) ProbeMTU(ctx context.Context, src, dst Pod, timeout time.Duration) MTUResult {
	r := MTUResult{Src: src.Node, Dst: dst.Node}
	hop, err := l.Path(src, dst.Addr)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	r.Path, r.Expected = hop, l.ExpectedMTU(src, hop)
	if r.Expected == 0 {
		r.Err = fmt.Sprintf("no MTU expected for path %s", hop.Kind)
		return r
	}
	if err := FlushRouteCache(src.NS); err != nil {
		r.Err = err.Error()
		return r
	}
	if r.At, err = Ping(ctx, src.NS, src.Addr, dst.Addr, r.Expected, true, timeout); err != nil {
		r.Err = err.Error()
		return r
	}
	if r.Above, err = Ping(ctx, src.NS, src.Addr, dst.Addr, r.Expected+1, true, timeout); err != nil {
		r.Err = err.Error()
	}
	return r
}

// bulk sends n bytes through the echo server from a pod to a pod whose
// path is the overlay (the first such pair), and back.
func (l *Lab) bulk(ctx context.Context, echo *EchoServers, n int) *BulkResult {
	for _, s := range l.AllPods() {
		for _, d := range l.AllPods() {
			if s.Node == d.Node {
				continue
			}
			hop, err := l.Path(s, d.Addr)
			if err != nil || hop.Kind != PathOverlay {
				continue
			}
			return l.Bulk(ctx, echo, s, d, n)
		}
	}
	return &BulkResult{Err: "no pod pair uses the overlay"}
}

// Bulk sends n random bytes from s to d's echo server and checks them back.
func (l *Lab) Bulk(ctx context.Context, echo *EchoServers, s, d Pod, n int) *BulkResult {
	r := &BulkResult{Src: s, Dst: d, Bytes: n}
	r.Path, _ = l.Path(s, d.Addr)
	payload := make([]byte, n)
	_, _ = rand.Read(payload)
	ap, ok := echo.Addr(d.Addr)
	if !ok {
		r.Err = "no echo server in " + d.NS
		return r
	}
	took, err := TCPEcho(ctx, s, ap, payload, 2*time.Minute)
	r.Took = took
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

// CheckIsolation asserts that nothing in the lab can reach the host or
// beyond: no lab namespace finds a route to outside addresses (a pod's
// default route ends at its node, which must have none), and no veth in
// a lab namespace has its peer outside the lab.
func (l *Lab) CheckIsolation(ctx context.Context) error {
	outside := []netip.Addr{netip.MustParseAddr("1.1.1.1"), netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("198.51.100.7")}
	nss := l.ownNamespaces()
	pods := map[string]bool{}
	for _, p := range l.allPodsAndProbes() {
		pods[p.NS] = true
	}
	var problems []string
	for _, ns := range nss {
		if pods[ns] {
			continue // checked through their nodes below
		}
		err := withHandle(ns, func(h *netlink.Handle) error {
			for _, a := range outside {
				if rs, err := h.RouteGet(a.AsSlice()); err == nil {
					problems = append(problems, fmt.Sprintf("%s has a route to %s: %v", ns, a, rs))
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	for _, p := range l.allPodsAndProbes() {
		n, _ := l.Node(p.Node)
		err := withHandle(n.NS, func(h *netlink.Handle) error {
			for _, a := range outside {
				rs, err := h.RouteGetWithOptions(a.AsSlice(), &netlink.RouteGetOptions{Iif: p.HostVeth, SrcAddr: p.Addr.AsSlice()})
				if err == nil {
					problems = append(problems, fmt.Sprintf("pod %s can reach %s via %s: %v", p.NS, a, n.NS, rs))
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	problems = append(problems, l.foreignVeths(nss)...)
	if len(problems) > 0 {
		return fmt.Errorf("lab %s is not isolated:\n  %s", l.Name, strings.Join(problems, "\n  "))
	}
	return nil
}

// foreignVeths lists veths in lab namespaces whose peer is not in a lab
// namespace.
func (l *Lab) foreignVeths(nss []string) []string {
	var problems []string
	for _, ns := range nss {
		err := withHandle(ns, func(h *netlink.Handle) error {
			links, err := h.LinkList()
			if err != nil {
				return fmt.Errorf("listing links in %s: %w", ns, err)
			}
			ok := map[int]bool{-1: true}
			for _, other := range nss {
				if id, err := nsID(h, other); err == nil && id >= 0 {
					ok[id] = true
				}
			}
			for _, lk := range links {
				if lk.Type() != "veth" {
					continue
				}
				if !ok[lk.Attrs().NetNsID] {
					problems = append(problems, fmt.Sprintf("veth %s in %s has its peer outside the lab (netnsid %d)", lk.Attrs().Name, ns, lk.Attrs().NetNsID))
				}
			}
			return nil
		})
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	return problems
}

func (l *Lab) allPodsAndProbes() []Pod {
	var ps []Pod
	for _, n := range l.Nodes {
		ps = append(ps, n.Pods...)
		if n.Probe != nil {
			ps = append(ps, *n.Probe)
		}
	}
	return ps
}
