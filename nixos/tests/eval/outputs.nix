# The flake's outputs (flake.nix at `root`) with its nixpkgs input replaced
# by the stand-in (../standin: the real nixpkgs lib, NixOS declarations
# stood in, nothing buildable), without the flake machinery, so that a
# copy of the tree with one file mutated can be evaluated cheaply:
#
#   nix-instantiate --eval --strict --json nixos/tests/eval/outputs.nix \
#     --arg nixpkgsLib <nixpkgs-lib>/lib --arg root ./. \
#     -A nixosConfigurations.firebat.config.networking.hostName
#
# `nix flake show` (check.sh) checks the same outputs through the flake
# machinery once.
{
  nixpkgsLib,
  root ? ../../..,
}:
let
  c = import ./common.nix { inherit nixpkgsLib; };
  flake = import (root + "/flake.nix");
  self =
    flake.outputs {
      inherit self;
      nixpkgs = c.standin.flakeOutputs;
    }
    // {
      outPath = root;
      shortRev = "0000000";
    };
in
self
