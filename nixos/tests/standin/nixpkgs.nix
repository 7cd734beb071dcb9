# nixpkgs: nixos/modules/misc/nixpkgs.nix, nixos/modules/misc/nixpkgs/read-only.nix
# Stand-in for nixos/modules/misc/nixpkgs.nix (nixpkgs.overlays, applied
# to the package set that becomes the `pkgs` module argument) and, for the
# nodes of a NixOS test, nixos/modules/misc/nixpkgs/read-only.nix
# (runNixOSTest sets node.pkgs: pkgs is given, and nixpkgs.overlays is
# `unique`, so a node module that adds an overlay fails, as in NixOS).
{
  lib,
  # The package set (./pkgs.nix).
  base,
  readOnly,
}:
{ config, ... }:
if readOnly then
  {
    options.nixpkgs.overlays = lib.mkOption {
      internal = true;
      type = lib.types.unique { message = "nixpkgs.overlays is set to read-only"; } lib.types.anything;
    };
    config = {
      nixpkgs.overlays = [ ];
      _module.args.pkgs = builtins.seq config.nixpkgs.overlays base;
    };
  }
else
  {
    options.nixpkgs.overlays = lib.mkOption {
      default = [ ];
      type = lib.types.listOf (
        lib.mkOptionType {
          name = "nixpkgs-overlay";
          description = "nixpkgs overlay";
          check = lib.isFunction;
          merge = lib.mergeOneOption;
        }
      );
    };
    config._module.args.pkgs = lib.fix (
      final: lib.foldl' (prev: overlay: prev // overlay final prev) base config.nixpkgs.overlays
    );
  }
