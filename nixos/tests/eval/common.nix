# What the offline evaluations share (nixos/check.sh): the real nixpkgs lib
# (nixpkgsLib: the lib directory of ../shared/nixpkgs-lib), the stand-ins
# for the rest of nixpkgs (../standin), and `normalize`, which replaces
# every store path /nix/store/<hash>-<name>[-<version>] by @<name>@: the
# form in which units are compared with the golden files, written to the
# lab's file (netd/lab) and mapped back to real files.
{ nixpkgsLib }:
let
  lib = import nixpkgsLib;
  standin = import ../standin { inherit lib; };

  normalize = import ./normalize.nix { inherit lib; };

  # A value with every string normalized (packages become their path).
  normalizeValue =
    v:
    if lib.isDerivation v then
      normalize v.outPath
    else if builtins.isAttrs v then
      builtins.mapAttrs (_: normalizeValue) v
    else if builtins.isList v then
      map normalizeValue v
    else if builtins.isString v || builtins.isPath v then
      normalize v
    else
      v;

  # The unit NixOS writes for systemd.services.<name>, normalized.
  unitText = config: name: normalize config.systemd.units."${name}.service".text;

  failedAssertions = config: map (a: a.message) (builtins.filter (a: !a.assertion) config.assertions);
in
{
  inherit
    lib
    standin
    normalize
    normalizeValue
    unitText
    failedAssertions
    ;
}
