# Stand-in for nixpkgs' nixos/modules/virtualisation/amazon-image.nix (the
# EC2 profile: ENA/NVMe drivers, GRUB, the metadata fetcher, the root
# file system by label). Only its definitions that meet options the
# control plane's configuration also sets or checks are mirrored: the
# root file system, SSH on, the host name left to EC2 unless set, EC2's
# own NTP server.
{ lib, ... }:
{
  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
    autoResize = true;
  };
  services.openssh.enable = true;
  networking.hostName = lib.mkDefault "";
  networking.timeServers = [ "169.254.169.123" ];
}
