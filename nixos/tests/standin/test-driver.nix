# Stand-in for pkgs.testers.runNixOSTest (pkgs/build-support/testers and
# nixos/lib/testing/nodes.nix): the test module is called with
# { pkgs, lib }; every node is a NixOS configuration of its module, the
# test's `defaults` and networking.hostName = mkDefault <node name>, with
# the test's pkgs and read-only nixpkgs options, as runNixOSTest sets
# node.pkgs (nixos/modules/misc/nixpkgs/read-only.nix: nixpkgs.overlays is
# `unique`, so a node module that adds an overlay fails, as it does in
# NixOS). The result cannot be built; it carries `nodes` (each node's
# config) and `testScript` for the checks.
{
  lib,
  nixosSystem,
  system,
  pkgs,
  unbuildable,
}:
test:
let
  t = if builtins.isFunction test then test { inherit pkgs lib; } else test;

  node =
    name: m:
    (nixosSystem {
      inherit system pkgs;
      readOnlyPkgs = true;
      modules = [
        m
        (t.defaults or { })
        { networking.hostName = lib.mkDefault name; }
      ];
    }).config;
in
unbuildable "vm-test-run-${t.name}" {
  nodes = lib.mapAttrs node t.nodes;
  inherit (t) testScript;
}
