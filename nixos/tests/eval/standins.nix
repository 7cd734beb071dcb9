# The NixOS option declarations that ../standin makes in place of nixpkgs'
# own, by stand-in file: { "<file>" = [ "<option path>" ... ]; }.
# nixos/check.sh prints them with the nixpkgs module each file mirrors.
{ nixpkgsLib }:
let
  c = import ./common.nix { inherit nixpkgsLib; };
  inherit (c) lib;
  sys = c.standin.nixosSystem { modules = [ ]; };
  dir = toString ../standin;
  opts = lib.collect lib.isOption (builtins.removeAttrs sys.options [ "_module" ]);
  entries = lib.concatMap (
    o:
    map (f: {
      file = lib.removePrefix "${dir}/" (toString f);
      loc = lib.showOption o.loc;
    }) (lib.filter (f: lib.hasPrefix dir (toString f)) o.declarations)
  ) opts;
in
lib.mapAttrs (_: es: map (e: e.loc) es) (lib.groupBy (e: e.file) entries)
