# nixpkgs: nixos/modules/services/cluster/kubernetes/default.nix, nixos/modules/services/cluster/kubernetes/apiserver.nix, nixos/modules/services/cluster/kubernetes/controller-manager.nix, nixos/modules/services/cluster/kubernetes/scheduler.nix, nixos/modules/services/cluster/kubernetes/kubelet.nix, nixos/modules/services/cluster/kubernetes/proxy.nix, nixos/modules/services/cluster/kubernetes/flannel.nix, nixos/modules/services/cluster/kubernetes/addon-manager.nix, nixos/modules/services/cluster/kubernetes/addons/dns.nix
# Stand-in for nixos/modules/services/cluster/kubernetes/{default,apiserver,
# controller-manager,scheduler,kubelet,proxy,flannel,addon-manager,
# addons/dns}.nix: the options of services.kubernetes.{roles, masterAddress,
# apiserverAddress, clusterCidr, easyCerts, caFile, dataDir, featureGates,
# path, secretsPath, package, kubeconfig} and of apiserver, controllerManager,
# scheduler, kubelet, proxy, addons.dns, flannel.enable, addonManager
# (enable, bootstrapAddons, addons, and the addon manager's own RBAC
# bootstrap addons when RBAC is on),
# with nixpkgs' types and defaults; and the role logic of default.nix and
# kubelet.nix that decides what a host's definitions meet: a role turns
# on flannel and easyCerts (mkDefault true: a host must switch them off),
# the master role enables etcd, and the kubelet sets three sysctls at
# normal priority (a host setting one of them again at normal priority is
# a "defined multiple times" error in NixOS). Certificates (pki.nix),
# containerd, users and the units themselves are not mirrored.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption mkDefault types;
  top = config.services.kubernetes;

  mkKubeConfigOptions = _prefix: {
    server = mkOption { type = types.str; };
    caFile = mkOption {
      type = types.nullOr types.path;
      default = top.caFile;
    };
    certFile = mkOption {
      type = types.nullOr types.path;
      default = null;
    };
    keyFile = mkOption {
      type = types.nullOr types.path;
      default = null;
    };
  };

  opt = type: default: mkOption { inherit type default; };
  nullPath = opt (types.nullOr types.path) null;
  nullInt = opt (types.nullOr types.int) null;
  extraOpts = opt (types.separatedString " ") "";

  taintOptions =
    { name, ... }:
    {
      options = {
        key = opt types.str name;
        value = mkOption { type = types.str; };
        effect = mkOption {
          type = types.enum [
            "NoSchedule"
            "PreferNoSchedule"
            "NoExecute"
          ];
        };
      };
    };

  etcdEndpoints = [ "https://${top.masterAddress}:2379" ];
