package calico

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/ducksnest/netd/netd/kube"
)

// The Calico API groups: projectcalico.org/v3 is Calico's public API,
// served either by native CRDs (Calico 3.32+, no API server) or by the
// aggregated calico-apiserver (which stores the objects as
// crd.projectcalico.org/v1 CRDs, Calico's internal storage, not meant to
// be edited directly). netd writes v3 wherever the cluster serves it.
var (
	V3 = schema.GroupVersion{Group: "projectcalico.org", Version: "v3"}
	V1 = schema.GroupVersion{Group: "crd.projectcalico.org", Version: "v1"}
)

// API is the Calico API a cluster serves, resource by resource.
type API struct {
	// Served says which API netd uses, for `netd status`.
	Served string `json:"served"`
	// GroupVersion is the API of the objects netd writes (all four).
	GroupVersion schema.GroupVersion `json:"groupVersion"`

	IPPools             schema.GroupVersionResource `json:"-"`
	IPAMConfigs         schema.GroupVersionResource `json:"-"`
	FelixConfigurations schema.GroupVersionResource `json:"-"`
	BGPConfigurations   schema.GroupVersionResource `json:"-"`
	// BlockAffinities and IPAMBlocks are read only. The aggregated API
	// server serves no IPAMBlocks: they are read from
	// crd.projectcalico.org/v1 there.
	BlockAffinities schema.GroupVersionResource `json:"blockAffinities"`
	IPAMBlocks      schema.GroupVersionResource `json:"ipamBlocks"`
}

// Served descriptions.
const (
	ServedV3CRDs      = "projectcalico.org/v3 (native CRDs)"
	ServedV3APIServer = "projectcalico.org/v3 (aggregated calico-apiserver)"
	ServedV1          = "crd.projectcalico.org/v1 (no projectcalico.org/v3 served)"
)

// APIV1 is a cluster with Calico's v1 CRDs only.
var APIV1 = API{
	Served: ServedV1, GroupVersion: V1,
	IPPools: IPPools, IPAMConfigs: IPAMConfigs, FelixConfigurations: FelixConfigurations,
	BGPConfigurations: BGPConfigurations, BlockAffinities: BlockAffinities, IPAMBlocks: IPAMBlocks,
}

// APIV3 is a cluster with Calico's native projectcalico.org/v3 CRDs.
var APIV3 = API{
	Served: ServedV3CRDs, GroupVersion: V3,
	IPPools:             V3.WithResource("ippools"),
	IPAMConfigs:         V3.WithResource("ipamconfigurations"),
	FelixConfigurations: V3.WithResource("felixconfigurations"),
	BGPConfigurations:   V3.WithResource("bgpconfigurations"),
	BlockAffinities:     V3.WithResource("blockaffinities"),
	IPAMBlocks:          V3.WithResource("ipamblocks"),
}

// resourceOf maps a kind netd writes to its resource.
func (a API) resourceOf(kind string) (schema.GroupVersionResource, bool) {
	switch kind {
	case "IPPool":
		return a.IPPools, true
	case "IPAMConfig", "IPAMConfiguration":
		return a.IPAMConfigs, true
	case "FelixConfiguration":
		return a.FelixConfigurations, true
	case "BGPConfiguration":
		return a.BGPConfigurations, true
	}
	return schema.GroupVersionResource{}, false
}

// Discover asks the API server which Calico API it serves: the resources
// of projectcalico.org/v3 and crd.projectcalico.org/v1. netd writes v3 if
// v3 serves all four kinds it writes; each resource it reads comes from
// v3 if served there, else from v1. v3 with ipamblocks is the native CRDs;
// v3 without is the aggregated API server.
func Discover(ctx context.Context, c *kube.Client) (API, error) {
	v3, err := resources(ctx, c.Config, V3)
	if err != nil {
		return API{}, err
	}
	v1, err := resources(ctx, c.Config, V1)
	if err != nil {
		return API{}, err
	}
	pick := func(name string) (schema.GroupVersionResource, error) {
		switch {
		case slices.Contains(v3, name):
			return V3.WithResource(name), nil
		case slices.Contains(v1, name):
			return V1.WithResource(name), nil
		}
		return schema.GroupVersionResource{}, fmt.Errorf("the cluster serves no Calico %s (neither %s nor %s): is Calico installed?", name, V3, V1)
	}
	var a API
	writesV3 := true
	for _, r := range []string{"ippools", "ipamconfigurations", "felixconfigurations", "bgpconfigurations"} {
		writesV3 = writesV3 && slices.Contains(v3, r)
	}
	switch {
	case writesV3 && slices.Contains(v3, "ipamblocks"):
		a = APIV3
	case writesV3:
		a = APIV3
		a.Served = ServedV3APIServer
	default:
		a = APIV1
	}
	if a.BlockAffinities, err = pick("blockaffinities"); err != nil {
		return API{}, err
	}
	if a.IPAMBlocks, err = pick("ipamblocks"); err != nil {
		return API{}, err
	}
	if !writesV3 {
		for _, r := range []string{"ippools", "ipamconfigs", "felixconfigurations", "bgpconfigurations"} {
			if !slices.Contains(v1, r) {
				return API{}, fmt.Errorf("the cluster serves no Calico %s (neither %s nor %s): is Calico installed?", r, V3, V1)
			}
		}
	}
	return a, nil
}

// resources lists the resource names a group version serves; none if the
// server does not know it.
func resources(ctx context.Context, cfg *rest.Config, gv schema.GroupVersion) ([]string, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovering %s: %w", gv, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/apis/"+gv.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("discovering %s: %w", gv, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("discovering %s: %w", gv, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("discovering %s: %w", gv, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, nil
	case http.StatusForbidden:
		return nil, fmt.Errorf("discovering %s: forbidden: get /apis/%s (every authenticated user may read discovery through system:discovery; check the ClusterRoleBinding of group system:authenticated): %s", gv, gv, b)
	default:
		return nil, fmt.Errorf("discovering %s: %s: %s", gv, resp.Status, b)
	}
	var l metav1.APIResourceList
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("discovering %s: %w", gv, err)
	}
	var out []string
	for _, r := range l.APIResources {
		out = append(out, r.Name)
	}
	return out, nil
}
