# nixpkgs: nixos/modules/services/monitoring/grafana.nix
# Stand-in for nixos/modules/services/monitoring/grafana.nix:
# services.grafana.{enable, provision.enable, provision.dashboards} with
# nixpkgs' types and defaults (dashboards: a path or settings with
# apiVersion and providers, each provider nixpkgs' dashboardConfig:
# options.path required, name "default", type "file", the rest freeform
# YAML), and the assertion of its implementation that meets what
# services.netd.monitoring sets: dashboards by path and by settings
# exclude each other. (Grafana's own unit is not rendered.)
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.grafana;
  provisioningSettingsFormat = pkgs.formats.yaml { };
  dashboardConfig = types.submodule {
    options = {
      options.path = mkOption {
        description = "Path grafana will watch for dashboards. Required when using the 'file' type.";
        type = types.path;
      };
      name = mkOption {
        default = "default";
        description = "A unique provider name.";
        type = types.str;
      };
      type = mkOption {
        default = "file";
        description = "Dashboard provider type.";
        type = types.str;
      };
    };
    freeformType = provisioningSettingsFormat.type;
  };
in
{
  options.services.grafana = {
    enable = lib.mkEnableOption "grafana";
    provision = {
      enable = lib.mkEnableOption "provision";
      dashboards = mkOption {
        default = { };
        description = "Declaratively provision Grafana's dashboards.";
        type = types.submodule {
          options.path = mkOption {
            default = null;
            description = "Path to YAML dashboard configuration.";
            type = types.nullOr types.path;
          };
          options.settings = mkOption {
            default = null;
            description = "Grafana dashboard configuration in Nix.";
            type = types.nullOr (
              types.submodule {
                options.apiVersion = mkOption {
                  default = 1;
                  description = "Config file version.";
                  type = types.int;
                };
                options.providers = mkOption {
                  default = [ ];
                  description = "List of dashboards to insert/update.";
                  type = types.listOf dashboardConfig;
                };
              }
            );
          };
        };
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.provision.dashboards.settings == null || cfg.provision.dashboards.path == null;
        message = "Cannot set both dashboards settings and dashboards path";
      }
    ];
  };
}
