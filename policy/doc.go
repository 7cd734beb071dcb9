// Package policy loads, validates and compiles the ducksnest network policy
// file: one YAML (or JSON) document that describes the cluster networks, the
// overlay, the nodes, BGP, the Calico IP pools and the tailnet policy.
//
// Load decodes strictly (unknown fields, duplicate keys and wrong types are
// errors) and records the position of every value under its path, written
// spec.nodes[2].lanAddress or spec.tailnet.groups["group:admins"][0].
// Validate reports every problem at once as an ErrorList of
// "file:line:col: what is wrong (how to fix it)". A YAML syntax error is
// reported at the offending token (an unclosed quote or bracket where it
// opens), with a hint. Compile is pure (no I/O):
// it validates, applies the defaults and returns a *desired.State for the
// reconcilers, with a digest that depends only on the content.
// Schema emits the JSON Schema of the file from the Go types.
//
// Node selectors of IP pools use a subset of Calico's selector language
// (see ParseSelector); every node carries the implicit label
// kubernetes.io/hostname=<name>, as the kubelet sets it.
//
// This package imports no Kubernetes, netlink or GoBGP code (deps_test.go
// enforces it).
package policy
