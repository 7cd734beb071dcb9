# Offline stand-in for nixpkgs' nixos/modules/virtualisation/amazon-image.nix
# (the EC2 image profile: ENA/NVMe drivers, cloud-init style metadata
# fetching, root on /dev/disk/by-label/nixos). It only records that it was
# imported, so that the host evaluation can assert the import.
{ ... }:
{
  ducksnestStub.importedAmazonImage = true;
}
