# Assertions on the four host configurations, evaluated offline by the real
# nixpkgs module system with the NixOS stand-ins (../standin), through the
# flake's own outputs (./outputs.nix):
#
#   nix-instantiate --eval --strict --json -E \
#     'import nixos/tests/eval/hosts.nix (import nixos/tests/eval/outputs.nix { ... }).nixosConfigurations'
#
# Returns { <host> = [ "ok - ..." or "not ok - ..." lines ]; }. That each
# configuration evaluates at all (every defined option, with its type) is
# checked by nixos/check.sh on system.build.toplevel first.
configurations:
let
  b = builtins;
  lab = import ../../lab.nix;
  hardening = import ./hardening.nix;
  hasSuffix = suf: s: let ls = b.stringLength s; lf = b.stringLength suf; in ls >= lf && b.substring (ls - lf) lf s == suf;
  hasPrefix = pre: s: b.substring 0 (b.stringLength pre) s == pre;

  # Every string anywhere under a value (to find store paths of secrets).
  # Options declared without a default and not set (an apiserver option on
  # a worker) throw when read: skipped.
  strings = v:
    if b.isString v then [ v ]
    else if b.isList v then b.concatMap strings v
    else if b.isAttrs v && !(v ? outPath) then
      b.concatMap (n: let r = b.tryEval v.${n}; in if r.success then strings r.value else [ ]) (b.attrNames v)
    else [ ];

  hostChecks = name: cfg:
    let
      c = cfg.config;
      node = lab.nodes.${name};
      isCP = node.role == "control-plane";
      k = c.services.kubernetes;
      ts = c.services.tailscale;
      netd = c.services.netd;
      svc = c.systemd.services.netd;
      fw = c.networking.firewall;
      sysctl = c.boot.kernel.sysctl;
      overlayPorts = fw.interfaces.${lab.overlayInterface}.allowedTCPPorts;
      cni = b.head (b.head k.kubelet.cni.config).plugins;
      secretPaths = b.filter (s: hasSuffix "-key.pem" s || hasSuffix ".kubeconfig" s || hasSuffix "authkey" s)
        (strings k ++ strings (c.services.etcd or { }) ++ strings ts ++ strings netd);
      check = cond: msg: (if cond then "ok - " else "not ok - ") + "${name}: ${msg}";
    in
    [
      (check (c.networking.hostName == name) "hostName is ${name}")
      (check netd.enable "netd enabled")
      (check (netd.nodeName == name) "netd nodeName is the host name")
      (check (hasSuffix "examples/ducksnest/policy.yaml" (toString netd.policyFile)) "netd runs the repository's policy file")
      (check (hardening svc == [ ]) "netd unit hardening holds (${toString (hardening svc)})")
      (check (b.elem lab.bgpPort overlayPorts) "BGP ${toString lab.bgpPort} open on ${lab.overlayInterface}")
      (check (!(b.elem lab.bgpPort fw.allowedTCPPorts)) "BGP not open on every interface")
      (check (netd.bfd.enable && b.elem 3784 fw.interfaces.${lab.overlayInterface}.allowedUDPPorts && !(b.elem 3784 fw.allowedUDPPorts))
        "BFD on, UDP 3784 open on ${lab.overlayInterface} only")
      (check (!(b.elem 22 fw.allowedTCPPorts) && b.elem 22 overlayPorts) "SSH open on ${lab.overlayInterface} only")
      (check (fw.checkReversePath == "loose") "firewall reverse-path filter loose")
      (check (sysctl."net.ipv4.ip_forward" == 1) "ip_forward=1")
      (check (sysctl."net.ipv4.conf.all.rp_filter" == 2 && sysctl."net.ipv4.conf.default.rp_filter" == 2) "rp_filter loose (2) on all/default")
      (check ts.enable "tailscale enabled")
      (check (ts.useRoutingFeatures == "both") "tailscale advertises and accepts routes")
      (check (b.elem "--accept-routes" ts.extraUpFlags) "tailscale --accept-routes")
      (check (hasPrefix "/var/lib/secrets/" ts.authKeyFile) "tailscale auth key read from /var/lib/secrets, not the store")
      (check (!(ts ? authKey)) "no literal tailscale auth key")
      (check (secretPaths != [ ] && b.all (s: hasPrefix "/var/lib/secrets/" s) secretPaths)
        "every key/kubeconfig path is under /var/lib/secrets (${toString (b.length secretPaths)} paths)")
      (check (b.all (s: !(hasPrefix "/nix/store" s && (hasSuffix "-key.pem" s || hasSuffix "authkey" s))) (strings c.services))
        "no private key in the Nix store")
      (check (!k.easyCerts) "cluster PKI from the offline CA (no easyCerts)")
      (check (!k.flannel.enable) "flannel off (Calico)")
      (check (k.clusterCidr == lab.podCidr) "cluster CIDR ${lab.podCidr}")
      (check (k.kubelet.nodeIp == node.overlayAddress) "kubelet node IP is the overlay address")
      (check (cni.type == "calico" && cni.mtu == lab.podMtu) "Calico CNI with pod MTU ${toString lab.podMtu}")
      (check (cni.ipam.type == "calico-ipam") "Calico IPAM")
      (check (b.elem 10250 overlayPorts) "kubelet API only on the overlay")
      (check (k.apiserverAddress == "https://${lab.nodes.${lab.controlPlane}.overlayAddress}:6443") "API server over the tailnet")
      (check (isCP == b.elem "master" k.roles) "master role only on the control plane")
      (check (b.elem "node" k.roles) "kubelet role")
      (check (isCP == (c.networking.timeServers == [ "169.254.169.123" ])) "amazon-image (EC2's NTP server) only on the control plane")
      (check (isCP == c.services.etcd.enable) "etcd only on the control plane")
    ]
    ++ (if isCP then [
      (check (k.apiserver.advertiseAddress == node.overlayAddress) "API server advertises the overlay address")
      (check (k.apiserver.serviceClusterIpRange == lab.serviceCidr) "service CIDR ${lab.serviceCidr}")
      (check (!k.controllerManager.allocateNodeCIDRs) "no node.spec.podCIDR allocation (Calico IPAM)")
      (check (b.elem 6443 overlayPorts && !(b.elem 6443 fw.allowedTCPPorts)) "6443 only on the overlay")
      (check (c.services.etcd.clientCertAuth && c.services.etcd.peerClientCertAuth) "etcd requires client certificates")
      (check (b.all (u: hasPrefix "https://127.0.0.1" u) c.services.etcd.listenClientUrls) "etcd listens on loopback only")
      (check (k.kubelet.taints.control-plane.effect == "NoSchedule") "control plane tainted")
    ] else [ ])
    ++ (if name == "old" then
      let
        ec = k.kubelet.extraConfig;
        mi = s: let m = b.match "([0-9]+)Mi" s; in if m == null then b.throw "not Mi: ${s}" else b.fromJSON (b.head m);
        reserved = mi ec.systemReserved.memory + mi ec.kubeReserved.memory + mi ec.evictionHard."memory.available";
        allocatable = 1945 - reserved; # 1.9 GiB
      in [
        (check (reserved >= 600 && allocatable >= 1024) "old reserves ${toString reserved} MiB, leaves ${toString allocatable} MiB allocatable")
        (check (ec.maxPods <= 30) "old runs at most ${toString ec.maxPods} pods")
        (check (!c.documentation.enable) "old builds no documentation")
        (check (c.nix.settings.max-jobs == 1) "old builds one job at a time")
      ] else [ ]);
in
b.mapAttrs hostChecks configurations
