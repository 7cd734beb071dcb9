package routes

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ducksnest/netd/netd/routes/nl"
)

// key is an IPv4 prefix as a map key: address << 8 | length. Maps keyed by
// it hash far faster than by netip.Prefix, which matters at 100k routes.
type key uint64

func keyOf(p netip.Prefix) key {
	a := p.Addr().As4()
	return key(uint64(binary.BigEndian.Uint32(a[:]))<<8 | uint64(p.Bits()))
}

// normalize validates want and returns its routes in a canonical form
// (masked prefix, next hops sorted and unique), sorted by destination and
// indexed by key, plus the errors of the routes it had to drop.
func normalize(want []Route) ([]Route, map[key]int, []error) {
	out := make([]Route, 0, len(want))
	var errs []error
	for _, r := range want {
		if err := validate(r); err != nil {
			errs = append(errs, fmt.Errorf("route %v: %w", r.Dst, err))
			continue
		}
		r.Dst = r.Dst.Masked()
		r.NextHops = canonHops(r.NextHops)
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b Route) int { return cmp.Compare(keyOf(a.Dst), keyOf(b.Dst)) })
	idx := make(map[key]int, len(out))
	j := 0
	for _, r := range out {
		k := keyOf(r.Dst)
		if i, dup := idx[k]; dup {
			if !sameRoute(out[i], r) {
				errs = append(errs, fmt.Errorf("route %v: wanted twice, differently", r.Dst))
			}
			continue
		}
		idx[k] = j
		out[j] = r
		j++
	}
	return out[:j], idx, errs
}

// sameRoute compares two normalized routes.
func sameRoute(a, b Route) bool {
	return a.Dst == b.Dst && a.MTU == b.MTU && a.AdvMSS == b.AdvMSS && slices.Equal(a.NextHops, b.NextHops)
}

func validate(r Route) error {
	switch {
	case !r.Dst.IsValid() || !r.Dst.Addr().Is4():
		return errors.New("destination is not an IPv4 prefix")
	case len(r.NextHops) == 0:
		return errors.New("no next hop")
	case r.MTU < 0 || r.AdvMSS < 0 || r.MTU > 65535 || r.AdvMSS > 65535:
		return errors.New("mtu or advmss out of range")
	}
	for _, h := range r.NextHops {
		switch {
		case h.Gateway.IsValid() && !h.Gateway.Is4():
			return fmt.Errorf("gateway %v is not IPv4", h.Gateway)
		case h.Onlink && (h.Device == "" || !h.Gateway.IsValid()):
			return errors.New("an onlink next hop needs a gateway and a device")
		case !h.Gateway.IsValid() && (h.Device == "" || len(r.NextHops) > 1):
			return errors.New("a next hop without gateway needs a device and must be the only one")
		}
	}
	return nil
}

