# The option combinations the netd module is evaluated with: offline with
# the real nixpkgs lib and the NixOS stand-ins (cases.nix, run by
# nixos/check.sh) and with the whole real nixpkgs (module-eval.nix, a
# flake check). Every `good` case must evaluate and match its golden file
# ../golden/<case>.json; every `bad` case must fail with an error
# containing `error` (the real module system's messages).
{
  good = {
    # The defaults: only what a host must say.
    defaults = {
      networking.hostName = "firebat";
      services.netd = {
        enable = true;
        policyFile = "/srv/netd/policy.yaml";
      };
    };

    # Every option away from its default.
    full = {
      networking.hostName = "ignored-host";
      services.netd = {
        enable = true;
        policyFile = "/srv/netd/policy.yaml";
        nodeName = "old";
        kubeconfig = "/var/lib/secrets/netd.kubeconfig";
        overlayInterface = "tailscale1";
        bgpPort = 1179;
        openFirewall = true;
        metricsAddress = null;
        logLevel = "debug";
        logFormat = "json";
        stopMode = "withdraw";
        flushOnExit = true;
        bfd = { interval = "250ms"; multiplier = 3; };
        syncCalico = false;
        tailscaleSocket = "/run/tailscale/tailscaled.sock";
        discoverPeers = true;
        grpcAddress = "127.0.0.1:50051";
        tailnet = {
          headscaleUrl = "https://headscale.example.com";
          apiKeyFile = "/var/lib/secrets/netd/headscale-api-key";
        };
        extraArgs = [ "--resync=1m" "--stop-timeout=3s" ];
      };
    };

    # BFD off: no BFD flags, no UDP 3784 in the firewall.
    noBfd = {
      networking.hostName = "ultra";
      services.netd = {
        enable = true;
        policyFile = "/srv/netd/policy.yaml";
        openFirewall = true;
        bfd.enable = false;
      };
    };

    # Tailscale's API through an OAuth client, for the tailnet policy.
    tailscaleOAuth = {
      networking.hostName = "firebat";
      services.netd = {
        enable = true;
        policyFile = "/srv/netd/policy.yaml";
        tailnet = {
          tailnetName = "example.com";
          oauthClientId = "kXXXXXXCNTRL";
          oauthClientSecretFile = "/var/lib/secrets/netd/tailnet-oauth-client-secret";
        };
      };
    };

    # A control plane node as nixos/profiles/netd.nix configures it.
    controlPlane = {
      networking.hostName = "control-plane";
      services.netd = {
        enable = true;
        policyFile = "/etc/ducksnest/policy.yaml";
        openFirewall = true;
        kubeconfig = "/var/lib/secrets/kubernetes/netd.kubeconfig";
        metricsAddress = "0.0.0.0:9180";
      };
    };

    # The host that runs Prometheus and Grafana: netd's alert rules, the
    # scrape job `netd` the rules select, the dashboard. It need not run
    # netd itself.
    monitoring = {
      networking.hostName = "control-plane";
      services.prometheus.enable = true;
      services.grafana.enable = true;
      services.netd = {
        policyFile = "/srv/netd/policy.yaml";
        monitoring = {
          enable = true;
          scrapeTargets = [ "firebat:9180" "ultra:9180" "old:9180" "control-plane:9180" ];
        };
      };
    };

    # Not enabled: the module must define nothing.
    disabled = {
      networking.hostName = "ultra";
      services.netd.policyFile = "/srv/netd/policy.yaml";
    };
  };

  bad =
    let
      base = { enable = true; policyFile = "/p.yaml"; };
    in
    {
      logLevel = { settings.services.netd = base // { logLevel = "verbose"; }; error = "services.netd.logLevel' is not of type"; };
      stopMode = { settings.services.netd = base // { stopMode = "kill"; }; error = "services.netd.stopMode' is not of type"; };
      port = { settings.services.netd = base // { bgpPort = 70000; }; error = "services.netd.bgpPort' is not of type"; };
      relativePolicy = { settings.services.netd = base // { policyFile = "policy.yaml"; }; error = "services.netd.policyFile' is not of type"; };
      noPolicy = { settings.services.netd.enable = true; error = "services.netd.policyFile' was accessed but has no value defined"; };
      emptyNode = { settings.services.netd = base // { nodeName = ""; }; error = "services.netd.nodeName' is not of type"; };
      policyInExtraArgs = { settings.services.netd = base // { extraArgs = [ "--policy=/tmp/x" ]; }; error = "must not set --policy"; };
      typo = { settings.services.netd = base // { openFirewal = true; }; error = "services.netd.openFirewal' does not exist"; };
      bfdMultiplier = { settings.services.netd = base // { bfd.multiplier = 0; }; error = "services.netd.bfd.multiplier' is not of type"; };
      bfdInterval = { settings.services.netd = base // { bfd.interval = "100"; }; error = "services.netd.bfd.interval' is not of type"; };
      bfdIntervalZero = { settings.services.netd = base // { bfd.interval = "0ms"; }; error = "services.netd.bfd.interval' is not of type"; };
      grpcNotLoopback = { settings.services.netd = base // { grpcAddress = "0.0.0.0:50051"; }; error = "services.netd.grpcAddress' is not of type"; };
      discoverWithoutSocket = { settings.services.netd = base // { discoverPeers = true; }; error = "discoverPeers needs services.netd.tailscaleSocket"; };
      headscaleWithoutKey = { settings.services.netd = base // { tailnet.headscaleUrl = "https://hs"; }; error = "headscaleUrl takes a headscale API key"; };
      oauthHalf = { settings.services.netd = base // { tailnet.oauthClientId = "id"; }; error = "oauthClientId and oauthClientSecretFile go together"; };
      keyAndOAuth = { settings.services.netd = base // { tailnet = { apiKeyFile = "/k"; oauthClientId = "id"; oauthClientSecretFile = "/s"; }; }; error = "set apiKeyFile or the OAuth client"; };
      credentialNixPath = { settings.services.netd = base // { tailnet.apiKeyFile = ./settings.nix; }; error = "services.netd.tailnet.apiKeyFile must not be in the Nix store"; };
      kubeconfigInStore = { settings.services.netd = base // { kubeconfig = "/nix/store/00000000000000000000000000000000-kubeconfig"; }; error = "services.netd.kubeconfig must not be in the Nix store"; };
      monitoringWithoutPrometheus = { settings.services.netd = { policyFile = "/p.yaml"; monitoring.enable = true; }; error = "enable services.prometheus or services.grafana on this host"; };
      monitoringTargetURL = { settings = { services.prometheus.enable = true; services.netd = { policyFile = "/p.yaml"; monitoring = { enable = true; scrapeTargets = [ "http://firebat:9180" ]; }; }; }; error = "services.netd.monitoring.scrapeTargets.\"[definition 1-entry 1]\"' is not of type"; };
      bfdInExtraArgs = { settings.services.netd = base // { extraArgs = [ "--bfd=false" ]; }; error = "must not set --bfd=false: use services.netd.bfd.enable"; };
    };
}