in
{
  options.services.kubernetes = {
    roles = opt (types.listOf (
      types.enum [
        "master"
        "node"
      ]
    )) [ ];
    package = lib.mkPackageOption pkgs "kubernetes" { };
    kubeconfig = mkKubeConfigOptions "Default kubeconfig";
    apiserverAddress = mkOption { type = types.str; };
    caFile = nullPath;
    dataDir = opt types.path "/var/lib/kubernetes";
    easyCerts = opt types.bool false;
    featureGates = opt (types.attrsOf types.bool) { };
    masterAddress = mkOption { type = types.str; };
    path = opt (types.listOf types.package) [ ];
    clusterCidr = opt (types.nullOr types.str) "10.1.0.0/16";
    secretsPath = opt types.path (top.dataDir + "/secrets");

    apiserver = {
      enable = lib.mkEnableOption "Kubernetes apiserver";
      advertiseAddress = opt (types.nullOr types.str) null;
      allowPrivileged = opt types.bool false;
      authorizationMode =
        opt
          (types.listOf (
            types.enum [
              "AlwaysAllow"
              "AlwaysDeny"
              "ABAC"
              "Webhook"
              "RBAC"
              "Node"
            ]
          ))
          [
            "RBAC"
            "Node"
          ];
      authorizationPolicy = opt (types.listOf types.attrs) [ ];
      basicAuthFile = nullPath;
      bindAddress = opt types.str "0.0.0.0";
      clientCaFile = opt (types.nullOr types.path) top.caFile;
      disableAdmissionPlugins = opt (types.listOf types.str) [ ];
      enableAdmissionPlugins = opt (types.listOf types.str) [
        "NamespaceLifecycle"
        "LimitRanger"
        "ServiceAccount"
        "ResourceQuota"
        "DefaultStorageClass"
        "DefaultTolerationSeconds"
        "NodeRestriction"
      ];
      etcd = {
        servers = opt (types.listOf types.str) [ "http://127.0.0.1:2379" ];
        keyFile = nullPath;
        certFile = nullPath;
        caFile = opt (types.nullOr types.path) top.caFile;
      };
      extraOpts = extraOpts;
      extraSANs = opt (types.listOf types.str) [ ];
      featureGates = opt (types.attrsOf types.bool) top.featureGates;
      kubeletClientCaFile = opt (types.nullOr types.path) top.caFile;
      kubeletClientCertFile = nullPath;
      kubeletClientKeyFile = nullPath;
      preferredAddressTypes = opt (types.nullOr types.str) null;
      proxyClientCertFile = nullPath;
      proxyClientKeyFile = nullPath;
      runtimeConfig = opt types.str "authentication.k8s.io/v1beta1=true";
      storageBackend = opt (types.enum [
        "etcd2"
        "etcd3"
      ]) "etcd3";
      securePort = opt types.int 6443;
      apiAudiences = opt types.str "api,https://kubernetes.default.svc";
      serviceAccountIssuer = opt types.str "https://kubernetes.default.svc";
      serviceAccountSigningKeyFile = mkOption { type = types.path; };
      serviceAccountKeyFile = mkOption { type = types.path; };
      serviceClusterIpRange = opt types.str "10.0.0.0/24";
      tlsCertFile = nullPath;
      tlsKeyFile = nullPath;
      tokenAuthFile = nullPath;
      verbosity = nullInt;
      webhookConfig = nullPath;
    };

    controllerManager = {
      enable = lib.mkEnableOption "Kubernetes controller manager";
      allocateNodeCIDRs = opt types.bool true;
      bindAddress = opt types.str "127.0.0.1";
      clusterCidr = opt types.str top.clusterCidr;
      extraOpts = extraOpts;
      featureGates = opt (types.attrsOf types.bool) top.featureGates;
      kubeconfig = mkKubeConfigOptions "Kubernetes controller manager";
      leaderElect = opt types.bool true;
      rootCaFile = opt (types.nullOr types.path) top.caFile;
      securePort = opt types.int 10252;
      serviceAccountKeyFile = nullPath;
      tlsCertFile = nullPath;
      tlsKeyFile = nullPath;
      verbosity = nullInt;
    };

    scheduler = {
      enable = lib.mkEnableOption "Kubernetes scheduler";
      address = opt types.str "127.0.0.1";
      extraOpts = extraOpts;
      featureGates = opt (types.attrsOf types.bool) top.featureGates;
      kubeconfig = mkKubeConfigOptions "Kubernetes scheduler";
      leaderElect = opt types.bool true;
      port = opt types.port 10251;
      verbosity = nullInt;
    };

    kubelet = {
      enable = lib.mkEnableOption "Kubernetes kubelet";
      address = opt types.str "0.0.0.0";
      clusterDns = opt (types.listOf types.str) [ "10.1.0.1" ];
      clusterDomain = opt types.str top.addons.dns.clusterDomain;
      clientCaFile = opt (types.nullOr types.path) top.caFile;
      cni = {
        packages = opt (types.listOf types.package) [ ];
        config = opt (types.listOf types.attrs) [ ];
        configDir = nullPath;
      };
      containerRuntimeEndpoint = opt types.str "unix:///run/containerd/containerd.sock";
      extraOpts = extraOpts;
      extraConfig = opt (types.attrsOf ((pkgs.formats.json { }).type)) { };
      featureGates = opt (types.attrsOf types.bool) top.featureGates;
      healthz = {
        bind = opt types.str "127.0.0.1";
        port = opt types.port 10248;
      };
      hostname = mkOption { type = types.str; };
      kubeconfig = mkKubeConfigOptions "Kubelet";
      manifests = opt (types.attrsOf types.attrs) { };
      nodeIp = opt (types.nullOr types.str) null;
      registerNode = opt types.bool true;
      port = opt types.port 10250;
      seedDockerImages = opt (types.listOf types.package) [ ];
      taints = opt (types.attrsOf (types.submodule [ taintOptions ])) { };
      tlsCertFile = nullPath;
      tlsKeyFile = nullPath;
      unschedulable = opt types.bool false;
      verbosity = nullInt;
    };

    proxy = {
      enable = lib.mkEnableOption "Kubernetes proxy";
      bindAddress = opt types.str "0.0.0.0";
      extraOpts = extraOpts;
      featureGates = opt (types.attrsOf types.bool) top.featureGates;
      hostname = opt types.str config.networking.hostName;
      kubeconfig = mkKubeConfigOptions "Kubernetes proxy";
      verbosity = nullInt;
    };

    addons.dns = {
      enable = lib.mkEnableOption "kubernetes dns addon";
      clusterIp = opt types.str (
        (lib.concatStringsSep "." (lib.take 3 (lib.splitString "." top.apiserver.serviceClusterIpRange))) + ".254"
      );
      clusterDomain = opt types.str "cluster.local";
      replicas = opt types.int 2;
      reconcileMode = opt (types.enum [
        "Reconcile"
        "EnsureExists"
      ]) "Reconcile";
    };

    flannel.enable = lib.mkEnableOption "flannel networking";
    addonManager = {
      # addon-manager.nix
      bootstrapAddons = mkOption {
        description = ''
          Bootstrap addons are like regular addons, but they are applied with cluster-admin rigths.
          They are applied at addon-manager startup only.
        '';
        default = { };
        type = types.attrsOf types.attrs;
      };
      addons = mkOption {
        description = "Kubernetes addons (any kind of Kubernetes resource can be an addon).";
        default = { };
        type = types.attrsOf (types.either types.attrs (types.listOf types.attrs));
      };
      enable = lib.mkEnableOption "Whether to enable Kubernetes addon manager.";
    };
  };

  config = lib.mkMerge [
    # default.nix
    (lib.mkIf (lib.elem "master" top.roles) {
      services.kubernetes.apiserver.enable = mkDefault true;
      services.kubernetes.scheduler.enable = mkDefault true;
      services.kubernetes.controllerManager.enable = mkDefault true;
      services.kubernetes.addonManager.enable = mkDefault true;
      services.kubernetes.proxy.enable = mkDefault true;
      services.etcd.enable = true;
      services.kubernetes.kubelet = {
        enable = mkDefault true;
        taints = lib.mkIf (!(lib.elem "node" top.roles)) {
          master = {
            key = "node-role.kubernetes.io/master";
            value = "true";
            effect = "NoSchedule";
          };
        };
      };
    })
    (lib.mkIf (lib.all (el: el == "master") top.roles) {
      services.kubernetes.kubelet.unschedulable = mkDefault true;
    })
    (lib.mkIf (lib.elem "node" top.roles) {
      services.kubernetes.kubelet.enable = mkDefault true;
      services.kubernetes.proxy.enable = mkDefault true;
    })
    (lib.mkIf (top.roles != [ ]) {
      services.kubernetes.flannel.enable = mkDefault true;
      services.kubernetes.easyCerts = mkDefault true;
    })
    (lib.mkIf top.apiserver.enable {
      services.kubernetes.apiserver.etcd.servers = mkDefault etcdEndpoints;
      # apiserver.nix
      services.etcd = {
        clientCertAuth = mkDefault true;
        peerClientCertAuth = mkDefault true;
        listenClientUrls = mkDefault [ "https://0.0.0.0:2379" ];
        listenPeerUrls = mkDefault [ "https://0.0.0.0:2380" ];
        advertiseClientUrls = mkDefault [ "https://${top.masterAddress}:2379" ];
        initialCluster = mkDefault [ "${top.masterAddress}=https://${top.masterAddress}:2380" ];
        name = mkDefault top.masterAddress;
        initialAdvertisePeerUrls = mkDefault [ "https://${top.masterAddress}:2380" ];
      };
    })
    (lib.mkIf
      (
        top.apiserver.enable
        || top.scheduler.enable
        || top.controllerManager.enable
        || top.kubelet.enable
        || top.proxy.enable
        || top.addonManager.enable
      )
      {
        services.kubernetes.addons.dns.enable = mkDefault true;
        services.kubernetes.apiserverAddress = mkDefault (
          "https://${
            if top.apiserver.advertiseAddress != null then
              top.apiserver.advertiseAddress
            else
              "${top.masterAddress}:${toString top.apiserver.securePort}"
          }"
        );
      }
    )
    # kubelet.nix
    (lib.mkIf top.kubelet.enable {
      boot.kernel.sysctl = {
        "net.bridge.bridge-nf-call-iptables" = 1;
        "net.ipv4.ip_forward" = 1;
        "net.bridge.bridge-nf-call-ip6tables" = 1;
      };
      services.kubernetes.kubelet.cni.packages = [
        pkgs.cni-plugins
        pkgs.cni-plugin-flannel
      ];
      # nixpkgs: lib.toLower config.networking.fqdnOrHostName (no domain here).
      services.kubernetes.kubelet.hostname = mkDefault (lib.toLower config.networking.hostName);
      services.kubernetes.kubelet.kubeconfig.server = mkDefault top.apiserverAddress;
    })
    (lib.mkIf (top.kubelet.unschedulable && top.kubelet.enable) {
      services.kubernetes.kubelet.taints.unschedulable = {
        value = "true";
        effect = "NoSchedule";
      };
    })
    # addon-manager.nix: the addon manager's own RBAC, as bootstrap addons.
    (lib.mkIf (top.addonManager.enable && lib.elem "RBAC" top.apiserver.authorizationMode) {
      services.kubernetes.addonManager.bootstrapAddons =
        let
          name = "system:kube-addon-manager";
          namespace = "kube-system";
        in
        {
          kube-addon-manager-r = {
            apiVersion = "rbac.authorization.k8s.io/v1";
            kind = "Role";
            metadata = { inherit name namespace; };
            rules = [
              {
                apiGroups = [ "*" ];
                resources = [ "*" ];
                verbs = [ "*" ];
              }
            ];
          };
          kube-addon-manager-rb = {
            apiVersion = "rbac.authorization.k8s.io/v1";
            kind = "RoleBinding";
            metadata = { inherit name namespace; };
            roleRef = {
              apiGroup = "rbac.authorization.k8s.io";
              kind = "Role";
              inherit name;
            };
            subjects = [
              {
                apiGroup = "rbac.authorization.k8s.io";
                kind = "User";
                inherit name;
              }
            ];
          };
          kube-addon-manager-cluster-lister-cr = {
            apiVersion = "rbac.authorization.k8s.io/v1";
            kind = "ClusterRole";
            metadata.name = "${name}:cluster-lister";
            rules = [
              {
                apiGroups = [ "*" ];
                resources = [ "*" ];
                verbs = [ "list" ];
              }
            ];
          };
          kube-addon-manager-cluster-lister-crb = {
            apiVersion = "rbac.authorization.k8s.io/v1";
            kind = "ClusterRoleBinding";
            metadata.name = "${name}:cluster-lister";
            roleRef = {
              apiGroup = "rbac.authorization.k8s.io";
              kind = "ClusterRole";
              name = "${name}:cluster-lister";
            };
            subjects = [
              {
                kind = "User";
                inherit name;
              }
            ];
          };
        };
    })
    # controller-manager.nix, scheduler.nix, proxy.nix
    (lib.mkIf top.controllerManager.enable {
      services.kubernetes.controllerManager.kubeconfig.server = mkDefault top.apiserverAddress;
    })
    (lib.mkIf top.scheduler.enable {
      services.kubernetes.scheduler.kubeconfig.server = mkDefault top.apiserverAddress;
    })
    (lib.mkIf top.proxy.enable {
      services.kubernetes.proxy.hostname = mkDefault config.networking.hostName;
      services.kubernetes.proxy.kubeconfig.server = mkDefault top.apiserverAddress;
    })
  ];
}
