# The nodes of `netd lab` (netd/lab) as NixOS configurations: each node of
# ./lab.nix runs its host's configuration (nixos/hosts/<name>.nix) with the
# lab's differences below, one list of modules per kind of lab (`kinds`).
# nixos/check.sh evaluates them and writes netd/lab/nixos_units.json: per
# kind and node, the netd unit NixOS renders and its ExecStart argv, store
# paths written @name@. check.sh fails when the file is stale, and a Go test
# fails when the lab stops using it.
#
# Two ways the lab runs a node's netd:
#   - bare ("emulated", "tailscale"): netd runs as root in the node's
#     network namespace with the unit's ExecStart (netd/lab maps
#     @netd@/bin/netd and the node's paths to its own); no systemd, so no
#     DynamicUser, capability set, sandbox, watchdog, LoadCredential or
#     Environment=;
#   - systemd ("systemd", "systemd-tailscale", "systemd-kube"; `netd lab up
#     --systemd`, issue 19): the node is a systemd container in its
#     namespace and runs this unit file as netd.service, with only the
#     store paths mapped to files of the container's root file system
#     (netd/lab/systemd.go); the deployed paths (/etc/netd/policy.yaml,
#     /run/netd, /run/tailscale) exist there as on a real node.
#
# What still differs between a lab node and a real one:
#   - the differences below (each says why);
#   - bare only: paths (the lab gives each node its own policy copy,
#     status socket, state directory and tailnet socket), the binary is a
#     `go build`, not the Nix package, and there is no systemd;
#   - nodes whose names are not hosts (a policy other than the example's)
#     get the "*" entry: a worker's configuration with --node set to
#     theirs.
let
  # Every lab node: tests read netd's log lines as JSON (slog attributes);
  # a real node logs text to the journal.
  common = {
    services.netd.logFormat = "json";
  };

  # The lab has no Kubernetes API server of its own: no kubeconfig (tests
  # that start one pass --kubeconfig themselves, or use "systemd-kube").
  noKubeconfig =
    { lib, ... }:
    {
      services.netd.kubeconfig = lib.mkForce null;
    };

  # The emulated overlay: a bridge stands in for tailscale0, no tailscaled.
  noTailscaled =
    { lib, ... }:
    {
      services.netd.tailscaleSocket = lib.mkForce null;
    };

  # Bare lab tests stop a node's netd to model a node that leaves: its
  # routes must go at once. A real node restarts gracefully (the module's
  # default), which the systemd lab keeps and bare e2e tests exercise with
  # --stop-mode graceful.
  withdrawOnStop = {
    services.netd.stopMode = "withdraw";
  };
in
{
  inherit common;

  kinds = {
    # Bare netd, emulated overlay.
    emulated = [
      noKubeconfig
      noTailscaled
      withdrawOnStop
    ];
    # Bare netd on a real tailnet (headscale and a tailscaled per node).
    tailscale = [
      noKubeconfig
      withdrawOnStop
    ];
    # netd.service in a systemd container, emulated overlay: stops
    # gracefully, as deployed.
    systemd = [
      noKubeconfig
      noTailscaled
    ];
    # netd.service in a systemd container on the real tailnet.
    systemd-tailscale = [ noKubeconfig ];
    # netd.service in a systemd container, emulated overlay, with the
    # host's kubeconfig (LoadCredential= from
    # /var/lib/secrets/kubernetes/netd.kubeconfig): the e2e test that
    # starts an API server puts a kubeconfig for it there.
    systemd-kube = [ noTailscaled ];
  };

  # The host whose configuration "*" (a node that is not a host) takes.
  templateHost = "firebat";
}
