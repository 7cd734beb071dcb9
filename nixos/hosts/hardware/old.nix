# Hardware of old: a placeholder. Replace it with the output of
# `nixos-generate-config --show-hardware-config` on the machine (disks,
# kernel modules, CPU microcode). Kept hardware-independent here so that the
# configuration evaluates and builds in CI and in the VM tests.
{ lib, ... }:
{
  boot.loader.systemd-boot.enable = lib.mkDefault true;
  boot.loader.efi.canTouchEfiVariables = lib.mkDefault true;
  fileSystems."/" = lib.mkDefault { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
  fileSystems."/boot" = lib.mkDefault { device = "/dev/disk/by-label/boot"; fsType = "vfat"; };
  hardware.cpu.intel.updateMicrocode = lib.mkDefault true;
}
