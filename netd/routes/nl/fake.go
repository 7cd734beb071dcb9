package nl

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Fake is an in-memory Kernel for tests. It follows the kernel's rules where
// they matter to the reconciler (a route is keyed by table, destination, tos
// and metric; a delete with a protocol only matches that protocol; a missing
// device is ENODEV) and counts every write.
type Fake struct {
	mu     sync.Mutex
	routes map[fakeKey]Route
	rules  []Rule
	links  map[string]int
	addrs  map[netip.Addr]string // address -> device
	mtus   map[string]int        // device -> MTU, if set
	writes int
	// Fail, if set, is called for every route op before it is applied; a
	// non-nil error fails that op.
	Fail func(Op) error
	// FailRule, if set, fails every AddRule.
	FailRule error
}

type fakeKey struct {
	table    int
	dst      netip.Prefix
	tos, pri int
}

var _ Kernel = (*Fake)(nil)

// NewFake returns a Fake with the given devices (indexes 2, 3, ...; 1 is lo).
func NewFake(links ...string) *Fake {
	f := &Fake{routes: map[fakeKey]Route{}, links: map[string]int{"lo": 1}, addrs: map[netip.Addr]string{}, mtus: map[string]int{}}
	for _, l := range links {
		f.AddLink(l)
	}
	return f
}

// AddLink adds a device and returns its index.
func (f *Fake) AddLink(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i, ok := f.links[name]; ok {
		return i
	}
	i := len(f.links) + 1
	f.links[name] = i
	return i
}

// AddAddr gives device dev (added if new) the address a, as a test's
// setup; an address moved to another device leaves the old one.
func (f *Fake) AddAddr(dev string, a netip.Addr) {
	f.AddLink(dev)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs[a.Unmap()] = dev
}

// DelAddr removes the address a from whichever device holds it.
func (f *Fake) DelAddr(a netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.addrs, a.Unmap())
}

// SetRoute puts r in the state as a test's setup; it is not counted as a
// write.
func (f *Fake) SetRoute(r Route) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Type == 0 {
		r.Type = unix.RTN_UNICAST
	}
	f.routes[keyOf(r)] = r
}

// SetRule appends r as a test's setup; it is not counted as a write.
func (f *Fake) SetRule(r Rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.insertRule(r)
}

// Writes is the number of writes (route ops and rule changes) so far.
func (f *Fake) Writes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes
}

func keyOf(r Route) fakeKey {
	return fakeKey{table: r.Table, dst: r.Dst, tos: r.Tos, pri: r.Priority}
}

// ListRoutes implements Kernel.
func (f *Fake) ListRoutes(ctx context.Context, table int) ([]Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Route
	for k, r := range f.routes {
		if k.table == table {
			r.NextHops = slices.Clone(r.NextHops)
			out = append(out, r)
		}
	}
	return out, nil
}

// ListRules implements Kernel.
func (f *Fake) ListRules(ctx context.Context) ([]Rule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.rules), nil
}

func (f *Fake) insertRule(r Rule) {
	i := len(f.rules)
	for j, o := range f.rules {
		if o.Priority > r.Priority {
			i = j
			break
		}
	}
	f.rules = slices.Insert(f.rules, i, r)
}

// AddRule implements Kernel.
func (f *Fake) AddRule(ctx context.Context, r Rule) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.FailRule != nil {
		return fmt.Errorf("adding rule %v: %w", r, f.FailRule)
	}
	if r.Selectors {
		return fmt.Errorf("adding rule %v: cannot write a rule with selectors", r)
	}
	if slices.Contains(f.rules, r) {
		return nil
	}
	f.insertRule(r)
	return nil
}

// DelRule implements Kernel: like the kernel, it deletes the first rule
// that matches what r sets.
func (f *Fake) DelRule(ctx context.Context, r Rule) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	for i, o := range f.rules {
		if o.Priority == r.Priority && o.Table == r.Table && (r.Protocol == 0 || o.Protocol == r.Protocol) {
			f.rules = slices.Delete(f.rules, i, i+1)
			return nil
		}
	}
	return nil
}

// Apply implements Kernel.
func (f *Fake) Apply(ctx context.Context, ops []Op) []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	errs := make([]error, len(ops))
	var scratch []byte
	for i, op := range ops {
		f.writes++
		if f.Fail != nil {
			if err := f.Fail(op); err != nil {
				errs[i] = fmt.Errorf("%s %s: %w", op.Kind, op.Route.Dst, err)
				continue
			}
		}
		// The same checks as the real encoder.
		var err error
		if scratch, err = appendRouteMsg(scratch[:0], op, 1); err != nil {
			errs[i] = fmt.Errorf("%s %s: %w", op.Kind, op.Route.Dst, err)
			continue
		}
		errs[i] = f.apply(op)
	}
	return errs
}

func (f *Fake) apply(op Op) error {
	r := op.Route
	if op.Kind == Delete {
		var match *fakeKey
		for k, o := range f.routes {
			if k.table == r.Table && k.dst == r.Dst && k.tos == r.Tos &&
				(r.Priority == 0 || k.pri == r.Priority) &&
				(r.Protocol == 0 || o.Protocol == r.Protocol) &&
				(match == nil || k.pri < match.pri) {
				match = &k
			}
		}
		if match != nil {
			delete(f.routes, *match)
		}
		return nil
	}
	for _, h := range r.NextHops {
		if h.LinkIndex != 0 && !slices.Contains(f.linkIndexes(), h.LinkIndex) {
			return fmt.Errorf("%s %s: %w", op.Kind, r.Dst, unix.ENODEV)
		}
	}
	if r.Type == 0 {
		r.Type = unix.RTN_UNICAST
	}
	r.NextHops = slices.Clone(r.NextHops)
	f.routes[keyOf(r)] = r
	return nil
}

func (f *Fake) linkIndexes() []int {
	out := make([]int, 0, len(f.links))
	for _, i := range f.links {
		out = append(out, i)
	}
	return out
}

// LinkIndex implements Kernel.
func (f *Fake) LinkIndex(ctx context.Context, name string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i, ok := f.links[name]; ok {
		return i, nil
	}
	return 0, fmt.Errorf("finding device %q: %w", name, unix.ENODEV)
}

// LinkName implements Kernel.
func (f *Fake) LinkName(ctx context.Context, index int) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.linkName(index)
}

// AddrDevice implements Kernel: like Netlink, it looks at IPv4 addresses
// only.
func (f *Fake) AddrDevice(ctx context.Context, a netip.Addr) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if dev, ok := f.addrs[a.Unmap()]; ok && a.Unmap().Is4() {
		return dev, nil
	}
	return "", fmt.Errorf("no device has address %s", a)
}

func (f *Fake) linkName(index int) (string, error) {
	for n, i := range f.links {
		if i == index {
			return n, nil
		}
	}
	return "", fmt.Errorf("finding device %d: %w", index, unix.ENODEV)
}

// Dump prints the state, one line per rule ("rule ...", in priority order)
// then one per route ("route ...", sorted), like `ip rule` and
// `ip route show table all`.
func (f *Fake) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, r := range f.rules {
		b.WriteString("rule " + r.String() + "\n")
	}
	name := func(i int) string {
		n, err := f.linkName(i)
		if err != nil {
			return fmt.Sprint(i)
		}
		return n
	}
	lines := make([]string, 0, len(f.routes))
	for _, r := range f.routes {
		lines = append(lines, "route "+r.Format(name))
	}
	slices.Sort(lines)
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	return b.String()
}
