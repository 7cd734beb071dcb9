// Package policy loads, validates and compiles the ducksnest network policy
// file: one YAML (or JSON) document that describes the cluster networks, the
// overlay, the nodes, BGP, the Calico IP pools and the tailnet policy.
//
// Load decodes strictly and records the position of every value; Validate
// reports every problem at once with file:line:column and a hint; Compile is
// pure (no I/O) and returns a *desired.State for the reconcilers. This
// package imports no Kubernetes, netlink or GoBGP code.
package policy
