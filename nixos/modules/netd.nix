{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.netd;

  inherit (lib)
    escapeShellArgs
    getExe'
    literalExpression
    mkEnableOption
    mkIf
    mkOption
    mkPackageOption
    optional
    optionals
    types
    ;

  # netd reads the policy from a fixed path under /etc, so that a new policy
  # is picked up by `systemctl reload netd` (SIGHUP) instead of a restart.
  policyPath = "/etc/netd/policy.yaml";
  socketPath = "/run/netd/netd.sock";

  # Credentials reach the service through LoadCredential= (read from
  # $CREDENTIALS_DIRECTORY, %d in the unit): never through the store.
  tn = cfg.tailnet;
  credentials =
    optional (cfg.kubeconfig != null) "kubeconfig:${cfg.kubeconfig}"
    ++ optional (tn.apiKeyFile != null) "tailnet-api-key:${tn.apiKeyFile}"
    ++ optional (tn.oauthClientSecretFile != null) "tailnet-oauth-client-secret:${tn.oauthClientSecretFile}";
  credentialPaths = lib.filterAttrs (_: v: v != null) {
    "services.netd.kubeconfig" = cfg.kubeconfig;
    "services.netd.tailnet.apiKeyFile" = tn.apiKeyFile;
    "services.netd.tailnet.oauthClientSecretFile" = tn.oauthClientSecretFile;
  };
  inStore = p: builtins.isPath p || lib.hasPrefix builtins.storeDir (toString p);

  # The tailnet credentials, in the environment variables netd's tailnet
  # writer reads (acl.TargetFromEnv: HEADSCALE_URL + HEADSCALE_API_KEY_FILE,
  # or TS_API_KEY_FILE, or TS_OAUTH_CLIENT_ID + TS_OAUTH_CLIENT_SECRET_FILE,
  # and TS_TAILNET).
  tailnetEnvironment =
    lib.optionalAttrs (tn.headscaleUrl != null) {
      HEADSCALE_URL = tn.headscaleUrl;
      HEADSCALE_API_KEY_FILE = "%d/tailnet-api-key";
    }
    // lib.optionalAttrs (tn.headscaleUrl == null && tn.apiKeyFile != null) {
      TS_API_KEY_FILE = "%d/tailnet-api-key";
    }
    // lib.optionalAttrs (tn.oauthClientId != null) {
      TS_OAUTH_CLIENT_ID = tn.oauthClientId;
      TS_OAUTH_CLIENT_SECRET_FILE = "%d/tailnet-oauth-client-secret";
    }
    // lib.optionalAttrs (tn.tailnetName != null) { TS_TAILNET = tn.tailnetName; };

  args =
    [
      "run"
      "--policy=${policyPath}"
      "--node=${cfg.nodeName}"
      "--socket=${socketPath}"
      "--state-dir=/run/netd"
      "--metrics-addr=${if cfg.metricsAddress == null then "" else cfg.metricsAddress}"
      "--log-level=${cfg.logLevel}"
      "--log-format=${cfg.logFormat}"
      "--stop-mode=${cfg.stopMode}"
      "--bfd=${lib.boolToString cfg.bfd.enable}"
    ]
    ++ optionals cfg.bfd.enable [
      "--bfd-interval=${cfg.bfd.interval}"
      "--bfd-multiplier=${toString cfg.bfd.multiplier}"
    ]
    ++ optional cfg.flushOnExit "--flush-on-exit"
    ++ optional (cfg.tailscaleSocket != null) "--tailscale-socket=${cfg.tailscaleSocket}"
    ++ optional cfg.discoverPeers "--discover-peers"
    ++ optionals (cfg.kubeconfig != null) [
      "--kubeconfig=%d/kubeconfig"
      "--sync-calico=${lib.boolToString cfg.syncCalico}"
    ]
    ++ optional (cfg.grpcAddress != null) "--grpc-addr=${cfg.grpcAddress}"
    ++ cfg.extraArgs;

  # The flags the typed options own: extraArgs must not repeat them.
  ownedFlags = {
    policy = "policyFile";
    node = "nodeName";
    socket = "(fixed: /run/netd/netd.sock)";
    state-dir = "(fixed: /run/netd)";
    metrics-addr = "metricsAddress";
    log-level = "logLevel";
    log-format = "logFormat";
    stop-mode = "stopMode";
    bfd = "bfd.enable";
    bfd-interval = "bfd.interval";
    bfd-multiplier = "bfd.multiplier";
    flush-on-exit = "flushOnExit";
    tailscale-socket = "tailscaleSocket";
    discover-peers = "discoverPeers";
    kubeconfig = "kubeconfig";
    sync-calico = "syncCalico";
    grpc-addr = "grpcAddress";
  };
  flagName = a: lib.head (lib.splitString "=" (lib.removePrefix "-" (lib.removePrefix "-" a)));
  ownedInExtraArgs = lib.filter (a: lib.hasPrefix "-" a && ownedFlags ? ${flagName a}) cfg.extraArgs;

  # A positive Go duration such as 100ms, 1.5s or 1m30s.
  goDuration =
    types.addCheck (types.strMatching "([0-9]+([.][0-9]+)?(ns|us|ms|s|m|h))+") (d: builtins.match "[0.]+[a-z]+" d == null)
    // {
      description = "positive Go duration (100ms, 1.5s, 1m30s)";
    };

  # services.netd.monitoring is a module of its own: it configures the host
  # that runs Prometheus and Grafana, whether or not that host runs netd.
  # The rules and the dashboard are the repository's deploy/monitoring
  # files, tested there (promtool unit tests; a Go test that they read only
  # metrics netd exports).
  monitoringModule =
    { config, ... }:
    let
      mcfg = config.services.netd.monitoring;
      # The dashboard alone, in a directory of its own (Grafana's file
      # provider loads every .json file of its path).
      dashboards = builtins.path {
        name = "netd-dashboards";
        path = ../../deploy/monitoring;
        filter = p: _: baseNameOf p == "netd-dashboard.json";
      };
    in
    {
      options.services.netd.monitoring = {
        enable = mkEnableOption ''
          netd's Prometheus alert rules (services.prometheus.ruleFiles) and
          its Grafana dashboard (services.grafana.provision) on this host,
          the one that runs Prometheus or Grafana'';

        scrapeTargets = mkOption {
          type = types.listOf (types.strMatching "[^/[:space:]]+:[0-9]+");
          default = [ ];
          example = [
            "firebat:9180"
            "ultra:9180"
          ];
          description = ''
            The nodes' netd metrics endpoints (host:port, services.netd.metricsAddress
            of each node), scraped as the job `netd`, the job the alert rules
            select. Empty: no scrape config is added, and the Prometheus
            configuration must name its netd job `netd` itself.
          '';
        };
      };

      config = mkIf mcfg.enable {
        assertions = [
          {
            assertion = config.services.prometheus.enable || config.services.grafana.enable;
            message = "services.netd.monitoring adds netd's alert rules to Prometheus and its dashboard to Grafana: enable services.prometheus or services.grafana on this host.";
          }
        ];
        # A store path (nixpkgs checks it with `promtool check rules` when it
        # builds the Prometheus configuration).
        services.prometheus.ruleFiles = [ "${../../deploy/monitoring/netd-alerts.yaml}" ];
        services.prometheus.scrapeConfigs = optional (mcfg.scrapeTargets != [ ]) {
          job_name = "netd";
          static_configs = [ { targets = mcfg.scrapeTargets; } ];
        };
        services.grafana.provision = {
          enable = true;
          dashboards.settings.providers = [
            {
              name = "netd";
              options.path = dashboards;
            }
          ];
        };
      };
    };
