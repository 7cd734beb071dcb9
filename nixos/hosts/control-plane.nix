# control-plane: EC2 t3.medium (2 vCPU, 4 GiB), provisioned by terraform/.
# API server, controller manager, scheduler, etcd; also a (tainted) kubelet
# so that calico-node and its pod block run here.
{ modulesPath, ... }:
{
  imports = [
    "${modulesPath}/virtualisation/amazon-image.nix"
    ./hardware/control-plane.nix
    ../profiles/common.nix
    ../profiles/tailscale.nix
    ../profiles/kubernetes.nix
    ../profiles/k8s-control-plane.nix
    ../profiles/netd.nix
  ];
  networking.hostName = "control-plane";
}
