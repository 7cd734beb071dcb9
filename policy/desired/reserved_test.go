package desired

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestReserved(t *testing.T) {
	n := Networks{
		Pods: netip.MustParsePrefix("10.244.0.0/16"), Services: netip.MustParsePrefix("10.96.0.0/12"),
		Overlay: netip.MustParsePrefix("100.64.0.0/10"),
		LANs:    []LAN{{Name: "home-lan", Prefix: netip.MustParsePrefix("192.168.0.0/24")}},
	}
	rs := n.Reserved()
	var names []string
	for _, r := range rs {
		names = append(names, r.Name+" "+r.Prefix.String())
	}
	want := []string{"pod CIDR 10.244.0.0/16", "service CIDR 10.96.0.0/12", "overlay 100.64.0.0/10", "LAN home-lan 192.168.0.0/24", "default route 0.0.0.0/0"}
	if len(names) != len(want) {
		t.Fatalf("reserved %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Errorf("reserved[%d] = %q, want %q", i, names[i], want[i])
		}
	}
	def, pods := rs[4], rs[0]
	for _, c := range []struct {
		r    ReservedRange
		p    string
		want bool
	}{
		{def, "0.0.0.0/0", true},
		{def, "0.0.0.0/1", false},
		{def, "10.0.0.0/8", false},
		{pods, "0.0.0.0/0", true},
		{pods, "10.0.0.0/8", true},
		{pods, "10.244.0.0/16", true},
		{pods, "10.244.1.0/25", true},
		{pods, "10.245.0.0/16", false},
		{pods, "10.240.0.0/14", false},
	} {
		if got := c.r.Reaches(netip.MustParsePrefix(c.p)); got != c.want {
			t.Errorf("%s reached by %s = %v, want %v", c.r.Name, c.p, got, c.want)
		}
	}
}

// ReachedBy(range) holds exactly when some prefix of the range reaches
// the reserved range (checked by enumerating small ranges).
func TestReachedByEnumerates(t *testing.T) {
	rs := []ReservedRange{
		{Name: "a", Prefix: netip.MustParsePrefix("10.244.0.0/16")},
		{Name: "b", Prefix: netip.MustParsePrefix("10.0.0.0/8")},
		{Name: DefaultRouteName, Prefix: netip.MustParsePrefix("0.0.0.0/0")},
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		bits := rnd.IntN(13)
		addr := netip.AddrFrom4([4]byte{byte(rnd.IntN(3) * 5), byte(rnd.IntN(256)), 0, 0})
		if rnd.IntN(2) == 0 {
			addr = netip.AddrFrom4([4]byte{10, byte(rnd.IntN(256)), 0, 0})
		}
		p := netip.PrefixFrom(addr, bits).Masked()
		lo := bits + rnd.IntN(17-bits)
		hi := lo + rnd.IntN(17-lo)
		pr := PrefixRange{Prefix: p, MinLen: lo, MaxLen: hi}
		for _, r := range rs {
			any := false
			for l := lo; l <= hi && !any; l++ {
				// Every prefix of length l inside p.
				n := 1 << (l - bits)
				for i := 0; i < n && !any; i++ {
					a := p.Addr().As4()
					v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
					if l > 0 {
						v |= uint32(i) << (32 - l)
					}
					q := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), l)
					any = r.Reaches(q)
				}
			}
			if got := r.ReachedBy(pr); got != any {
				t.Fatalf("%s reached by %v..%v of %s: %v, enumeration says %v", r.Name, lo, hi, p, got, any)
			}
		}
	}
}
