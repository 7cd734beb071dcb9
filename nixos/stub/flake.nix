# An offline stand-in for the nixpkgs flake, for nixos/check.sh only:
#
#   nix flake show --override-input nixpkgs path:<copy of nixos/stub> ...
#
# It lets the ducksnest flake's outputs be evaluated with Debian's nix-bin
# 2.8 and no network: lib is ./lib.nix, nixosSystem is ./eval.nix in lax
# mode (options declared by nixpkgs' own modules are absent, so their
# definitions are merged as plain data), and every package is a derivation
# that cannot be built ("stub nixpkgs: not buildable"). Nothing evaluated
# through it is ever built or deployed; real builds use the real nixpkgs.
{
  description = "offline stub of nixpkgs (evaluation only, nothing builds)";

  outputs =
    { self }:
    let
      b = builtins;
      baseLib = import ./lib.nix;
      systems = [ "x86_64-linux" "aarch64-linux" ];

      unbuildable = system: name: extra:
        derivation {
          inherit name system;
          builder = "/bin/sh";
          args = [ "-c" "echo 'stub nixpkgs: ${name} is not buildable offline' >&2; exit 1" ];
        }
        // extra;

      mkPkgs = system:
        let
          pkg = name: unbuildable system name { pname = name; meta.mainProgram = name; };
          names = [
            "bash" "coreutils" "go" "gopls" "golangci-lint" "nixfmt" "openssl" "kubectl"
            "calicoctl" "tailscale" "headscale" "gobgp" "opentofu" "cni-plugins" "calico-cni-plugin"
            "iproute2" "iputils" "jq" "nix" "systemd" "python3" "curl" "kubernetes" "etcd"
          ];
          plain = b.listToAttrs (map (n: { name = n; value = pkg n; }) names);
        in
        plain
        // rec {
          inherit system;
          stdenv.hostPlatform.system = system;
          callPackage = fn: overrides:
            let f = if b.isFunction fn then fn else import fn;
            in f (b.intersectAttrs (b.functionArgs f) (pkgsFor system // { lib = self.lib; }) // overrides);
          buildGoModule = args:
            unbuildable system "${args.pname}-${args.version}" {
              inherit (args) pname version vendorHash subPackages;
              meta = args.meta or { };
            };
          writeText = name: text: unbuildable system name { inherit text; };
          runCommand = name: _env: script: unbuildable system name { inherit script; };
          mkShell = args: unbuildable system "nix-shell" { packages = args.packages or [ ]; };
          testers.runNixOSTest = test:
            let
              t = if b.isFunction test then test { pkgs = pkgsFor system; lib = self.lib; } else test;
              nodes = b.mapAttrs (n: m: (nixosSystemWith system [ m t.defaults or { } { networking.hostName = baseLib.mkDefault n; } ]).config) t.nodes;
            in
            unbuildable system "vm-test-run-${t.name}" { inherit nodes; testScript = t.testScript; };
        };

      pkgsFor = system: mkPkgs system;

      applyOverlays = base: overlays:
        let final = b.foldl' (prev: ov: prev // ov final prev) base overlays; in final;

      # Stand-in for nixpkgs' lib.nixosSystem: lax module evaluation, pkgs
      # with the configuration's own overlays applied (as nixpkgs does),
      # failed assertions abort the "toplevel" like in NixOS.
      nixosSystemWith = system: modules:
        let
          r = baseLib.evalModules {
            strict = false;
            modules = modules ++ [
              ({ config, ... }: {
                system.build.toplevel =
                  let failed = map (a: a.message) (b.filter (a: !a.assertion) (config.assertions or [ ]));
                  in if failed != [ ] then throw "Failed assertions:\n- ${b.concatStringsSep "\n- " failed}"
                     else unbuildable system "nixos-system-${config.networking.hostName}" { };
              })
            ];
            specialArgs = {
              modulesPath = ./modules;
              pkgs = applyOverlays (pkgsFor system) (r.config.nixpkgs.overlays or [ ]);
            };
          };
        in
        r // { _type = "configuration"; };
    in
    {
      lib = baseLib // {
        nixosSystem = { system, modules, specialArgs ? { } }:
          if specialArgs != { } then throw "stub nixosSystem: specialArgs not supported" else nixosSystemWith system modules;
      };
      legacyPackages = baseLib.genAttrs systems mkPkgs;
    };
}
