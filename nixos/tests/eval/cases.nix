# The netd module (nixos/modules/netd.nix) evaluated by the real nixpkgs
# module system (lib.evalModules) with the NixOS stand-ins of ../standin,
# for each option combination of ./settings.nix. Used by nixos/check.sh:
#
#   nix-instantiate --eval --strict --json nixos/tests/eval/cases.nix \
#     --arg nixpkgsLib <nixpkgs-lib>/lib -A good.<case>      (= ../golden/<case>.json)
#   ... -A units.<case>            the unit file, normalized (@netd@/bin/netd ...)
#   ... -A hardening.<case>        unmet hardening requirements ([] when fine)
#   ... -A bad.<case>              must fail with settings.bad.<case>.error
#
# Arguments:
#   module   the module file (check.sh passes mutated copies to prove
#            that the checks catch a dropped hardening setting)
{
  nixpkgsLib,
  module ? ../../modules/netd.nix,
}:
let
  c = import ./common.nix { inherit nixpkgsLib; };
  inherit (c) lib;
  hardening = import ./hardening.nix;
  settings = import ./settings.nix;
  base = c.standin.pkgsFor { system = "x86_64-linux"; };
  # A netd package with a version, as the flake's overlay builds it.
  pkgs = base // {
    netd = base.standinPackage "netd-0.1.0";
  };

  eval =
    s:
    (c.standin.nixosSystem {
      inherit pkgs;
      modules = [
        module
        s
      ];
    }).config;

  result =
    s:
    let
      cfg = eval s;
      failed = c.failedAssertions cfg;
      enabled = cfg.services.netd.enable;
    in
    if failed != [ ] then
      throw "failed assertions: ${lib.concatStringsSep "; " failed}"
    else
      c.normalizeValue {
        # The unit file as NixOS writes it, line by line.
        unit = if enabled then lib.splitString "\n" (c.unitText cfg "netd") else null;
        settings = builtins.removeAttrs cfg.services.netd [ "package" ];
        package = cfg.services.netd.package;
        firewallInterfaces = cfg.networking.firewall.interfaces;
        etc = lib.mapAttrs (_: e: { inherit (e) source target; }) cfg.environment.etc;
        systemPackages = cfg.environment.systemPackages;
        # What services.netd.monitoring adds to Prometheus and Grafana.
        prometheus = { inherit (cfg.services.prometheus) ruleFiles scrapeConfigs; };
        grafanaProvision = cfg.services.grafana.provision;
      };
in
{
  good = builtins.mapAttrs (_: result) settings.good;
  units = builtins.mapAttrs (_: s: c.unitText (eval s) "netd") settings.good;
  hardening = builtins.mapAttrs (
    _: s:
    let
      cfg = eval s;
    in
    if cfg.services.netd.enable then hardening cfg.systemd.services.netd else [ "no netd unit" ]
  ) settings.good;
  enabled = builtins.mapAttrs (_: s: (eval s).services.netd.enable) settings.good;
  bad = builtins.mapAttrs (_: b: result b.settings) settings.bad;
}
