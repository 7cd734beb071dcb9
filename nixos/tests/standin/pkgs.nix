# Stand-in for the nixpkgs package set: every package the configurations
# name, none of them buildable. Two flavours:
#
#   fixed = true   each package is a plain attribute set with
#                  type = "derivation" and a fixed fake store path
#                  /nix/store/<hash of its name>-<name>: nothing is
#                  instantiated, strings carry no context, and the store
#                  paths in rendered units are stable (check.sh maps them
#                  to @name@ placeholders).
#   fixed = false  each package is a real derivation whose builder fails
#                  ("cannot be built offline"): what `nix flake show`
#                  and the flake's outputs need.
#
# Functions: callPackage, buildGoModule (keeps the attributes the flake
# checks: pname, version, vendorHash, subPackages, src, meta), writeText,
# runCommand, mkShell, formats.{json,yaml} (the value type of
# pkgs/pkgs-lib/formats.nix), testers.runNixOSTest (./test-driver.nix).
{
  lib,
  system,
  fixed ? true,
  # nixosSystem, for testers.runNixOSTest.
  nixosSystem ? null,
}:
let
  b = builtins;

  # 32 characters of the nix-base32 alphabet (no e, o, t, u).
  fakeHash = s: b.substring 0 32 (b.replaceStrings [ "e" ] [ "z" ] (b.hashString "sha256" s));

  unbuildable =
    name: attrs:
    if fixed then
      {
        type = "derivation";
        inherit name system;
        outPath = "/nix/store/${fakeHash (name + b.toJSON (attrs.text or ""))}-${name}";
        outputs = [ "out" ];
        drvPath = "/nix/store/${fakeHash name}-${name}.drv";
      }
      // attrs
    else
      derivation {
        inherit name system;
        builder = "/bin/sh";
        args = [
          "-c"
          "echo 'nixpkgs stand-in: ${name} cannot be built offline' >&2; exit 1"
        ];
      }
      // attrs;

  pkg =
    name:
    unbuildable name {
      pname = name;
      meta.mainProgram = name;
    };

  names = [
    "bash"
    "calico-cni-plugin"
    "calicoctl"
    "cni-plugin-flannel"
    "cni-plugins"
    "coreutils"
    "curl"
    "etcd"
    "findutils"
    "gnugrep"
    "gnused"
    "go"
    "gobgp"
    "golangci-lint"
    "gopls"
    "headscale"
    "installShellFiles"
    "iproute2"
    "jq"
    "kubectl"
    "kubernetes"
    "nginx"
    "nixfmt"
    "openssh"
    "openssl"
    "opentofu"
    "systemd"
    "tailscale"
    "tzdata"
  ];

  # pkgs/pkgs-lib/formats.nix: the value type of json and yaml.
  jsonValue =
    with lib.types;
    let
      valueType =
        nullOr (oneOf [
          bool
          int
          float
          str
          path
          (attrsOf valueType)
          (listOf valueType)
        ])
        // {
          description = "JSON value";
        };
    in
    valueType;

  self =
    lib.genAttrs names pkg
    // {
      inherit system lib;
      # i18n.glibcLocales' default (a glibcLocales override): its store
      # name is glibc-locales-<version>.
      glibcLocales = pkg "glibc-locales";
      # Not in nixpkgs: makes one more package of this kind.
      standinPackage = pkg;
      stdenv.hostPlatform.system = system;
      # nixos/package.nix: shell completions only where the build runs the binary.
      stdenv.buildPlatform.canExecute = _: true;

      callPackage =
        fn: overrides:
        let
          f = if b.isFunction fn then fn else import fn;
        in
        f (b.intersectAttrs (b.functionArgs f) self // overrides);

      buildGoModule =
        args:
        unbuildable "${args.pname}-${args.version}" {
          inherit (args)
            pname
            version
            vendorHash
            subPackages
            src
            ;
          meta = args.meta or { };
        };

      writeText = name: text: unbuildable name { inherit text; };
      runCommand = name: env: script: unbuildable name { inherit env script; };
      mkShell = args: unbuildable "nix-shell" { packages = args.packages or [ ]; };

      formats = {
        json = _: { type = jsonValue; };
        yaml = _: { type = jsonValue; };
      };

      testers.runNixOSTest = import ./test-driver.nix {
        inherit lib nixosSystem system;
        pkgs = self;
        inherit unbuildable;
      };
    };
in
self
