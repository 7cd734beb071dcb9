# The module evaluation checks with the REAL nixpkgs (flake check
# `module-eval`; not runnable offline). For every case of eval/settings.nix:
#   - the good cases evaluate in a real NixOS system, and what the module
#     set (serviceConfig, ordering, firewall, /etc) equals the golden file
#     that the offline stub evaluation produces, so the stub cannot drift
#     from nixpkgs' module system unnoticed;
#   - the hardening requirements (eval/hardening.nix) hold;
#   - the bad cases fail to evaluate;
#   - the unit file that NixOS itself renders passes
#     `systemd-analyze security --offline=yes` under the same threshold as
#     nixos/check.sh.
{ self, nixpkgs, pkgs }:
let
  inherit (nixpkgs) lib;
  settings = import ./eval/settings.nix;
  hardening = import ./eval/hardening.nix;
  threshold = lib.toInt (lib.fileContents ./eval/security-threshold);
  fakeNetd = "/nix/store/00000000000000000000000000000000-netd-0.0.0";
  fakeCoreutils = "/nix/store/00000000000000000000000000000000-coreutils-9.5";

  evalCase = s:
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

  check = name: s:
    let
      sys = evalCase s;
      c = sys.config;
      golden = lib.importJSON ./golden/${name}.json;
      real = c.systemd.services.netd;
      pathsFixed = v:
        if builtins.isString v then
          builtins.replaceStrings [ "${c.services.netd.package}" "${pkgs.coreutils}" ] [ fakeNetd fakeCoreutils ] v
        else v;
      gsvc = golden.systemdServices.netd or null;
      pick = g: r: lib.mapAttrs (k: _: pathsFixed (r.${k} or null)) g;
      mismatch =
        if gsvc == null then (if c.services.netd.enable then [ "unit present but not in golden" ] else [ ])
        else
          lib.filter (x: x != null) (
            lib.mapAttrsToList (k: v: if (pick gsvc.serviceConfig real.serviceConfig).${k} == v then null else "serviceConfig.${k}") gsvc.serviceConfig
            ++ map (k: if (real.${k} or [ ]) == gsvc.${k} then null else k) [ "after" "wants" "wantedBy" ]
            ++ [ (if map toString real.reloadTriggers == gsvc.reloadTriggers then null else "reloadTriggers") ]
          );
      violations = if gsvc == null then [ ] else hardening real;
    in
    if mismatch != [ ] then throw "case ${name}: the real module system differs from golden/${name}.json in ${toString mismatch}"
    else if violations != [ ] then throw "case ${name}: ${toString violations}"
    else if gsvc == null then [ ]
    else [ c.systemd.units."netd.service".unit ];

  units = lib.concatLists (lib.mapAttrsToList check settings.good);

  badOk = lib.mapAttrsToList
    (name: b:
      let r = builtins.tryEval (builtins.deepSeq (evalCase b.settings).config.system.build.toplevel.drvPath true);
      in if r.success then throw "bad case ${name} evaluated, it must fail (${b.error})" else name)
    settings.bad;
in
pkgs.runCommand "netd-module-eval" { nativeBuildInputs = [ pkgs.systemd ]; } ''
  echo "bad cases rejected: ${toString badOk}"
  for u in ${toString units}; do
    systemd-analyze security --offline=yes --threshold=${toString threshold} "$u/netd.service"
  done
  touch $out
''
