# Declarations, in the stub, of the few NixOS options outside services.netd
# that the netd module defines or reads, so that the module can be
# evaluated strictly (a definition of any other, undeclared option fails,
# which catches typos in option paths). Types are as loose as nixpkgs'
# where the stub has no submodules (attrsOf anything instead of submodules).
{ lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  options = {
    assertions = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    networking.hostName = mkOption { type = types.str; default = "nixos"; };
    networking.firewall.interfaces = mkOption { type = types.attrsOf types.unspecified; default = { }; };
    environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };
    environment.etc = mkOption { type = types.attrsOf types.unspecified; default = { }; };
    systemd.services = mkOption { type = types.attrsOf types.unspecified; default = { }; };
  };
}
