# nixpkgs: nixos/modules/services/misc/etcd.nix
# Stand-in for nixos/modules/services/misc/etcd.nix (services.etcd):
# every option with nixpkgs' types and defaults; the unit is not rendered.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.etcd;
  opt = type: default: mkOption { inherit type default; };
  strs = types.listOf types.str;
  nullPath = opt (types.nullOr types.path) null;
in
{
  options.services.etcd = {
    enable = opt types.bool false;
    package = lib.mkPackageOption pkgs "etcd" { };
    name = opt types.str config.networking.hostName;
    advertiseClientUrls = opt strs cfg.listenClientUrls;
    listenClientUrls = opt strs [ "http://127.0.0.1:2379" ];
    listenPeerUrls = opt strs [ "http://127.0.0.1:2380" ];
    initialAdvertisePeerUrls = opt strs cfg.listenPeerUrls;
    initialCluster = opt strs [ "${cfg.name}=http://127.0.0.1:2380" ];
    initialClusterState = opt (types.enum [
      "new"
      "existing"
    ]) "new";
    initialClusterToken = opt types.str "etcd-cluster";
    discovery = opt types.str "";
    clientCertAuth = opt types.bool false;
    trustedCaFile = nullPath;
    certFile = nullPath;
    keyFile = nullPath;
    openFirewall = opt types.bool false;
    peerCertFile = opt (types.nullOr types.path) cfg.certFile;
    peerKeyFile = opt (types.nullOr types.path) cfg.keyFile;
    peerTrustedCaFile = opt (types.nullOr types.path) cfg.trustedCaFile;
    peerClientCertAuth = opt types.bool false;
    extraConf = opt (types.attrsOf types.str) { };
    dataDir = opt types.path "/var/lib/etcd";
  };
}
