# nixpkgs: nixos/modules/services/monitoring/prometheus/default.nix
# Stand-in for nixos/modules/services/monitoring/prometheus/default.nix:
# services.prometheus.{enable, rules, ruleFiles, scrapeConfigs} with
# nixpkgs' types and defaults; of a scrape config, job_name (required),
# scrape_interval and metrics_path (nixpkgs' mkOpt/mkDefOpt: null unless
# set) and static_configs ({targets, labels}). What
# services.netd.monitoring sets. (Prometheus' own unit is not rendered.)
{ lib, ... }:
let
  inherit (lib) mkOption types;
  mkOpt =
    type: description:
    mkOption {
      type = types.nullOr type;
      default = null;
      inherit description;
    };
  static_config = types.submodule {
    options = {
      targets = mkOption {
        type = types.listOf types.str;
        description = "The targets specified by the target group.";
      };
      labels = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Labels assigned to all metrics scraped from the targets.";
      };
    };
  };
  scrape_config = types.submodule {
    options = {
      job_name = mkOption {
        type = types.str;
        description = "The job name assigned to scraped metrics by default.";
      };
      scrape_interval = mkOpt types.str "How frequently to scrape targets from this job. Defaults to the globally configured default.";
      metrics_path = mkOpt types.str "The HTTP resource path on which to fetch metrics from targets.";
      static_configs = mkOpt (types.listOf static_config) "List of labeled target groups for this job.";
    };
  };
in
{
  options.services.prometheus = {
    enable = lib.mkEnableOption "Prometheus monitoring daemon";
    rules = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Alerting and/or Recording rules to evaluate at runtime.";
    };
    ruleFiles = mkOption {
      type = types.listOf types.path;
      default = [ ];
      description = "Any additional rules files to include in this configuration.";
    };
    scrapeConfigs = mkOption {
      type = types.listOf scrape_config;
      default = [ ];
      description = "A list of scrape configurations.";
    };
  };
}
