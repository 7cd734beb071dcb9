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
        extraArgs = [ "--resync=1m" "--stop-timeout=3s" ];
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
    };
}