func canonHops(hs []NextHop) []NextHop {
	if len(hs) == 1 {
		return hs // read only
	}
	hs = slices.Clone(hs)
	slices.SortFunc(hs, func(a, b NextHop) int {
		return cmp.Or(a.Gateway.Compare(b.Gateway), cmp.Compare(a.Device, b.Device), boolCmp(a.Onlink, b.Onlink))
	})
	return slices.Compact(hs)
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// devices resolves device names to indexes and back, each at most once per
// call of the reconciler.
type devices struct {
	k      nl.Kernel
	byName map[string]int
	byIdx  map[int]string
	errs   map[string]error
}

func newDevices(k nl.Kernel) *devices {
	return &devices{k: k, byName: map[string]int{}, byIdx: map[int]string{}, errs: map[string]error{}}
}

func (d *devices) index(ctx context.Context, name string) (int, error) {
	if i, ok := d.byName[name]; ok {
		return i, nil
	}
	if err, ok := d.errs[name]; ok {
		return 0, err
	}
	i, err := d.k.LinkIndex(ctx, name)
	if err != nil {
		d.errs[name] = err
		return 0, err
	}
	d.byName[name], d.byIdx[i] = i, name
	return i, nil
}

func (d *devices) name(ctx context.Context, index int) string {
	if index == 0 {
		return ""
	}
	if n, ok := d.byIdx[index]; ok {
		return n
	}
	n, err := d.k.LinkName(ctx, index)
	if err != nil {
		n = fmt.Sprintf("if%d", index) // gone since the dump
	}
	d.byIdx[index] = n
	return n
}

// toKernel turns a wanted route into the kernel route netd writes. Its next
// hops are appended to scratch[:0]: clone them to keep the route.
func (r *Reconciler) toKernel(ctx context.Context, devs *devices, w Route, scratch []nl.NextHop) (nl.Route, error) {
	kr := nl.Route{
		Dst:      w.Dst,
		Table:    r.cfg.Table,
		Protocol: r.cfg.Protocol,
		Type:     unix.RTN_UNICAST,
		MTU:      w.MTU,
		AdvMSS:   w.AdvMSS,
		NextHops: scratch[:0],
	}
	for _, h := range w.NextHops {
		nh := nl.NextHop{Gateway: h.Gateway, Onlink: h.Onlink}
		if h.Device != "" {
			i, err := devs.index(ctx, h.Device)
			if err != nil {
				return kr, err
			}
			nh.LinkIndex = i
		}
		kr.NextHops = append(kr.NextHops, nh)
	}
	if len(kr.NextHops) == 1 && !kr.NextHops[0].Gateway.IsValid() {
		kr.Scope = unix.RT_SCOPE_LINK // a device route, as `ip route` makes it
	}
	return kr, nil
}

// fromKernel turns one of netd's kernel routes into a Route.
func fromKernel(ctx context.Context, devs *devices, kr nl.Route) Route {
	out := Route{Dst: kr.Dst, MTU: kr.MTU, AdvMSS: kr.AdvMSS}
	for _, h := range kr.NextHops {
		out.NextHops = append(out.NextHops, NextHop{Gateway: h.Gateway, Device: devs.name(ctx, h.LinkIndex), Onlink: h.Onlink})
	}
	out.NextHops = canonHops(out.NextHops)
	return out
}

// sameKernel reports whether have already is want (the fields netd sets).
func sameKernel(want, have nl.Route) bool {
	if want.Type != have.Type || want.Scope != have.Scope || want.MTU != have.MTU ||
		want.AdvMSS != have.AdvMSS || len(want.NextHops) != len(have.NextHops) {
		return false
	}
	if len(want.NextHops) == 1 {
		return want.NextHops[0] == have.NextHops[0]
	}
	// ECMP: the same set in any order (there are few hops).
	for _, w := range want.NextHops {
		if !slices.Contains(have.NextHops, w) {
			return false
		}
	}
	for _, h := range have.NextHops {
		if !slices.Contains(want.NextHops, h) {
			return false
		}
	}
	return true
}

// split sorts the routes of the table: netd's at metric 0 and tos 0 by
// destination (index into have), netd's others (never written by netd,
// removed on prune), and the destinations another protocol holds at metric
// 0 and tos 0 (a replace there would overwrite someone else's route).
func (r *Reconciler) split(have []nl.Route) (ours map[key]int, oursOther []nl.Route, foreign map[key]int) {
	ours = make(map[key]int, len(have))
	foreign = map[key]int{}
	for i, kr := range have {
		switch {
		case !kr.Dst.Addr().Is4():
			continue
		case kr.Protocol != r.cfg.Protocol:
			if kr.Priority == 0 && kr.Tos == 0 {
				foreign[keyOf(kr.Dst)] = kr.Protocol
			}
		case kr.Priority == 0 && kr.Tos == 0:
			ours[keyOf(kr.Dst)] = i
		default:
			oursOther = append(oursOther, kr)
		}
	}
	return ours, oursOther, foreign
}

// joinCapped joins at most maxErrs errors and says how many it left out.
func joinCapped(errs []error) error {
	const maxErrs = 20
	if len(errs) > maxErrs {
		more := fmt.Errorf("and %d more errors", len(errs)-maxErrs)
		errs = append(errs[:maxErrs:maxErrs], more)
	}
	return errors.Join(errs...)
}

// sortKernel sorts IPv4 kernel routes by destination, then metric and tos.
func sortKernel(rs []nl.Route) {
	slices.SortFunc(rs, func(a, b nl.Route) int {
		return cmp.Or(comparePrefix(a.Dst, b.Dst), cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.Tos, b.Tos))
	})
}

func sortRoutes(rs []Route) {
	slices.SortFunc(rs, func(a, b Route) int { return comparePrefix(a.Dst, b.Dst) })
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}