in
{
  imports = [ monitoringModule ];

  options.services.netd = {
    enable = mkEnableOption "netd, the ducksnest node network daemon (BGP pod routes over the overlay, route MTUs)";

    package = mkPackageOption pkgs "netd" { };

    policyFile = mkOption {
      type = types.path;
      example = literalExpression "./examples/ducksnest/policy.yaml";
      description = ''
        The cluster's netd policy file. It is linked to
        `/etc/netd/policy.yaml`; when it changes, `nixos-rebuild switch`
        reloads netd (SIGHUP) instead of restarting it, and netd keeps the
        last good policy if the new one is broken. It holds no secrets and
        may live in the Nix store.
      '';
    };

    nodeName = mkOption {
      type = types.nonEmptyStr;
      default = config.networking.hostName;
      defaultText = literalExpression "config.networking.hostName";
      description = "This node's name in the policy (`spec.nodes[].name`), which is also its Kubernetes node name.";
    };

    tailscaleSocket = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/tailscale/tailscaled.sock";
      description = ''
        tailscaled's LocalAPI socket. With it, netd keeps this node's
        advertised subnet routes equal to its pod blocks (Tailscale forwards
        only destinations inside an approved subnet route) and reports a
        learned route that the tailnet peer does not carry instead of
        installing it. netd's user must be the Tailscale operator
        (`tailscale up --operator=netd`). `null` leaves the tailnet alone.
      '';
    };

    kubeconfig = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/var/lib/secrets/netd.kubeconfig";
      description = ''
        Kubeconfig: the node's pod blocks (and its peers' block ownership)
        then come from Calico IPAM BlockAffinities, and the leader-only
        reconcilers (Calico objects, Lease) run.
        Give a path as a string so that the file, which holds credentials,
        is never copied into the Nix store; it is passed to the service
        with `LoadCredential=` and read from `$CREDENTIALS_DIRECTORY`.
        `null` runs only the per-node reconcilers.
      '';
    };

    overlayInterface = mkOption {
      type = types.nonEmptyStr;
      default = "tailscale0";
      description = ''
        The overlay (Tailscale) interface, as in the policy's
        `spec.overlay.interface`. Used for the firewall opening of the BGP
        port; the BGP sessions run across it.
      '';
    };

    bgpPort = mkOption {
      type = types.port;
      default = 179;
      description = "TCP port of the BGP speaker; must equal the policy's `spec.bgp.port` (default 179).";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether to open the BGP port, on the overlay interface only, so
        that the other nodes' speakers can connect. Sessions to external
        peers on the LAN (the home router) are opened by netd outbound and
        need no opening.
      '';
    };

    metricsAddress = mkOption {
      type = types.nullOr types.str;
      default = "127.0.0.1:9180";
      example = "100.64.0.1:9180";
      description = "Listen address of `/metrics`, `/healthz` and `/readyz`; `null` disables the listener.";
    };

    logLevel = mkOption {
      type = types.enum [ "debug" "info" "warn" "error" ];
      default = "info";
      description = "Minimum level of the log lines netd writes to the journal.";
    };

    logFormat = mkOption {
      type = types.enum [ "text" "json" ];
      default = "text";
      description = "Log line format: `text` (logfmt) or `json`.";
    };

    stopMode = mkOption {
      type = types.enum [ "graceful" "withdraw" ];
      default = "graceful";
      description = ''
        What netd does to its BGP sessions on stop. `graceful` (BGP graceful
        restart) lets the peers keep this node's pod routes as stale until
        netd is back, so a restart by `nixos-rebuild switch` or by the
        watchdog drops no pod traffic; `withdraw` makes them drop the routes
        at once, for a node that leaves the cluster.
      '';
    };

    bfd = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = ''
          Whether netd runs BFD (RFC 5880, UDP 3784) with every BGP peer, so
          that a silent peer's routes leave the kernel within a second
          instead of the BGP hold time. `openFirewall` opens UDP 3784 on the
          overlay interface; the tailnet policy must allow it between the
          nodes: netd's generated policy does while the policy's
          `spec.bgp.bfd.enabled` is true (the default), so keep the two
          equal (`netd policy check` fails when BFD is on and the tailnet
          policy does not allow it). netd's BFD is single hop (RFC 5881):
          UDP 4784 (multihop) is never used.
        '';
      };
      interval = mkOption {
        type = goDuration;
        default = "100ms";
        description = "BFD transmit and receive interval once a session is up (`--bfd-interval`).";
      };
      multiplier = mkOption {
        type = types.ints.between 1 255;
        default = 8;
        description = "BFD detect multiplier: a peer is down after this many intervals without a packet (`--bfd-multiplier`).";
      };
    };

    syncCalico = mkOption {
      type = types.bool;
      default = true;
      description = ''
        With `kubeconfig`: whether this node competes for the
        kube-system/netd-calico Lease and, while holding it, keeps the
        Calico objects (IPPools, IPAM and Felix configuration) equal to the
        policy (`--sync-calico`).
      '';
    };

    discoverPeers = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether the BGP node peers are the tailnet peers that carry the
        policy's node tag, as tailscaled reports them, instead of the
        policy's node list (`--discover-peers`; needs `tailscaleSocket`).
      '';
    };

    grpcAddress = mkOption {
      type = types.nullOr (types.strMatching "(127[.][0-9]{1,3}[.][0-9]{1,3}[.][0-9]{1,3}|\\[::1])(:[0-9]{1,5})");
      default = null;
      example = "127.0.0.1:50051";
      description = ''
        Loopback address and port on which netd serves GoBGP's gRPC API,
        for the `gobgp` CLI (`--grpc-addr`). `null`: off.
      '';
    };

    tailnet = {
      headscaleUrl = mkOption {
        type = types.nullOr types.nonEmptyStr;
        default = null;
        example = "https://headscale.example.com";
        description = ''
          With it, the tailnet whose policy netd keeps is headscale's at this
          URL, and `apiKeyFile` holds a headscale API key (`HEADSCALE_URL`).
          Without it, the tailnet is Tailscale's.
        '';
      };
      tailnetName = mkOption {
        type = types.nullOr types.nonEmptyStr;
        default = null;
        example = "example.com";
        description = "Tailscale tailnet name (`TS_TAILNET`); `null`: the credential's own tailnet.";
      };
      apiKeyFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/var/lib/secrets/netd/tailnet-api-key";
        description = ''
          File holding a headscale API key (with `headscaleUrl`) or a
          Tailscale API key. It is passed with `LoadCredential=` and netd
          reads it from `$CREDENTIALS_DIRECTORY` (`HEADSCALE_API_KEY_FILE`
          or `TS_API_KEY_FILE`). Give the path as a string: a Nix path
          would copy the secret into the world-readable store.
        '';
      };
      oauthClientId = mkOption {
        type = types.nullOr types.nonEmptyStr;
        default = null;
        description = "Tailscale OAuth client ID (scope `policy_file`), instead of an API key (`TS_OAUTH_CLIENT_ID`).";
      };
      oauthClientSecretFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/var/lib/secrets/netd/tailnet-oauth-client-secret";
        description = ''
          File holding the Tailscale OAuth client's secret, passed with
          `LoadCredential=` (`TS_OAUTH_CLIENT_SECRET_FILE`). A string path,
          as for `apiKeyFile`.
        '';
      };
    };

    flushOnExit = mkOption {
      type = types.bool;
      default = false;
      description = "Whether netd removes its own routes and rule when it stops (by default they stay, so that a restart loses no traffic).";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "--resync=1m" ];
      description = "Extra arguments appended to `netd run`; not the flags the options above set (an assertion refuses them).";
    };
  };

  config = mkIf cfg.enable {
    assertions =
      map (a: {
        assertion = false;
        message = "services.netd.extraArgs must not set ${a}: use services.netd.${ownedFlags.${flagName a}}.";
      }) ownedInExtraArgs
      ++ lib.mapAttrsToList (name: p: {
        assertion = !(inStore p);
        message = "${name} must not be in the Nix store (it holds a credential; give the path as a string): ${toString p}";
      }) credentialPaths
      ++ [
        {
          assertion = cfg.discoverPeers -> cfg.tailscaleSocket != null;
          message = "services.netd.discoverPeers needs services.netd.tailscaleSocket (the peers come from tailscaled).";
        }
        {
          assertion = tn.headscaleUrl != null -> (tn.apiKeyFile != null && tn.oauthClientId == null && tn.tailnetName == null);
          message = "services.netd.tailnet.headscaleUrl takes a headscale API key in services.netd.tailnet.apiKeyFile (no OAuth client, no tailnetName).";
        }
        {
          assertion = (tn.oauthClientId == null) == (tn.oauthClientSecretFile == null);
          message = "services.netd.tailnet.oauthClientId and oauthClientSecretFile go together.";
        }
        {
          assertion = !(tn.apiKeyFile != null && tn.oauthClientId != null);
          message = "services.netd.tailnet: set apiKeyFile or the OAuth client (oauthClientId, oauthClientSecretFile), not both.";
        }
        {
          assertion = tn.tailnetName != null -> (tn.apiKeyFile != null || tn.oauthClientId != null);
          message = "services.netd.tailnet.tailnetName needs a credential (apiKeyFile or the OAuth client).";
        }
      ];

    environment.systemPackages = [ cfg.package ];

    environment.etc."netd/policy.yaml".source = cfg.policyFile;

    networking.firewall.interfaces.${cfg.overlayInterface} = {
      allowedTCPPorts = optionals cfg.openFirewall [ cfg.bgpPort ];
      # BFD control packets (single hop, RFC 5881).
      allowedUDPPorts = optionals (cfg.openFirewall && cfg.bfd.enable) [ 3784 ];
    };

    systemd.services.netd = {
      description = "ducksnest netd node network daemon";
      documentation = [ "https://github.com/ducksnest/netd" ];
      wantedBy = [ "multi-user.target" ];
      # BGP runs across the overlay: start after tailscaled has brought up
      # tailscale0 (netd copes with a missing link, but starts cleaner).
      wants = [ "network-online.target" "tailscaled.service" ];
      after = [ "network-online.target" "tailscaled.service" ];
      # A new policy is applied by a reload (SIGHUP), not a restart.
      reloadTriggers = [ cfg.policyFile ];

      environment =
        lib.optionalAttrs (cfg.kubeconfig != null) {
          KUBECONFIG = "%d/kubeconfig";
        }
        // tailnetEnvironment;

      serviceConfig = {
        # netd sends READY=1 once the policy is loaded and the speaker runs,
        # and WATCHDOG=1 at half of WatchdogSec while its loops are healthy.
        Type = "notify";
        NotifyAccess = "main";
        ExecStart = "${getExe' cfg.package "netd"} ${escapeShellArgs args}";
        ExecReload = "${getExe' pkgs.coreutils "kill"} -HUP $MAINPID";
        WatchdogSec = "30s";
        Restart = "always";
        RestartSec = "2s";
        # netd bounds its own shutdown (BGP withdrawal) at 5 s.
        TimeoutStopSec = "15s";
        LoadCredential = credentials;

        # netd keeps no state on disk: the kernel routes it owns are found
        # again by their protocol number and table, and BGP state is
        # rebuilt by graceful restart. The one thing that must survive a
        # restart (not a reboot, which empties the kernel anyway) is the
        # marker that the last stop was graceful, so that the next start
        # announces the restart R-bit: it lives in /run/netd, kept across
        # restarts by RuntimeDirectoryPreserve. So a dynamic user, no
        # StateDirectory.
        # User= gives the dynamic user a stable name ("netd"), which can be
        # made the Tailscale operator (`tailscale set --operator=netd`) for
        # the LocalAPI route advertisement.
        DynamicUser = true;
        User = "netd";
        Group = "netd";
        RuntimeDirectory = "netd";
        RuntimeDirectoryMode = "0750";
        RuntimeDirectoryPreserve = "restart";
        UMask = "0077";

        # CAP_NET_ADMIN: routes, rules and route MTUs over netlink.
        # CAP_NET_BIND_SERVICE: the BGP listener on port 179.
        # CAP_NET_RAW: the LAN path prober's ICMP echo socket ("ip4:icmp",
        # a raw socket) that decides between the LAN and the overlay path.
        AmbientCapabilities = [ "CAP_NET_ADMIN" "CAP_NET_BIND_SERVICE" "CAP_NET_RAW" ];
        CapabilityBoundingSet = [ "CAP_NET_ADMIN" "CAP_NET_BIND_SERVICE" "CAP_NET_RAW" ];
        NoNewPrivileges = true;

        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        DevicePolicy = "closed";
        PrivateMounts = true;
        # Not PrivateUsers: the capabilities must hold in the host's user
        # namespace to change its routing tables. Not PrivateNetwork either.
        PrivateUsers = false;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectKernelLogs = true;
        ProtectKernelModules = true;
        # netd never writes sysctls (the host configuration sets ip_forward
        # and rp_filter); it may read them, which stays allowed.
        ProtectKernelTunables = true;
        ProtectControlGroups = true;
        ProtectProc = "invisible";
        # The daemon reads nothing under /proc/sys (Go's somaxconn lookup
        # falls back to a default); a daemon-side sysctl preflight would
        # need ProcSubset = "all".
        ProcSubset = "pid";
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" "AF_NETLINK" ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        RemoveIPC = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" "~@privileged" "~@resources" ];
        # A call outside the filter fails with EPERM, which netd reports,
        # instead of killing the process. netd itself makes none: the
        # systemd lab runs every feature under this filter, and Go raises
        # RLIMIT_NOFILE with prlimit64 (in @default), not setrlimit.
        SystemCallErrorNumber = "EPERM";
      };
    };
  };

  meta.maintainers = [ ];
}
