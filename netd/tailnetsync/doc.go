// Package tailnetsync keeps the tailnet policy on the control server
// (Tailscale or headscale, through package acl) equal to the compiled
// policy, from exactly one netd at a time: the holder of the
// kube-system/netd-tailnet Lease when netd runs with Kubernetes, else the
// node the policy names (spec.tailnetSync.writer).
//
// The writer applies the policy whenever it changes and re-checks the live
// policy every spec.tailnetSync.interval, with the safe apply of `netd
// policy apply` (package acl): validate first, If-Match, the netd-applied
// stamp, no write when nothing changed. A live policy that is not the last
// one netd wrote (its stamp does not match) is drift: it is reported (status,
// the netd_tailnet_policy_drift gauge, one log line and one Kubernetes Event
// per edit) and left alone, unless the policy says netd owns the tailnet
// policy outright (spec.tailnetSync.ownership: exclusive), in which case it
// is reported and then overwritten. The writer also checks that every
// node's pod blocks are advertised and approved subnet routes on the
// control server, and reports the ones that are not the same way.
//
// It is a part of the daemon (netd/daemon/parts.go): it gets its inputs as
// funcs and keeps no pointer to the daemon.
package tailnetsync
