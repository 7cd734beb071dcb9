# nixpkgs: nixos/modules/services/networking/ssh/sshd.nix
# Stand-in for nixos/modules/services/networking/ssh/sshd.nix:
# services.openssh.{enable, openFirewall, ports, settings.{PasswordAuthentication,
# PermitRootLogin}} (settings is a freeform submodule, as in nixpkgs), and
# the one line of its implementation the hosts' checks depend on: the
# SSH ports are opened on every interface when openFirewall is true.
{
  config,
  lib,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.openssh;
in
{
  options.services.openssh = {
    enable = mkOption {
      type = types.bool;
      default = false;
    };
    openFirewall = mkOption {
      type = types.bool;
      default = true;
    };
    ports = mkOption {
      type = types.listOf types.port;
      default = [ 22 ];
    };
    settings = mkOption {
      default = { };
      type = types.submodule {
        freeformType =
          with types;
          attrsOf (
            nullOr (oneOf [
              bool
              int
              str
              (listOf str)
            ])
          );
        options = {
          PasswordAuthentication = mkOption {
            type = types.nullOr types.bool;
            default = true;
          };
          PermitRootLogin = mkOption {
            default = "prohibit-password";
            type = types.nullOr (
              types.enum [
                "yes"
                "without-password"
                "prohibit-password"
                "forced-commands-only"
                "no"
              ]
            );
          };
        };
      };
    };
  };

  config = lib.mkIf cfg.enable {
    networking.firewall.allowedTCPPorts = lib.optionals cfg.openFirewall cfg.ports;
  };
}
