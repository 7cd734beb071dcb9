# netd on every node, from the repository's policy file. The flake adds
# nixosModules.netd (services.netd) to every host.
{ config, lib, ... }:
let
  lab = import ../lab.nix;
in
{
  services.netd = {
    enable = true;
    policyFile = lab.policyFile;
    nodeName = config.networking.hostName;
    overlayInterface = lab.overlayInterface;
    bgpPort = lab.bgpPort;
    # BGP 179 (and BFD's UDP 3784) on tailscale0 only; the home router
    # session is outbound.
    openFirewall = true;
    # As the policy says (spec.bgp.bfd.enabled): the tailnet policy netd
    # generates allows UDP 3784 between the nodes only then.
    bfd.enable = lab.bfd;
    # Leader-only reconcilers (Calico objects, Lease) need the API; see
    # nixos/pki for the client certificate inside this kubeconfig.
    kubeconfig = "/var/lib/secrets/kubernetes/netd.kubeconfig";
    # Advertise the pod blocks as Tailscale subnet routes.
    tailscaleSocket = "/run/tailscale/tailscaled.sock";
    # Scraped over the tailnet; the firewall opens 9180 on tailscale0 only.
    # (Binding the overlay address itself would fail while tailscaled is
    # still coming up.)
    metricsAddress = "0.0.0.0:9180";
  };
  networking.firewall.interfaces.${lab.overlayInterface}.allowedTCPPorts = [ 9180 ];
}
