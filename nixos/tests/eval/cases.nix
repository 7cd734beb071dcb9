# Offline evaluation of the netd module (nixos/modules/netd.nix) against the
# stub lib and module evaluator in nixos/stub/, for several option
# combinations. Used by nixos/check.sh:
#
#   nix-instantiate --eval --strict --json nixos/tests/eval/cases.nix -A <case>.result
#   nix eval --raw -f nixos/tests/eval/cases.nix <case>.unitText
#
# Arguments:
#   module   the module file to evaluate (check.sh passes mutated copies to
#            prove that the checks catch a dropped hardening setting)
#   netdOut  where the "netd package" is: a fixed fake store path for the
#            golden files, or a directory holding a real `go build` of netd
#            for `systemd-analyze verify`
#   coreutilsOut  likewise for pkgs.coreutils (needs bin/kill)
{
  module ? ../../modules/netd.nix,
  netdOut ? "/nix/store/00000000000000000000000000000000-netd-0.0.0",
  coreutilsOut ? "/nix/store/00000000000000000000000000000000-coreutils-9.5",
}:
let
  lib = import ../../stub/lib.nix;
  hardening = import ./hardening.nix;
  fakePkg = name: outPath: { type = "derivation"; inherit name outPath; meta.mainProgram = name; };
  pkgs = {
    netd = fakePkg "netd" netdOut;
    coreutils = fakePkg "coreutils" coreutilsOut;
  };

  eval = settings:
    let
      r = lib.evalModules {
        modules = [ ../../stub/nixos-base.nix module settings ];
        specialArgs = { inherit pkgs; };
      };
      c = r.config;
      failed = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
      svc = c.systemd.services.netd or null;
    in
    {
      # What the golden files hold: everything the module sets.
      result =
        if failed != [ ] then throw "failed assertions: ${builtins.concatStringsSep "; " failed}"
        else builtins.deepSeq c {
          settings = c.services.netd;
          systemdServices = c.systemd.services;
          firewallInterfaces = c.networking.firewall.interfaces;
          etc = c.environment.etc;
          systemPackages = map (p: p.name) c.environment.systemPackages;
        };
      unitText = if svc == null then throw "netd is not enabled in this case" else import ../../stub/systemd-unit.nix { inherit lib; } svc;
      # The list of hardening requirements this unit misses ([] when fine).
      hardeningViolations = if svc == null then [ "no netd unit" ] else hardening svc;
    };
  settings = import ./settings.nix;
in
builtins.mapAttrs (_: eval) settings.good
// { bad = builtins.mapAttrs (_: c: eval c.settings) settings.bad; }
