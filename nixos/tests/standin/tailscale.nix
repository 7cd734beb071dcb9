# nixpkgs: nixos/modules/services/networking/tailscale.nix
# Stand-in for nixos/modules/services/networking/tailscale.nix: every
# option of services.tailscale with nixpkgs' types and defaults, and the
# parts of its implementation that touch options the hosts also define:
# forwarding sysctls at priority 97 (mkOverride) for a subnet router, a
# loose reverse-path filter for a client, the WireGuard port when
# openFirewall is set. (tailscaled's own units are not rendered.)
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.tailscale;
in
{
  options.services.tailscale = {
    enable = lib.mkEnableOption "Tailscale client daemon";
    port = mkOption {
      type = types.port;
      default = 41641;
    };
    interfaceName = mkOption {
      type = types.str;
      default = "tailscale0";
    };
    permitCertUid = mkOption {
      type = types.nullOr types.nonEmptyStr;
      default = null;
    };
    disableTaildrop = mkOption {
      default = false;
      type = types.bool;
    };
    disableUpstreamLogging = mkOption {
      default = false;
      type = types.bool;
    };
    package = lib.mkPackageOption pkgs "tailscale" { };
    openFirewall = mkOption {
      default = false;
      type = types.bool;
    };
    useRoutingFeatures = mkOption {
      type = types.enum [
        "none"
        "client"
        "server"
        "both"
      ];
      default = "none";
    };
    authKeyFile = mkOption {
      type = types.nullOr types.path;
      default = null;
    };
    authKeyParameters = mkOption {
      type = types.submodule {
        options = {
          ephemeral = mkOption {
            type = types.nullOr types.bool;
            default = null;
          };
          preauthorized = mkOption {
            type = types.nullOr types.bool;
            default = null;
          };
          baseURL = mkOption {
            type = types.nullOr types.str;
            default = null;
          };
        };
      };
      default = { };
    };
    extraUpFlags = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    extraSetFlags = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    extraDaemonFlags = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];
    boot.kernel.sysctl = lib.mkIf (cfg.useRoutingFeatures == "server" || cfg.useRoutingFeatures == "both") {
      "net.ipv4.conf.all.forwarding" = lib.mkOverride 97 true;
      "net.ipv6.conf.all.forwarding" = lib.mkOverride 97 true;
    };
    networking.firewall.allowedUDPPorts = lib.mkIf cfg.openFirewall [ cfg.port ];
    networking.firewall.checkReversePath = lib.mkIf (
      cfg.useRoutingFeatures == "client" || cfg.useRoutingFeatures == "both"
    ) "loose";
  };
}
