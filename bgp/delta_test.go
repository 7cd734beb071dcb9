package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

// TestApplyLearned checks the incremental update of the learned list
// against the list a full read would give, for a few and for many changed
// prefixes (in place and merged).
func TestApplyLearned(t *testing.T) {
	nh := netip.MustParseAddr("100.64.0.1")
	mk := func(i int, peer string) Learned {
		return Learned{Prefix: netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)), NextHops: []netip.Addr{nh}, Peers: []string{peer}}
	}
	for _, changes := range []int{1, 5, 32, 33, 200} {
		t.Run(fmt.Sprint(changes), func(t *testing.T) {
			// before: even prefixes from a; after: every third prefix
			// changed (some added, some gone, some from b).
			var before, after []Learned
			for i := 0; i < 600; i += 2 {
				before = append(before, mk(i, "a"))
			}
			var only []netip.Prefix
			var read []Learned
			touched := map[netip.Prefix]bool{}
			for i := 0; i < 600 && len(only) < changes; i += 3 {
				p := mk(i, "a").Prefix
				only = append(only, p)
				touched[p] = true
				switch i % 4 {
				case 0: // stays, from b now
					read = append(read, mk(i, "b"))
				case 1: // new
					read = append(read, mk(i, "a"))
				}
				// i%4 == 2: withdrawn; 3: still absent
			}
			for i := 0; i < 600; i++ {
				l := mk(i, "a")
				if touched[l.Prefix] {
					if j := slices.IndexFunc(read, func(r Learned) bool { return r.Prefix == l.Prefix }); j >= 0 {
						after = append(after, read[j])
					}
				} else if i%2 == 0 {
					after = append(after, l)
				}
			}
			st := &state{learned: slices.Clone(before)}
			if !st.applyLearned(read, only) {
				t.Error("no change reported")
			}
			if !slices.EqualFunc(st.learned, after, equalLearned) {
				t.Errorf("got %d destinations, want %d:\n%v\nwant\n%v", len(st.learned), len(after), st.learned, after)
			}
			if st.applyLearned(read, only) {
				t.Error("the same read again reported a change")
			}
		})
	}
}
