package calico

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ducksnest/netd/policy/desired"
)

func TestWithIPAMOwners(t *testing.T) {
	ext := desired.Peer{Name: "router", Kind: desired.PeerExternal, Import: desired.Import{
		Ranges: []desired.PrefixRange{{Prefix: netip.MustParsePrefix("192.168.50.0/24"), MinLen: 24, MaxLen: 24}}}}
	sp := desired.Speaker{Peers: []desired.Peer{
		{Name: "node-b", Kind: desired.PeerNode, Import: desired.Import{MaxPrefixes: 10,
			Ranges: []desired.PrefixRange{{Prefix: netip.MustParsePrefix("10.244.9.0/24"), MinLen: 24, MaxLen: 24}}}},
		{Name: "node-c", Kind: desired.PeerNode},
		ext,
	}}
	got := WithIPAMOwners(sp, map[string][]netip.Prefix{"node-b": prefixes("10.244.1.0/26", "10.244.1.64/26")})
	b := got.Peers[0].Import
	if !b.Allows(netip.MustParsePrefix("10.244.1.64/26")) || b.Allows(netip.MustParsePrefix("10.244.9.0/24")) ||
		b.Allows(netip.MustParsePrefix("10.244.1.0/25")) || b.MaxPrefixes != 10 {
		t.Errorf("node-b import %+v", b)
	}
	if got.Peers[1].Import.Allows(netip.MustParsePrefix("10.244.1.0/26")) {
		t.Error("node-c may originate node-b's block")
	}
	if !slices.Equal(got.Peers[2].Import.Ranges, ext.Import.Ranges) {
		t.Error("external peer changed")
	}
	if len(sp.Peers[0].Import.Ranges) != 1 || sp.Peers[0].Import.Ranges[0].Prefix.Bits() != 24 {
		t.Error("input modified")
	}
}

func TestMergeKeepsForeignFields(t *testing.T) {
	cur := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"natOutgoing": false, "blockSize": int64(26), "allowedUses": []any{"Workload"}}}}
	want := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
		"natOutgoing": true, "blockSize": float64(26)}}}
	want.SetLabels(owner)
	next, changes := merge(cur, want)
	if !slices.Equal(changes, []string{`metadata.labels[netd.ducksnest.dev/managed-by]: "" → "netd"`, "spec.natOutgoing: false → true"}) {
		t.Errorf("changes %q", changes)
	}
	if !jsonEqual(spec(next)["allowedUses"], []any{"Workload"}) || spec(cur)["natOutgoing"] != false {
		t.Errorf("next %v, cur %v", next.Object, cur.Object)
	}
	if _, again := merge(next, want); len(again) != 0 {
		t.Errorf("not idempotent: %q", again)
	}
}

func TestDesiredObjects(t *testing.T) {
	objs, notes, err := desiredObjects(state("10.244.0.0/16", false), APIV1)
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0].Reason, "iptablesMarkMask 0xff000000 is not written") {
		t.Errorf("notes %v", notes)
	}
	if _, ok := spec(objs[2])["iptablesMarkMask"]; ok {
		t.Error("an out-of-range iptablesMarkMask is kept")
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetKind())
		_ = o.DeepCopy() // panics on values unstructured cannot hold
		if !owned(o) {
			t.Errorf("%s not labelled", o.GetKind())
		}
	}
	if !slices.Equal(kinds, []string{"IPPool", "IPAMConfig", "FelixConfiguration", "BGPConfiguration"}) {
		t.Errorf("kinds %v", kinds)
	}
	if replacementName(objs[0]) != "pods-10-244-0-0-16-26" {
		t.Errorf("replacement name %q", replacementName(objs[0]))
	}
}
