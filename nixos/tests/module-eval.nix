# The module evaluation checks with the WHOLE real nixpkgs (flake check
# `module-eval`; not runnable offline). For every case of eval/settings.nix:
#   - the good cases evaluate in a real NixOS system, and the netd unit
#     that NixOS renders, with store paths written @name@, equals the
#     `unit` of the golden file that nixos/check.sh produces offline with
#     the stand-ins (nixos/tests/standin): so the stand-in rendering
#     cannot drift from nixpkgs' unnoticed;
#   - the hardening requirements (eval/hardening.nix) hold;
#   - the bad cases fail to evaluate;
#   - the unit file NixOS renders passes `systemd-analyze security
#     --offline=yes` under the same threshold as nixos/check.sh.
{ self, nixpkgs, pkgs }:
let
  inherit (nixpkgs) lib;
  settings = import ./eval/settings.nix;
  hardening = import ./eval/hardening.nix;
  normalize = import ./eval/normalize.nix { inherit lib; };
  threshold = lib.toInt (lib.fileContents ./eval/security-threshold);

  evalCase =
    s:
    nixpkgs.lib.nixosSystem {
      inherit (pkgs.stdenv.hostPlatform) system;
      modules = [
        self.nixosModules.netd
        s
        {
          boot.isContainer = true;
          system.stateVersion = "25.11";
        }
      ];
    };

  check =
    name: s:
    let
      c = (evalCase s).config;
      golden = lib.importJSON ./golden/${name}.json;
      unit = if c.services.netd.enable then lib.splitString "\n" (normalize c.systemd.units."netd.service".text) else null;
      violations = if c.services.netd.enable then hardening c.systemd.services.netd else [ ];
    in
    if unit != golden.unit then
      throw "case ${name}: the unit NixOS renders differs from golden/${name}.json:\n${lib.concatStringsSep "\n" (if unit == null then [ "(none)" ] else unit)}"
    else if violations != [ ] then
      throw "case ${name}: ${toString violations}"
    else if unit == null then
      [ ]
    else
      [ c.systemd.units."netd.service".unit ];

  units = lib.concatLists (lib.mapAttrsToList check settings.good);

  badOk = lib.mapAttrsToList (
    name: b:
    let
      r = builtins.tryEval (builtins.deepSeq (evalCase b.settings).config.system.build.toplevel.drvPath true);
    in
    if r.success then throw "bad case ${name} evaluated, it must fail (${b.error})" else name
  ) settings.bad;
in
pkgs.runCommand "netd-module-eval" { nativeBuildInputs = [ pkgs.systemd ]; } ''
  echo "bad cases rejected: ${toString badOk}"
  for u in ${toString units}; do
    systemd-analyze security --offline=yes --threshold=${toString threshold} "$u/netd.service"
  done
  touch $out
''
