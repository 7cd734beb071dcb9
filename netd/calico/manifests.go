package calico

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	v3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"github.com/projectcalico/api/pkg/lib/numorstring"
	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ducksnest/netd/policy/desired"
)

// Object identity. Every object netd writes carries OwnerLabel, so that the
// reconciler prunes only what it made.
const (
	OwnerLabel = "netd.ducksnest.dev/managed-by"
	OwnerValue = "netd"
	// PodMTUAnnotation on the FelixConfiguration records the pod MTU the
	// policy derived, for tools and humans (see Manifests).
	PodMTUAnnotation = "netd.ducksnest.dev/pod-mtu"
)

// Manifest is one Calico object as plain data: what the reconciler writes
// and `netd policy render --calico` prints. Spec keys are the Calico field
// names.
type Manifest struct {
	APIVersion string         `json:"apiVersion" yaml:"apiVersion"`
	Kind       string         `json:"kind" yaml:"kind"`
	Metadata   ManifestMeta   `json:"metadata" yaml:"metadata"`
	Spec       map[string]any `json:"spec" yaml:"spec"`
}

// ManifestMeta is the part of ObjectMeta netd sets.
type ManifestMeta struct {
	Name        string            `json:"name" yaml:"name"`
	Labels      map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty" yaml:"annotations,omitempty"`
}

func meta(name string) ManifestMeta {
	return ManifestMeta{Name: name, Labels: map[string]string{OwnerLabel: OwnerValue}}
}

// vxlanMode maps a pool encapsulation to Calico's vxlanMode.
var vxlanMode = map[string]v3.VXLANMode{"None": v3.VXLANModeNever, "VXLAN": v3.VXLANModeAlways, "VXLANCrossSubnet": v3.VXLANModeCrossSubnet}

// Manifests maps the Calico part of the desired state to Calico objects of
// API group and version gv: the IPPools, the default IPAM configuration
// (strict affinity), FelixConfiguration and BGPConfiguration. The specs are
// built from Calico's public API types (github.com/projectcalico/api,
// projectcalico.org/v3), whose field names and enums the
// crd.projectcalico.org/v1 CRDs share, except the IPAM configuration: v3
// calls it IPAMConfiguration (no autoAllocateBlocks field in the pinned
// API: Calico allocates blocks automatically), v1 IPAMConfig. Booleans
// netd owns (natOutgoing, disabled, strictAffinity) are always written,
// false included, so that a hand edit is seen as drift.
//
// Felix has no veth MTU field: with mtuIfacePattern matching only the
// overlay, Felix detects the overlay MTU, subtracts the encapsulation
// overhead and hands the result to the CNI plugin (whose configured MTU
// must be 0, "auto"); the derived value is also recorded in the
// PodMTUAnnotation. BGP is spoken by netd, so Calico's node-to-node mesh is
// turned off.
func Manifests(s *desired.State, gv schema.GroupVersion) []Manifest {
	apiVersion := gv.String()
	var out []Manifest
	for _, p := range s.Calico.IPPools {
		sp := specMap(v3.IPPoolSpec{
			CIDR: p.CIDR.String(), BlockSize: p.BlockSize,
			IPIPMode: v3.IPIPModeNever, VXLANMode: vxlanMode[p.Encapsulation],
			NodeSelector: p.NodeSelector,
		})
		sp["natOutgoing"], sp["disabled"] = p.NATOutgoing, p.Disabled
		out = append(out, Manifest{APIVersion: apiVersion, Kind: v3.KindIPPool, Metadata: meta(p.Name), Spec: sp})
	}
	ipam := specMap(v3.IPAMConfigurationSpec{StrictAffinity: s.Calico.StrictAffinity})
	ipamKind := v3.KindIPAMConfiguration
	if gv != V3 {
		ipamKind = "IPAMConfig"
		ipam["autoAllocateBlocks"] = true
	}
	out = append(out, Manifest{APIVersion: apiVersion, Kind: ipamKind, Metadata: meta("default"), Spec: ipam})
	felix := v3.FelixConfigurationSpec{
		MTUIfacePattern:  s.Calico.Felix.MTUIfacePattern,
		InterfaceExclude: s.Calico.Felix.InterfaceExclude,
	}
	if s.Calico.Felix.VXLANMTU > 0 {
		felix.VXLANMTU = &s.Calico.Felix.VXLANMTU
	}
	fs := specMap(felix)
	fs["iptablesMarkMask"] = HexMask(s.Calico.Felix.IptablesMarkMask)
	fm := meta("default")
	fm.Annotations = map[string]string{PodMTUAnnotation: strconv.Itoa(s.Calico.Felix.VethMTU)}
	out = append(out, Manifest{APIVersion: apiVersion, Kind: v3.KindFelixConfiguration, Metadata: fm, Spec: fs})
	mesh := false
	bgp := v3.BGPConfigurationSpec{NodeToNodeMeshEnabled: &mesh}
	if len(s.Nodes) > 0 {
		asn := numorstring.ASNumber(s.Nodes[0].BGP.ASN)
		bgp.ASNumber = &asn
	}
	out = append(out, Manifest{APIVersion: apiVersion, Kind: v3.KindBGPConfiguration, Metadata: meta("default"), Spec: specMap(bgp)})
	return out
}

// specMap turns a typed Calico spec into the plain map a Manifest holds
// (whole numbers as int64, as the API server returns them).
func specMap(spec any) map[string]any {
	b, err := json.Marshal(spec)
	if err != nil {
		panic(fmt.Sprintf("encoding %T: %v", spec, err)) // plain structs of strings, ints and bools
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		panic(fmt.Sprintf("decoding %T: %v", spec, err))
	}
	for k, v := range m {
		if v == "" { // a string field without omitempty (Felix's bpfLogLevel): not netd's
			delete(m, k)
		}
	}
	return normalizeNumbers(m).(map[string]any)
}

func normalizeNumbers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = normalizeNumbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = normalizeNumbers(e)
		}
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n
		}
		f, _ := v.Float64()
		return f
	}
	return v
}

// Render writes the Manifests of gv as a multi-document YAML stream, for
// `netd policy render --calico` (projectcalico.org/v3, what `calicoctl
// apply` and `kubectl apply` take on a cluster that serves it).
func Render(s *desired.State, gv schema.GroupVersion) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Generated by netd from %s (policy %s, %s). Do not edit.\n", sourceName(s), s.Name, s.Digest)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	for _, m := range Manifests(s, gv) {
		if err := enc.Encode(m); err != nil {
			return nil, fmt.Errorf("encoding %s %s: %w", m.Kind, m.Metadata.Name, err)
		}
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding calico manifests: %w", err)
	}
	return b.Bytes(), nil
}

func sourceName(s *desired.State) string {
	if s.Source == "" {
		return "an in-memory policy"
	}
	return s.Source
}

// HexMask is a mark mask that YAML renders in hex (0x7f000f00), as
// Calico's documentation writes it; JSON gets the plain number.
type HexMask uint32

// MarshalYAML writes the mask as a hex integer.
func (m HexMask) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: fmt.Sprintf("%#08x", uint32(m))}, nil
}
