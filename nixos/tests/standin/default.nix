# A stand-in for the parts of nixpkgs outside `lib` that nixos/ needs, for
# nixos/check.sh (no nixpkgs, no network on the project machines). `lib`
# is the real nixpkgs lib (../shared/nixpkgs-lib): the module system, the
# option types, merging, priorities and assertions are nixpkgs' own. What
# is stood in for:
#
#   - the NixOS option declarations the netd module, the four hosts and
#     the VM test's nodes use, each declared with nixpkgs' type and
#     default in a file named after the nixpkgs module it mirrors (the
#     header of each file says which); nothing else is declared, so a
#     misspelt option or a wrong type fails evaluation as in NixOS;
#   - the few lines of nixpkgs' implementations whose definitions meet the
#     hosts' own (listed in each file's header);
#   - systemd's unit rendering (./systemd-lib.nix), byte for byte;
#   - lib.nixosSystem (nixos/lib/eval-config.nix), runNixOSTest and the
#     package set (./pkgs.nix: nothing can be built).
#
# nixos/check.sh prints every stand-in declaration with its file.
{ lib }:
let
  standinModules = [
    ./base.nix
    ./boot.nix
    ./etcd.nix
    ./grafana.nix
    ./kubernetes.nix
    ./networking.nix
    ./openssh.nix
    ./prometheus.nix
    ./systemd.nix
    ./tailscale.nix
    ./vm-test.nix
  ];

  pkgsFor =
    {
      system,
      fixed ? true,
    }:
    import ./pkgs.nix {
      inherit lib system fixed;
      nixosSystem = nixosSystemWith fixed;
    };

  # lib.nixosSystem / nixos/lib/eval-config.nix, for the configurations
  # here: the stand-in modules first, then the configuration's.
  nixosSystemWith =
    fixed:
    {
      system ? "x86_64-linux",
      modules,
      specialArgs ? { },
      # A package set to start from instead of pkgs.nix (the module cases
      # add a netd package to it).
      pkgs ? null,
      # The nodes of a NixOS test: pkgs is read-only.
      readOnlyPkgs ? false,
    }:
    let
      base = if pkgs != null then pkgs else pkgsFor { inherit system fixed; };
    in
    lib.evalModules {
      class = "nixos";
      specialArgs = {
        modulesPath = ./modules;
      }
      // specialArgs;
      modules =
        standinModules
        ++ [
          (lib.setDefaultModuleLocation ./nixpkgs.nix (
            import ./nixpkgs.nix {
              inherit lib base;
              readOnly = readOnlyPkgs;
            }
          ))
        ]
        ++ modules;
    };
in
{
  inherit standinModules pkgsFor;
  nixosSystem = nixosSystemWith true;
  # What the flake's `nixpkgs` input is replaced with (./flake.nix).
  flakeOutputs = {
    lib = lib // {
      nixosSystem = nixosSystemWith false;
    };
    legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (
      system: pkgsFor {
        inherit system;
        fixed = false;
      }
    );
  };
}
