package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ducksnest/netd/policy/acldoc"
	"github.com/ducksnest/netd/policy/desired"
)

// tailnet checks the tailnet section as it will be pushed: with the
// generated entries added unless generation is off. Problems in generated
// entries point at the tailnet section itself.
func (v *validator) tailnet() {
	g := v.f.Spec.Generate
	v.m.nodeTag = DefaultNodeTag
	if g.NodeTag != "" {
		if validTag(g.NodeTag) {
			v.m.nodeTag = g.NodeTag
		} else {
			v.errorf("spec.generate.nodeTag", "write a tag such as tag:k8s-node", "generate.nodeTag %q does not start with \"tag:\"", g.NodeTag)
		}
	}
	v.m.tailnet = tailnetPolicy(v.f, &v.m)
	pol := &v.m.tailnet
	for _, is := range acldoc.Validate(pol) {
		path := "spec.tailnet"
		if is.Path != "" {
			path += "." + is.Path
		}
		msg := "tailnet: " + is.Msg
		if why := GeneratedReason(pol, is.Path); why != "" {
			msg += " (in an entry netd generates: " + why + ")"
		}
		v.errs = append(v.errs, v.f.errorAt(path, msg, is.Hint))
	}
	// Generation makes the node tag owned; every other node tag must have an
	// owner written in the file, or Tailscale refuses to let a node use it.
	owners := v.f.Spec.Tailnet.TagOwners
	for i, n := range v.f.Spec.Nodes {
		for j, t := range n.Tailscale.Tags {
			_, owned := owners[t]
			owned = owned || !g.Disabled && t == v.m.nodeTag
			if !owned && strings.HasPrefix(t, "tag:") {
				v.errorf(joinIndex(fmt.Sprintf("spec.nodes[%d].tailscale.tags", i), j),
					fmt.Sprintf("add %q: [\"group:admins\"] (or its real owners) to tailnet.tagOwners", t),
					"node %q: tag %s has no owner in tailnet.tagOwners, so the node could not use it", n.Name, t)
			}
		}
	}
}

// tailnetPolicy is the tailnet policy to push: the file's section plus the
// generated entries unless generation is off.
func tailnetPolicy(f *File, m *model) acldoc.Policy {
	if f.Spec.Generate.Disabled {
		return f.Spec.Tailnet
	}
	return acldoc.Generate(f.Spec.Tailnet, generateInput(f, m))
}

func generateInput(f *File, m *model) acldoc.GenerateInput {
	in := acldoc.GenerateInput{
		NodeTag: m.nodeTag, PodCIDR: m.pods, ServiceCIDR: m.services, OverlayCIDR: m.overlay, BGPPort: m.bgpPort,
		BFD: m.bfd, VXLAN: m.vxlanPool >= 0,
		Nodes: make([]acldoc.GenNode, 0, len(f.Spec.Nodes)),
	}
	for i, n := range f.Spec.Nodes {
		gn := acldoc.GenNode{Name: n.Name, Hostname: n.Tailscale.Hostname, Role: n.Role}
		for _, t := range n.Tailscale.Tags {
			if validTag(t) { // malformed tags are reported on the node
				gn.Tags = append(gn.Tags, t)
			}
		}
		if gn.Hostname == "" {
			gn.Hostname = n.Name
		}
		if i < len(m.nodes) {
			gn.OverlayAddr = m.nodes[i].overlay
		}
		in.Nodes = append(in.Nodes, gn)
	}
	slices.SortStableFunc(in.Nodes, func(a, b acldoc.GenNode) int { return cmp.Compare(a.Name, b.Name) })
	return in
}

func validTag(t string) bool { return strings.HasPrefix(t, "tag:") && len(t) > len("tag:") }

// GeneratedReason returns why netd generated the tailnet entry at path
// (relative to the tailnet section, e.g. tests[7].accept[0]) or one of its
// ancestors, or "" if the entry comes from the policy file.
func GeneratedReason(p *acldoc.Policy, path string) string {
	for ; path != ""; path = parentPath(path) {
		if why, ok := p.Generated[path]; ok {
			return why
		}
	}
	return ""
}

// Tailnet sync defaults and bounds.
const (
	DefaultTailnetSyncInterval = time.Minute
	minTailnetSyncInterval     = time.Second
)

// tailnetSync checks spec.tailnetSync: the writer must be a node of the
// policy, the ownership shared or exclusive.
func (v *validator) tailnetSync() {
	ts := v.f.Spec.TailnetSync
	v.m.sync = desired.TailnetSync{Writer: ts.Writer, Interval: ts.Interval.D()}
	if ts.Writer != "" {
		if !slices.ContainsFunc(v.f.Spec.Nodes, func(n Node) bool { return n.Name == ts.Writer }) {
			names := make([]string, 0, len(v.f.Spec.Nodes))
			for _, n := range v.f.Spec.Nodes {
				names = append(names, n.Name)
			}
			v.errorf("spec.tailnetSync.writer", "name one of the nodes: "+strings.Join(names, ", "),
				"tailnetSync.writer %q is not a node of this policy", ts.Writer)
		}
	}
	switch ts.Ownership {
	case "", "shared":
	case "exclusive":
		v.m.sync.Exclusive = true
	default:
		v.errorf("spec.tailnetSync.ownership", "write shared (an edit made outside netd is reported, never overwritten) or exclusive (netd owns the tailnet policy: the edit is reported and overwritten)",
			"tailnetSync.ownership %q is neither shared nor exclusive", ts.Ownership)
	}
	switch {
	case !v.set("spec.tailnetSync.interval") && ts.Interval == 0:
		v.m.sync.Interval = DefaultTailnetSyncInterval
	case ts.Interval.D() < minTailnetSyncInterval:
		v.errorf("spec.tailnetSync.interval", "write at least \"1s\" (the default is \"1m\")", "tailnetSync.interval %s is shorter than %s", ts.Interval, minTailnetSyncInterval)
	}
}
