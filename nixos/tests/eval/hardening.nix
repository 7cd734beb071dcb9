# The hardening the netd unit must keep, independent of the golden files:
# returns the list of violations of one `systemd.services.netd` value
# ([] when every requirement holds). The golden files would also catch a
# dropped line, but an `--update` could bless it; this list cannot be
# regenerated and says why each setting matters.
svc:
let
  b = builtins;
  sc = svc.serviceConfig;
  sorted = xs: b.sort b.lessThan xs;
  required = {
    Type = "notify"; # readiness from netd, not from fork
    NotifyAccess = "main";
    Restart = "always";
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    ProtectKernelModules = true;
    ProtectKernelTunables = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    RestrictNamespaces = true;
    RestrictSUIDSGID = true;
    RestrictRealtime = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    SystemCallArchitectures = "native";
    RuntimeDirectory = "netd"; # /run/netd/netd.sock
  };
  # Exactly these (as sets): no more capabilities, no more families.
  exact = {
    AmbientCapabilities = [ "CAP_NET_ADMIN" "CAP_NET_BIND_SERVICE" "CAP_NET_RAW" ];
    CapabilityBoundingSet = [ "CAP_NET_ADMIN" "CAP_NET_BIND_SERVICE" "CAP_NET_RAW" ];
    RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_NETLINK" "AF_UNIX" ];
    SystemCallFilter = [ "@system-service" "~@privileged" "~@resources" ];
  };
  missing = b.filter (k: (sc.${k} or null) != required.${k}) (b.attrNames required);
  wrong = b.filter (k: sorted (sc.${k} or [ ]) != sorted exact.${k}) (b.attrNames exact);
  has = p: b.any (x: x == p);
  extra =
    b.filter (x: x != null) [
      (if (sc.WatchdogSec or null) == null then "WatchdogSec unset" else null)
      (if (sc.ExecReload or "") == "" || b.match ".*-HUP .MAINPID.*" sc.ExecReload == null then "ExecReload is not a SIGHUP" else null)
      (if !(has "tailscaled.service" (svc.after or [ ])) then "not ordered after tailscaled.service" else null)
      (if !(has "network-online.target" (svc.after or [ ])) then "not ordered after network-online.target" else null)
      (if (sc.User or "root") == "root" then "runs as root" else null)
      (if (sc.PrivateUsers or false) || (sc.PrivateNetwork or false) then "PrivateUsers/PrivateNetwork would void CAP_NET_ADMIN on the host" else null)
    ];
in
map (k: "${k} must be ${b.toJSON required.${k}}, is ${b.toJSON (sc.${k} or null)}") missing
++ map (k: "${k} must be exactly ${b.toJSON exact.${k}}, is ${b.toJSON (sc.${k} or null)}") wrong
++ extra
