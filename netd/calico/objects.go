package calico

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ducksnest/netd/policy/desired"
)

// FieldManager is the server-side field manager of every write.
const FieldManager = "netd"

// PoolAnnotation on an IPPool names the policy pool it implements (the
// object name differs after a cidr or blockSize change).
const PoolAnnotation = "netd.ducksnest.dev/pool"

// The crd.projectcalico.org/v1 resources (APIV1).
var (
	IPPools             = V1.WithResource("ippools")
	IPAMBlocks          = V1.WithResource("ipamblocks")
	BlockAffinities     = V1.WithResource("blockaffinities")
	IPAMConfigs         = V1.WithResource("ipamconfigs")
	FelixConfigurations = V1.WithResource("felixconfigurations")
	BGPConfigurations   = V1.WithResource("bgpconfigurations")
)

// immutable are the IPPool spec fields Calico never lets change.
var immutable = []string{"cidr", "blockSize"}

func owned(u *unstructured.Unstructured) bool {
	return u.GetLabels()[OwnerLabel] == OwnerValue
}

// desiredObjects renders the Manifests of api as unstructured objects,
// with notes on settings the CRDs cannot hold.
func desiredObjects(st *desired.State, api API) ([]*unstructured.Unstructured, []Pending, error) {
	var out []*unstructured.Unstructured
	var notes []Pending
	for _, m := range Manifests(st, api.GroupVersion) {
		if _, ok := api.resourceOf(m.Kind); !ok {
			return nil, nil, fmt.Errorf("unknown calico kind %q", m.Kind)
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, nil, fmt.Errorf("encoding %s %s: %w", m.Kind, m.Metadata.Name, err)
		}
		var obj map[string]any
		if err := json.Unmarshal(b, &obj); err != nil {
			return nil, nil, fmt.Errorf("decoding %s %s: %w", m.Kind, m.Metadata.Name, err)
		}
		u := &unstructured.Unstructured{Object: normalize(obj).(map[string]any)}
		if m.Kind == "IPPool" {
			setAnnotation(u, PoolAnnotation, m.Metadata.Name)
		}
		if n, ok := checkInt32(u, "iptablesMarkMask"); !ok {
			notes = append(notes, Pending{Kind: m.Kind, Name: m.Metadata.Name, Reason: fmt.Sprintf(
				"iptablesMarkMask %#x is not written: Calico's CRD declares it int32 and the API server rejects "+
					"values above 0x7fffffff; set FELIX_IPTABLESMARKMASK=%#x on calico-node instead", n, n)})
		}
		out = append(out, u)
	}
	return out, notes, nil
}

// checkInt32 drops spec.key if it does not fit the CRD's int32 format.
func checkInt32(u *unstructured.Unstructured, key string) (int64, bool) {
	n, isInt := spec(u)[key].(int64)
	if !isInt || (n >= math.MinInt32 && n <= math.MaxInt32) {
		return n, true
	}
	delete(spec(u), key)
	return n, false
}

// normalize turns JSON numbers into int64 where whole, as the API server
// returns them (unstructured.DeepCopy accepts int64 and float64 only).
func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = normalize(e)
		}
	case []any:
		for i, e := range v {
			v[i] = normalize(e)
		}
	case float64:
		if v == float64(int64(v)) {
			return int64(v)
		}
	}
	return v
}

func setAnnotation(u *unstructured.Unstructured, k, v string) {
	a := u.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[k] = v
	u.SetAnnotations(a)
}

func spec(u *unstructured.Unstructured) map[string]any {
	s, _ := u.Object["spec"].(map[string]any)
	return s
}

func specString(u *unstructured.Unstructured, key string) string {
	s, _ := spec(u)[key].(string)
	return s
}

func specBool(u *unstructured.Unstructured, key string) bool {
	switch v := spec(u)[key].(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return false
}

// poolCIDR returns an IPPool's or IPAMBlock's spec.cidr.
func poolCIDR(u *unstructured.Unstructured) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(specString(u, "cidr"))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s %s: bad cidr: %w", u.GetKind(), u.GetName(), err)
	}
	return p.Masked(), nil
}

// jsonEqual compares two unstructured values by their JSON form (so 26,
// int64(26) and float64(26) are equal).
func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func jsonString(v any) string {
	if v == nil {
		return "<unset>"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// merge returns a copy of cur with want's spec keys, owner label and
// annotations set, and the changes that makes, one "field: old → new" per
// line. Spec keys netd does not set are kept.
func merge(cur, want *unstructured.Unstructured) (*unstructured.Unstructured, []string) {
	out := cur.DeepCopy()
	var changes []string
	s := spec(out)
	if s == nil {
		s = map[string]any{}
		out.Object["spec"] = s
	}
	keys := make([]string, 0, len(spec(want)))
	for k := range spec(want) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		w := spec(want)[k]
		if !jsonEqual(s[k], w) {
			changes = append(changes, fmt.Sprintf("spec.%s: %s → %s", k, jsonString(s[k]), jsonString(w)))
			s[k] = w
		}
	}
	labels := out.GetLabels()
	for k, v := range want.GetLabels() {
		if labels[k] != v {
			changes = append(changes, fmt.Sprintf("metadata.labels[%s]: %q → %q", k, labels[k], v))
			if labels == nil {
				labels = map[string]string{}
			}
			labels[k] = v
		}
	}
	out.SetLabels(labels)
	ann := out.GetAnnotations()
	for k, v := range want.GetAnnotations() {
		if ann[k] != v {
			changes = append(changes, fmt.Sprintf("metadata.annotations[%s]: %q → %q", k, ann[k], v))
			if ann == nil {
				ann = map[string]string{}
			}
			ann[k] = v
		}
	}
	out.SetAnnotations(ann)
	slices.Sort(changes)
	return out, changes
}

// describe is "IPPool pods" for messages.
func describe(kind, name string) string { return kind + " " + name }

// sameImmutable reports whether two pools agree on cidr and blockSize.
func sameImmutable(a, b *unstructured.Unstructured) bool {
	for _, k := range immutable {
		if !jsonEqual(spec(a)[k], spec(b)[k]) {
			return false
		}
	}
	return true
}

// replacementName is the object name of a pool whose policy name is taken
// by an older pool with other immutable fields.
func replacementName(want *unstructured.Unstructured) string {
	cidr := strings.NewReplacer(".", "-", "/", "-", ":", "-").Replace(specString(want, "cidr"))
	return fmt.Sprintf("%s-%s-%v", want.GetName(), cidr, spec(want)["blockSize"])
}
