# Settings every ducksnest host shares: kernel settings the pod network
# needs, firewall mode, SSH, Nix. Host-specific facts come from ../lab.nix.
{ lib, ... }:
{
  # Pod traffic is routed (not bridged or NATed) between nodes: forwarding
  # on. rp_filter loose (2): pod replies and LAN-path traffic may arrive on
  # an interface other than the one the reverse route points at (tailscale0
  # vs the LAN NIC, table 52 vs netd's table 244); strict rp_filter (1)
  # would drop them. The kernel uses max(conf.all, conf.<if>), so all=2
  # covers tailscale0 even though it does not exist yet when systemd-sysctl
  # runs at boot; default=2 makes interfaces created later start loose too.
  boot.kernel.sysctl = {
    # mkDefault: nixpkgs' kubelet module sets ip_forward = 1 itself, and a
    # second definition at the same priority is an error for a sysctl.
    "net.ipv4.ip_forward" = lib.mkDefault 1;
    "net.ipv4.conf.all.rp_filter" = 2;
    "net.ipv4.conf.default.rp_filter" = 2;
    "net.ipv4.conf.all.forwarding" = 1;
  };
  # br_netfilter and net.bridge.bridge-nf-call-iptables come with nixpkgs'
  # kubelet module.

  networking.firewall = {
    enable = true;
    # The firewall's own reverse-path filter must be loose for the same
    # reason as rp_filter (services.tailscale.useRoutingFeatures also says so).
    checkReversePath = "loose";
    # Nothing is trusted wholesale; each service opens its own port, on
    # the overlay interface only (see the profiles).
  };

  services.openssh = {
    enable = true;
    openFirewall = false; # SSH only over the tailnet (tailscale0 below)
    settings = {
      PasswordAuthentication = false;
      PermitRootLogin = "prohibit-password";
    };
  };
  networking.firewall.interfaces.tailscale0.allowedTCPPorts = [ 22 ];

  nix.settings.experimental-features = [ "nix-command" "flakes" ];
  time.timeZone = lib.mkDefault "UTC";
  system.stateVersion = "25.11";
}
