# Hardware of the EC2 control plane: nothing to add. nixpkgs'
# virtualisation/amazon-image.nix (imported by ../control-plane.nix) sets
# the boot loader, the root file system by label, the ENA/NVMe drivers and
# the metadata service, for the official NixOS AMIs.
{ ... }:
{ }
