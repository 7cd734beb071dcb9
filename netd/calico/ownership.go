package calico

import (
	"net/netip"
	"slices"

	"github.com/ducksnest/netd/policy/desired"
)

// WithIPAMOwners returns a copy of sp whose node peers accept exactly the
// blocks Calico IPAM has made affine to them (owners, from
// AffinitySource.Owners), so that a node can only originate its own
// blocks. External peers are left as compiled. A node peer without blocks
// gets no import range: it may originate nothing.
func WithIPAMOwners(sp desired.Speaker, owners map[string][]netip.Prefix) desired.Speaker {
	out := sp
	out.Peers = slices.Clone(sp.Peers)
	for i := range out.Peers {
		p := &out.Peers[i]
		if p.Kind != desired.PeerNode {
			continue
		}
		var rs []desired.PrefixRange
		for _, b := range owners[p.Name] {
			rs = append(rs, desired.PrefixRange{Prefix: b, MinLen: b.Bits(), MaxLen: b.Bits()})
		}
		p.Import.Ranges = rs
	}
	return out
}
