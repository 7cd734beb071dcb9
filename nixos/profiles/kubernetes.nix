# What every Kubernetes node shares: the API address over the tailnet, the
# cluster PKI from nixos/pki (no easyCerts/cfssl on the nodes), Calico as
# the CNI with the pod MTU of the compiled policy, kubelet on the overlay.
#
# Calico and netd: netd's embedded BGP speaker announces the pod blocks, so
# Calico runs with networking backend "none" (no BIRD, no node-to-node
# mesh): calico-node keeps Felix (per-pod routes to cali* veths, policy)
# and IPAM. The cluster-wide Calico objects (IPPools, IPAMConfiguration
# strictAffinity, FelixConfiguration vethMTU/mtuIfacePattern/
# iptablesMarkMask, BGPConfiguration nodeToNodeMeshEnabled=false) come from
# `netd policy render --calico` and are kept by netd's Calico reconciler on
# the leader; the hosts only carry what a host needs: the CNI config below
# (the same MTU), the kernel settings and the firewall.
{ config, lib, pkgs, ... }:
let
  lab = import ../lab.nix;
  secrets = "/var/lib/secrets/kubernetes";
  host = config.networking.hostName;
  node = lab.nodes.${host};
  apiserver = "https://${lab.nodes.${lab.controlPlane}.overlayAddress}:6443";
in
{
  services.kubernetes = {
    masterAddress = lab.controlPlane;
    apiserverAddress = apiserver;
    clusterCidr = lab.podCidr;
    # Certificates come from the offline CA (nixos/pki), not from the
    # cfssl-based easyCerts: the CA key never lives on a node.
    easyCerts = false;
    caFile = "${secrets}/ca.pem";

    # Calico replaces flannel.
    flannel.enable = false;

    kubelet = {
      hostname = host;
      # The node's InternalIP is its tailnet address: API server to kubelet
      # and node-to-node traffic stays on the overlay.
      nodeIp = node.overlayAddress;
      clusterDns = [ lab.clusterDnsIP ];
      clusterDomain = lab.clusterDomain;
      clientCaFile = "${secrets}/ca.pem";
      tlsCertFile = "${secrets}/kubelet-${host}.pem";
      tlsKeyFile = "${secrets}/kubelet-${host}-key.pem";
      kubeconfig = {
        server = apiserver;
        caFile = "${secrets}/ca.pem";
        certFile = "${secrets}/kubelet-${host}.pem";
        keyFile = "${secrets}/kubelet-${host}-key.pem";
      };
      cni = {
        packages = [ pkgs.cni-plugins pkgs.calico-cni-plugin ];
        config = [
          {
            name = "k8s-pod-network";
            cniVersion = "0.3.1";
            plugins = [
              {
                type = "calico";
                datastore_type = "kubernetes";
                nodename = host;
                # = overlay MTU 1280 - encapsulation 0 (pool encapsulation
                # None); checked against the policy by nixos/check.sh.
                mtu = lab.podMtu;
                ipam.type = "calico-ipam";
                policy.type = "k8s";
                kubernetes.kubeconfig = "${secrets}/calico-cni.kubeconfig";
              }
              {
                type = "portmap";
                snat = true;
                capabilities.portMappings = true;
              }
            ];
          }
        ];
      };
    };

    proxy = {
      hostname = host;
      kubeconfig = {
        server = apiserver;
        caFile = "${secrets}/ca.pem";
        certFile = "${secrets}/kube-proxy.pem";
        keyFile = "${secrets}/kube-proxy-key.pem";
      };
    };
  };

  # kubelet API (logs, exec, metrics) for the API server: overlay only.
  networking.firewall.interfaces.${lab.overlayInterface}.allowedTCPPorts = [ 10250 ];
  # Felix and kube-proxy program iptables in legacy or nft mode as the
  # kernel offers; the NixOS firewall keeps its own chains.
}
