# The control plane (EC2 t3.medium, 2 vCPU / 4 GiB): API server,
# controller manager, scheduler, a single-member etcd, plus a kubelet so
# that calico-node and netd's pod block (10.244.0.0/24) live here too;
# ordinary workloads are kept off by a taint.
{ config, lib, ... }:
let
  lab = import ../lab.nix;
  secrets = "/var/lib/secrets/kubernetes";
  self = lab.nodes.${lab.controlPlane};
  netdRBAC = builtins.fromJSON (builtins.readFile ../../deploy/rbac/netd.json);
in
{
  services.kubernetes = {
    roles = [ "master" "node" ];

    apiserver = {
      advertiseAddress = self.overlayAddress;
      bindAddress = "0.0.0.0"; # the firewall opens 6443 on tailscale0 only
      securePort = 6443;
      serviceClusterIpRange = lab.serviceCidr;
      allowPrivileged = true; # calico-node
      authorizationMode = [ "RBAC" "Node" ];
      clientCaFile = "${secrets}/ca.pem";
      tlsCertFile = "${secrets}/apiserver.pem";
      tlsKeyFile = "${secrets}/apiserver-key.pem";
      kubeletClientCaFile = "${secrets}/ca.pem";
      kubeletClientCertFile = "${secrets}/apiserver-kubelet-client.pem";
      kubeletClientKeyFile = "${secrets}/apiserver-kubelet-client-key.pem";
      serviceAccountKeyFile = "${secrets}/service-account.pem";
      serviceAccountSigningKeyFile = "${secrets}/service-account-key.pem";
      etcd = {
        servers = [ "https://127.0.0.1:2379" ];
        caFile = "${secrets}/ca.pem";
        certFile = "${secrets}/apiserver-etcd-client.pem";
        keyFile = "${secrets}/apiserver-etcd-client-key.pem";
      };
    };

    controllerManager = {
      # Calico IPAM hands out pod blocks (BlockAffinity), not
      # node.spec.podCIDR: the controller manager must not allocate.
      allocateNodeCIDRs = false;
      rootCaFile = "${secrets}/ca.pem";
      serviceAccountKeyFile = "${secrets}/service-account-key.pem";
      kubeconfig = {
        server = "https://127.0.0.1:6443";
        caFile = "${secrets}/ca.pem";
        certFile = "${secrets}/controller-manager.pem";
        keyFile = "${secrets}/controller-manager-key.pem";
      };
    };

    scheduler.kubeconfig = {
      server = "https://127.0.0.1:6443";
      caFile = "${secrets}/ca.pem";
      certFile = "${secrets}/scheduler.pem";
      keyFile = "${secrets}/scheduler-key.pem";
    };

    kubelet.taints.control-plane = {
      key = "node-role.kubernetes.io/control-plane";
      value = "true";
      effect = "NoSchedule";
    };

    # netd's RBAC (deploy/rbac/netd.json: per-node identities
    # CN=ducksnest:netd:<node> in group ducksnest:netd, from
    # nixos/pki/mkpki.sh). Bootstrap addons are applied with cluster-admin
    # rights when the addon manager starts: the addon manager's own role
    # could not grant these (RBAC forbids granting what one does not hold).
    addonManager.bootstrapAddons = lib.listToAttrs (
      map (o: {
        name = "netd-${lib.toLower o.kind}-${o.metadata.namespace or "cluster"}";
        value = o;
      }) netdRBAC.items
    );

    addons.dns = {
      enable = true;
      clusterIp = lab.clusterDnsIP;
      clusterDomain = lab.clusterDomain;
      replicas = 1;
    };
  };

  # Single-member etcd on loopback, TLS with client and peer certificates
  # from the offline CA.
  services.etcd = {
    name = lab.controlPlane;
    listenClientUrls = [ "https://127.0.0.1:2379" ];
    advertiseClientUrls = [ "https://127.0.0.1:2379" ];
    listenPeerUrls = [ "https://127.0.0.1:2380" ];
    initialAdvertisePeerUrls = [ "https://127.0.0.1:2380" ];
    initialCluster = [ "${lab.controlPlane}=https://127.0.0.1:2380" ];
    clientCertAuth = true;
    peerClientCertAuth = true;
    trustedCaFile = "${secrets}/ca.pem";
    certFile = "${secrets}/etcd.pem";
    keyFile = "${secrets}/etcd-key.pem";
    peerTrustedCaFile = "${secrets}/ca.pem";
    peerCertFile = "${secrets}/etcd.pem";
    peerKeyFile = "${secrets}/etcd-key.pem";
  };

  networking.firewall.interfaces.${lab.overlayInterface}.allowedTCPPorts = [ 6443 ];
}
