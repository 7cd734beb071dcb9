{
  description = "ducksnest netd: the cluster network daemon, its NixOS module, and the homelab's hosts";

  # One input. The NixOS release must ship Go >= 1.26 (go.mod says go 1.26.0).
  # flake.lock is created by the first `nix flake lock` on a machine with
  # network access (see nixos/README.md: it could not be created offline).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

      # Version from git: the short commit, or "dirty" for a tree with
      # uncommitted changes (nix >= 2.17 also offers dirtyShortRev).
      version = "0.1.0+${self.shortRev or self.dirtyShortRev or "dirty"}";

      hosts = [ "firebat" "ultra" "old" "control-plane" ];
      hostSystem = "x86_64-linux";
    in
    {
      overlays.default = final: _prev: {
        netd = final.callPackage ./nixos/package.nix { inherit version; src = ./.; };
      };

      packages = forAllSystems (
        _system: pkgs: rec {
          netd = pkgs.callPackage ./nixos/package.nix { inherit version; src = ./.; };
          default = netd;
        }
      );

      # services.netd. The module takes its default package from pkgs.netd,
      # which the overlay provides.
      nixosModules = rec {
        netd = {
          imports = [ ./nixos/modules/netd.nix ];
          nixpkgs.overlays = [ self.overlays.default ];
        };
        default = netd;
      };

      nixosConfigurations = lib.genAttrs hosts (
        name:
        lib.nixosSystem {
          system = hostSystem;
          modules = [
            self.nixosModules.netd
            ./nixos/hosts/${name}.nix
          ];
        }
      );

      checks = forAllSystems (
        system: pkgs:
        {
          netd = self.packages.${system}.netd;
          # The multi-node VM test: headscale + three nodes with tailscaled
          # and netd from the module (nixos/tests/vm-netd.nix).
          vm-netd = pkgs.testers.runNixOSTest (import ./nixos/tests/vm-netd.nix { inherit self; });
          # The module evaluated in a whole real NixOS for every case of
          # nixos/tests/eval/settings.nix: the unit NixOS renders must equal
          # the golden files that nixos/check.sh renders offline with the
          # stand-ins (nixos/tests/standin), plus systemd-analyze security.
          module-eval = import ./nixos/tests/module-eval.nix { inherit self nixpkgs pkgs; };
        }
        # Every host must evaluate to a system (the toplevel build).
        // lib.optionalAttrs (system == hostSystem) (
          lib.mapAttrs' (n: c: lib.nameValuePair "host-${n}" c.config.system.build.toplevel) self.nixosConfigurations
        )
      );

      devShells = forAllSystems (
        _system: pkgs: {
          default = pkgs.mkShell {
            packages = [
              pkgs.go
              pkgs.gopls
              pkgs.golangci-lint
              pkgs.nixfmt
              pkgs.openssl
              pkgs.kubectl
              pkgs.calicoctl
              pkgs.tailscale
              pkgs.headscale
              pkgs.gobgp
              # OpenTofu rather than Terraform: terraform is unfree (BSL) and
              # would need allowUnfree to evaluate.
              pkgs.opentofu
            ];
          };
        }
      );

      formatter = forAllSystems (_system: pkgs: pkgs.nixfmt);
    };
}
