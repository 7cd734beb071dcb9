# Tailscale: the node-to-node overlay (tailscale0, MTU 1280, 100.64.0.0/10).
#
# The auth key is read at boot from a file outside the Nix store, placed
# there by hand, agenix or sops-nix (never a literal string or a Nix path
# here: both would end up world-readable in /nix/store).
#
# The CGNAT drop rule: with netfilter mode "on" (the default, kept),
# tailscaled drops packets with a 100.64.0.0/10 source that arrive on an
# interface other than tailscale0 (ts-input chain). Pod traffic carries
# 10.244.0.0/16 sources and the direct LAN path between home nodes carries
# pod or 192.168.0.0/24 sources, so the rule never hits cluster traffic;
# it is kept because it stops spoofed tailnet addresses from the LAN.
# `netd doctor` reports it on a live host.
{ config, lib, ... }:
{
  services.tailscale = {
    enable = true;
    interfaceName = "tailscale0";
    authKeyFile = "/var/lib/secrets/tailscale/authkey";
    # "both": accept the other nodes' pod subnet routes (client) and
    # advertise our own (server). This also sets ip_forward and a loose
    # reverse-path filter in nixpkgs' module.
    useRoutingFeatures = "both";
    # Flags of the first `tailscale up` (only with authKeyFile):
    # --accept-routes installs peers' pod routes in table 52;
    # --operator=netd lets netd's (dynamic) user edit AdvertiseRoutes over
    # the LocalAPI; tags give the node its identity in the policy.
    extraUpFlags = [
      "--accept-routes"
      # Keep pod source addresses: with SNAT (the default) every pod packet
      # leaving through a subnet router would carry the node's address.
      "--snat-subnet-routes=false"
      "--operator=netd"
      "--hostname=${config.networking.hostName}"
    ];
    # WireGuard's UDP port, for direct (non-DERP) paths.
    openFirewall = true;
  };
}
