# old: Intel i3-M330 (2 cores / 4 threads), 1.9 GiB, 289 GiB ext4.
# On-prem worker with very little memory: the kubelet reserves memory for
# the system, evicts early, runs few pods, and heavy extras stay off.
{ lib, ... }:
{
  imports = [
    ./hardware/old.nix
    ../profiles/common.nix
    ../profiles/tailscale.nix
    ../profiles/kubernetes.nix
    ../profiles/k8s-worker.nix
    ../profiles/netd.nix
  ];
  networking.hostName = "old";
  networking.interfaces.lan0.ipv4.addresses = [ { address = "192.168.0.13"; prefixLength = 24; } ];

  services.kubernetes.kubelet = {
    # Of ~1.9 GiB: ~300 MiB for the OS (systemd, journald, sshd,
    # tailscaled ~40 MiB, netd ~30 MiB), ~250 MiB for kubelet/containerd/
    # kube-proxy, 200 MiB hard eviction margin: ~1.1 GiB allocatable.
    extraConfig = {
      systemReserved = { cpu = "200m"; memory = "300Mi"; };
      kubeReserved = { cpu = "200m"; memory = "250Mi"; };
      evictionHard = {
        "memory.available" = "200Mi";
        "nodefs.available" = "10%";
        "imagefs.available" = "15%";
      };
      evictionSoft."memory.available" = "300Mi";
      evictionSoftGracePeriod."memory.available" = "30s";
      maxPods = 20;
      # Small images only: collect early on a slow disk.
      imageGCHighThresholdPercent = 70;
      imageGCLowThresholdPercent = 50;
    };
    # Pods that tolerate it (small, latency-insensitive) may land here;
    # the scheduler prefers the 16 GiB nodes for the rest.
    taints.low-memory = {
      key = "ducksnest.dev/low-memory";
      value = "true";
      effect = "PreferNoSchedule";
    };
  };

  # No heavy extras: no documentation builds, small journal, one Nix build
  # job, no swap-backed tmpfs (the kubelet requires swap off by default).
  documentation.enable = false;
  services.journald.extraConfig = "SystemMaxUse=100M";
  nix.settings.max-jobs = 1;
  nix.settings.cores = 2;
  boot.tmp.useTmpfs = false;
  zramSwap.enable = false;
  swapDevices = lib.mkForce [ ];
}
