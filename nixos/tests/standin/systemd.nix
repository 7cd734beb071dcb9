# nixpkgs: nixos/modules/system/boot/systemd.nix, nixos/lib/systemd-types.nix, nixos/lib/systemd-unit-options.nix, nixos/lib/systemd-lib.nix
# Stand-in for nixpkgs' nixos/modules/system/boot/systemd.nix,
# nixos/lib/systemd-types.nix and nixos/lib/systemd-unit-options.nix:
# systemd.package, systemd.globalEnvironment, systemd.services (the
# service options of systemd-unit-options.nix with their types, minus the
# script/preStart/... job-script options and startAt) and systemd.units,
# which systemd.nix fills from systemd.services with serviceToUnit. The
# unit text is rendered by ./systemd-lib.nix.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  slib = import ./systemd-lib.nix { inherit lib; };
  inherit (slib) unitNameType unitOption;
  cfg = config.systemd;

  units = mkOption {
    default = [ ];
    type = types.listOf unitNameType;
  };

  sharedOptions = {
    enable = mkOption {
      default = true;
      type = types.bool;
    };
    name = mkOption { type = types.str; };
    overrideStrategy = mkOption {
      default = "asDropinIfExists";
      type = types.enum [
        "asDropinIfExists"
        "asDropin"
      ];
    };
    requiredBy = units;
    upheldBy = units;
    wantedBy = units;
    aliases = units;
  };

  # commonUnitOptions + stage2CommonUnitOptions + serviceOptions +
  # stage2ServiceOptions.
  serviceOptions = {
    options = sharedOptions // {
      description = mkOption {
        default = "";
        type = types.singleLineStr;
      };
      documentation = mkOption {
        default = [ ];
        type = types.listOf types.str;
      };
      requires = units;
      wants = units;
      upholds = units;
      after = units;
      before = units;
      bindsTo = units;
      partOf = units;
      conflicts = units;
      requisite = units;
      unitConfig = mkOption {
        default = { };
        type = types.attrsOf unitOption;
      };
      onFailure = units;
      onSuccess = units;
      startLimitBurst = mkOption { type = types.int; };
      startLimitIntervalSec = mkOption { type = types.int; };

      restartTriggers = mkOption {
        default = [ ];
        type = types.listOf types.unspecified;
      };
      reloadTriggers = mkOption {
        default = [ ];
        type = types.listOf unitOption;
      };

      environment = mkOption {
        default = { };
        type =
          with types;
          attrsOf (
            nullOr (oneOf [
              str
              path
              package
            ])
          );
      };
      path = mkOption {
        default = [ ];
        type =
          with types;
          listOf (oneOf [
            package
            str
          ]);
      };
      serviceConfig = mkOption {
        default = { };
        type = types.addCheck (types.attrsOf unitOption) slib.checkService;
      };

      restartIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      reloadIfChanged = mkOption {
        type = types.bool;
        default = false;
      };
      stopIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      notSocketActivated = mkOption {
        type = types.bool;
        default = false;
      };
    };
  };
in
{
  options.systemd = {
    package = lib.mkPackageOption pkgs "systemd" { };

    globalEnvironment = mkOption {
      type =
        with types;
        attrsOf (
          nullOr (oneOf [
            str
            path
            package
          ])
        );
      default = { };
    };

    services = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule [
          serviceOptions
          (slib.unitConfig { inherit pkgs; })
          (slib.stage2ServiceConfig {
            inherit pkgs;
            systemd = cfg.package;
          })
        ]
      );
    };

    units = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, config, ... }:
          {
            options = sharedOptions // {
              text = mkOption {
                type = types.nullOr types.str;
                default = null;
              };
              unit = mkOption { internal = true; };
            };
            config = {
              name = lib.mkDefault name;
              # makeUnit: a derivation holding the file (the stand-in
              # packages cannot be built; the text is what is checked).
              unit = lib.mkDefault (
                pkgs.writeText "unit-${name}" (lib.optionalString (config.text != null) config.text)
              );
            };
          }
        )
      );
    };
  };

  config.systemd.units = lib.mapAttrs' (
    n: v: lib.nameValuePair "${n}.service" (slib.serviceToUnit cfg.globalEnvironment v)
  ) cfg.services;
}
