# The facts of the lab that the host configurations need, copied from the
# one policy file (examples/ducksnest/policy.yaml), which stays the source
# of truth: nixos/check.sh fails when the two disagree (names, roles,
# overlay and LAN addresses, pod MTU). Nix cannot read YAML, so the
# duplication is checked instead of derived.
{
  policyFile = ../examples/ducksnest/policy.yaml;

  podCidr = "10.244.0.0/16";
  serviceCidr = "10.96.0.0/12";
  # The first address of the service range: the `kubernetes` Service.
  apiServiceIP = "10.96.0.1";
  clusterDnsIP = "10.96.0.10";
  clusterDomain = "cluster.local";
  overlayInterface = "tailscale0";
  # Pod (veth) MTU = overlay MTU 1280 - encapsulation overhead 0 (the pool's
  # encapsulation is None): what `netd policy render --calico` emits as
  # FelixConfiguration vethMTU.
  podMtu = 1280;
  bgpPort = 179;
  # BFD between the nodes (services.netd.bfd.enable): it must equal the
  # policy's spec.bgp.bfd.enabled, which makes the generated tailnet policy
  # allow UDP 3784 between the nodes.
  bfd = true;

  controlPlane = "control-plane";
  nodes = {
    control-plane = { role = "control-plane"; site = "aws"; overlayAddress = "100.64.0.4"; };
    firebat = { role = "worker"; site = "home"; overlayAddress = "100.64.0.1"; lanAddress = "192.168.0.11"; };
    ultra = { role = "worker"; site = "home"; overlayAddress = "100.64.0.2"; lanAddress = "192.168.0.12"; };
    old = { role = "worker"; site = "home"; overlayAddress = "100.64.0.3"; lanAddress = "192.168.0.13"; };
  };
}
