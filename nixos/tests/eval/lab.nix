# The netd unit of every lab node (../../lab-nodes.nix) as NixOS renders
# it, normalized (@name@ store paths): { <kind> = { <node> = text; "*"
# = text; }; }, one entry per kind of lab (labNodes.kinds). nixos/check.sh
# turns it into netd/lab/nixos_units.json.
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
    host: kind: extra:
    let
      cfg =
        (o.nixosConfigurations.${host}.extendModules {
          modules = [ labNodes.common ] ++ labNodes.kinds.${kind} ++ extra;
        }).config;
      failed = c.failedAssertions cfg;
    in
    if failed != [ ] then
      throw "lab node ${host} (${kind}): failed assertions: ${toString failed}"
    else
      builtins.seq cfg.system.build.toplevel.drvPath (c.unitText cfg "netd");

  kind =
    name:
    lib.genAttrs (builtins.attrNames lab.nodes) (h: unit h name [ ])
    // {
      "*" = unit labNodes.templateHost name [ { services.netd.nodeName = lib.mkForce "@node@"; } ];
    };
in
lib.genAttrs (builtins.attrNames labNodes.kinds) kind
