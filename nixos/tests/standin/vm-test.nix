# nixpkgs: nixos/modules/services/networking/headscale.nix, nixos/modules/services/web-servers/nginx/default.nix, nixos/modules/services/web-servers/nginx/vhost-options.nix, nixos/modules/services/web-servers/nginx/location-options.nix, nixos/modules/virtualisation/qemu-vm.nix
# Stand-in for what the VM test's nodes meet besides the host modules:
#   nixos/modules/services/networking/headscale.nix
#       services.headscale.{enable, port, address, settings}; settings is
#       a freeform submodule of the YAML value type with the declared
#       server_url, dns.base_domain, derp.server.private_key_path (so
#       derp.server.enabled/region_id/stun_listen_addr are freeform, as
#       in nixpkgs)
#   nixos/modules/services/web-servers/nginx/{default,vhost-options,
#   location-options}.nix
#       services.nginx.{enable, virtualHosts.<n>.{addSSL, sslCertificate,
#       sslCertificateKey, locations.<p>.{proxyPass, proxyWebsockets}}}
#   nixos/modules/virtualisation/qemu-vm.nix
#       virtualisation.vlans
{ lib, pkgs, ... }:
let
  inherit (lib) mkOption types;
  opt = type: default: mkOption { inherit type default; };
in
{
  options = {
    services.headscale = {
      enable = lib.mkEnableOption "headscale, Open Source coordination server for Tailscale";
      package = lib.mkPackageOption pkgs "headscale" { };
      address = opt types.str "127.0.0.1";
      port = opt types.port 8080;
      settings = mkOption {
        default = { };
        type = types.submodule {
          freeformType = (pkgs.formats.yaml { }).type;
          options = {
            server_url = opt types.str "http://127.0.0.1:8080";
            dns.base_domain = opt types.str "";
            derp.server.private_key_path = opt types.path "/var/lib/headscale/derp_server_private.key";
          };
        };
      };
    };

    services.nginx = {
      enable = lib.mkEnableOption "Nginx Web Server";
      virtualHosts = mkOption {
        default = { };
        type = types.attrsOf (
          types.submodule {
            options = {
              addSSL = opt types.bool false;
              sslCertificate = mkOption { type = types.path; };
              sslCertificateKey = mkOption { type = types.path; };
              locations = mkOption {
                default = { };
                type = types.attrsOf (
                  types.submodule {
                    options = {
                      proxyPass = opt (types.nullOr types.str) null;
                      proxyWebsockets = opt types.bool false;
                    };
                  }
                );
              };
            };
          }
        );
      };
    };

    virtualisation.vlans = opt (types.listOf types.ints.unsigned) [ 1 ];
  };
}
