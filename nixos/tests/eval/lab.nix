# The netd unit of every lab node (../../lab-nodes.nix) as NixOS renders
# it, normalized (@name@ store paths): { <overlay> = { <node> = text; "*"
# = text; }; }. nixos/check.sh turns it into netd/lab/nixos_units.json.
{
  nixpkgsLib,
  root ? ../../..,
}:
let
  c = import ./common.nix { inherit nixpkgsLib; };
  inherit (c) lib;
  o = import ./outputs.nix { inherit nixpkgsLib root; };
  lab = import (root + "/nixos/lab.nix");
  labNodes = import (root + "/nixos/lab-nodes.nix");

  unit =
    host: overlay: extra:
    let
      cfg =
        (o.nixosConfigurations.${host}.extendModules {
          modules = [
            labNodes.common
            labNodes.${overlay}
          ]
          ++ extra;
        }).config;
      failed = c.failedAssertions cfg;
    in
    if failed != [ ] then
      throw "lab node ${host} (${overlay}): failed assertions: ${toString failed}"
    else
      builtins.seq cfg.system.build.toplevel.drvPath (c.unitText cfg "netd");

  overlay =
    name:
    lib.genAttrs (builtins.attrNames lab.nodes) (h: unit h name [ ])
    // {
      "*" = unit labNodes.templateHost name [ { services.netd.nodeName = lib.mkForce "@node@"; } ];
    };
in
lib.genAttrs [ "emulated" "tailscale" ] overlay
