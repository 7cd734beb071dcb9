# nixpkgs: nixos/modules/tasks/network-interfaces.nix, nixos/modules/config/networking.nix, nixos/modules/services/networking/firewall.nix
# Stand-in for
#   nixos/modules/tasks/network-interfaces.nix   networking.hostName,
#                                                networking.interfaces.<n>.ipv4.addresses
#   nixos/modules/config/networking.nix          networking.timeServers
#   nixos/modules/services/networking/firewall.nix
#                                                networking.firewall.{enable,
#                                                checkReversePath, interfaces,
#                                                allowed{TCP,UDP}Port{s,Ranges}}
# with nixpkgs' types, defaults and apply (port lists are sorted and
# deduplicated, as nixpkgs' canonicalizePortList does).
{ lib, ... }:
let
  inherit (lib) mkOption types;

  canonicalizePortList = ports: lib.unique (builtins.sort builtins.lessThan ports);

  commonOptions = {
    allowedTCPPorts = mkOption {
      apply = canonicalizePortList;
      default = [ ];
      type = types.listOf types.port;
    };
    allowedTCPPortRanges = mkOption {
      default = [ ];
      type = types.listOf (types.attrsOf types.port);
    };
    allowedUDPPorts = mkOption {
      apply = canonicalizePortList;
      default = [ ];
      type = types.listOf types.port;
    };
    allowedUDPPortRanges = mkOption {
      default = [ ];
      type = types.listOf (types.attrsOf types.port);
    };
  };

  addrOpts = v: {
    options = {
      address = mkOption { type = types.str; };
      prefixLength = mkOption {
        type = types.addCheck types.int (n: n >= 0 && n <= (if v == 4 then 32 else 128));
      };
    };
  };
in
{
  options.networking = {
    hostName = mkOption {
      # config.system.nixos.distroId
      default = "nixos";
      type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
    };

    interfaces = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options.ipv4.addresses = mkOption {
            default = [ ];
            type = types.listOf (types.submodule (addrOpts 4));
          };
        }
      );
    };

    timeServers = mkOption {
      default = [
        "0.nixos.pool.ntp.org"
        "1.nixos.pool.ntp.org"
        "2.nixos.pool.ntp.org"
        "3.nixos.pool.ntp.org"
      ];
      type = types.listOf types.str;
    };

    firewall = {
      enable = mkOption {
        default = true;
        type = types.bool;
      };
      checkReversePath = mkOption {
        default = true;
        type = types.either types.bool (
          types.enum [
            "strict"
            "loose"
          ]
        );
      };
      interfaces = mkOption {
        default = { };
        type = types.attrsOf (types.submodule [ { options = commonOptions; } ]);
      };
    }
    // commonOptions;
  };
}
