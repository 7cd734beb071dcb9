# ultra: Intel i5-8250U (8 threads), 16 GiB, 915 GiB ext4. On-prem worker.
{ ... }:
{
  imports = [
    ./hardware/ultra.nix
    ../profiles/common.nix
    ../profiles/tailscale.nix
    ../profiles/kubernetes.nix
    ../profiles/k8s-worker.nix
    ../profiles/netd.nix
  ];
  networking.hostName = "ultra";
  networking.interfaces.lan0.ipv4.addresses = [ { address = "192.168.0.12"; prefixLength = 24; } ];
}
