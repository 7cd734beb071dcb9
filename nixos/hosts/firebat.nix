# firebat: Intel N100 (4 cores), 16 GiB, 467 GiB ext4. On-prem worker.
{ ... }:
{
  imports = [
    ./hardware/firebat.nix
    ../profiles/common.nix
    ../profiles/tailscale.nix
    ../profiles/kubernetes.nix
    ../profiles/k8s-worker.nix
    ../profiles/netd.nix
  ];
  networking.hostName = "firebat";
  # Home LAN address (policy: lanAddress 192.168.0.11), used by netd's
  # direct LAN path between home nodes. DHCP reservation on the router is
  # equally fine; then drop this.
  networking.interfaces.lan0.ipv4.addresses = [ { address = "192.168.0.11"; prefixLength = 24; } ];
}
