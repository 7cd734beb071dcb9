# An on-prem worker: kubelet, kube-proxy, calico-node (as a pod).
{ ... }:
{
  services.kubernetes.roles = [ "node" ];
}
