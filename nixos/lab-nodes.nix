# The nodes of `netd lab` (netd/lab) as NixOS configurations: each node of
# ./lab.nix runs its host's configuration (nixos/hosts/<name>.nix) with the
# lab's differences below, one module per overlay. nixos/check.sh evaluates
# them and writes netd/lab/nixos_units.json: per overlay and node, the
# netd unit NixOS renders and its ExecStart argv, store paths written
# @name@. The lab starts each node's netd with that argv (netd/lab maps
# @netd@/bin/netd and the node's paths to its own); check.sh fails when
# the file is stale, and a Go test fails when the lab stops using it.
#
# What still differs between a lab node and a real one:
#   - the differences below (each says why);
#   - paths: the lab gives each node its own policy copy, status socket,
#     state directory and (tailnet lab) tailscaled socket instead of
#     /etc/netd/policy.yaml, /run/netd/netd.sock, /run/netd,
#     /run/tailscale/tailscaled.sock; the binary is a `go build`, not the
#     Nix package;
#   - no systemd: netd runs as root in the node's network namespace, not as
#     the unit (no DynamicUser, capability set, sandbox, watchdog,
#     LoadCredential, Environment=; issue 19 boots the unit itself);
#   - nodes whose names are not hosts (a policy other than the example's)
#     get the "*" entry: a worker's configuration with --node set to
#     theirs.
{
  # Every lab node.
  common =
    { lib, ... }:
    {
      # The lab has no Kubernetes API server of its own: no kubeconfig
      # (tests that start one pass --kubeconfig themselves).
      services.netd.kubeconfig = lib.mkForce null;
      # Tests read netd's log lines as JSON (slog attributes) from each
      # node's log file; a real node logs text to the journal.
      services.netd.logFormat = "json";
      # Lab tests stop a node's netd to model a node that leaves: its
      # routes must go at once. A real node restarts gracefully (the
      # module's default), which e2e exercises with --stop-mode graceful.
      services.netd.stopMode = "withdraw";
    };

  # The emulated overlay: a bridge stands in for tailscale0, no tailscaled.
  emulated =
    { lib, ... }:
    {
      services.netd.tailscaleSocket = lib.mkForce null;
    };

  # A real tailnet (headscale and a tailscaled per node): as deployed.
  tailscale = { };

  # The host whose configuration "*" (a node that is not a host) takes.
  templateHost = "firebat";
}
