# The stand-in nixpkgs as a flake, for `nix flake show --override-input
# nixpkgs path:<dir>` in nixos/check.sh, which assembles <dir> from this
# directory and a copy of the real nixpkgs lib at <dir>/lib.
{
  description = "stand-in for nixpkgs (real lib; NixOS declarations stood in; nothing builds)";
  outputs = _: (import ./default.nix { lib = import ./lib; }).flakeOutputs;
}
