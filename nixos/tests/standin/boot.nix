# nixpkgs: nixos/modules/config/sysctl.nix, nixos/modules/system/boot/tmp.nix, nixos/modules/system/boot/loader/systemd-boot/systemd-boot.nix, nixos/modules/system/boot/loader/efi.nix, nixos/modules/tasks/filesystems.nix, nixos/modules/config/swap.nix, nixos/modules/config/zram.nix, nixos/modules/hardware/cpu/intel-microcode.nix
# Stand-in for the boot, storage and hardware options the hosts set:
#   nixos/modules/config/sysctl.nix          boot.kernel.sysctl (the
#                                            freeform submodule with
#                                            nixpkgs' "sysctl option value"
#                                            type: two definitions of one
#                                            key at one priority are an
#                                            error, as in NixOS)
#   nixos/modules/system/boot/tmp.nix        boot.tmp.useTmpfs
#   nixos/modules/system/boot/loader/systemd-boot/systemd-boot.nix
#                                            boot.loader.systemd-boot.enable
#   nixos/modules/system/boot/loader/efi.nix boot.loader.efi.canTouchEfiVariables
#   nixos/modules/tasks/filesystems.nix      fileSystems.<path>.{device,fsType,autoResize}
#   nixos/modules/config/swap.nix            swapDevices
#   nixos/modules/config/zram.nix            zramSwap.enable
#   nixos/modules/hardware/cpu/intel-microcode.nix
#                                            hardware.cpu.intel.updateMicrocode
{ lib, ... }:
let
  inherit (lib) mkOption types;

  sysctlOption = lib.mkOptionType {
    name = "sysctl option value";
    check =
      val:
      let
        checkType = x: lib.isBool x || lib.isString x || lib.isInt x || x == null;
      in
      checkType val || (val._type or "" == "override" && checkType val.content);
    merge = loc: defs: lib.mergeOneOption loc (lib.filterOverrides defs);
  };

  highestValueType = types.ints.unsigned // {
    merge =
      loc: defs:
      lib.foldl (a: b: if b.value == null then null else lib.max a b.value) 0 (lib.filterOverrides defs);
  };
in
{
  options = {
    boot.kernel.sysctl = mkOption {
      type = types.submodule {
        freeformType = types.attrsOf sysctlOption;
        options = {
          "net.core.rmem_max" = mkOption {
            type = types.nullOr highestValueType;
            default = null;
          };
          "net.core.wmem_max" = mkOption {
            type = types.nullOr highestValueType;
            default = null;
          };
        };
      };
      default = { };
    };

    boot.tmp.useTmpfs = mkOption {
      type = types.bool;
      default = false;
    };

    boot.loader.systemd-boot.enable = mkOption {
      default = false;
      type = types.bool;
    };

    boot.loader.efi.canTouchEfiVariables = mkOption {
      default = false;
      type = types.bool;
    };

    fileSystems = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              mountPoint = mkOption {
                type = types.str;
                default = name;
              };
              device = mkOption {
                default = null;
                type = types.nullOr types.nonEmptyStr;
              };
              fsType = mkOption {
                default = "auto";
                type = types.nonEmptyStr;
              };
              autoResize = mkOption {
                default = false;
                type = types.bool;
              };
            };
          }
        )
      );
    };

    swapDevices = mkOption {
      default = [ ];
      type = types.listOf (
        types.submodule {
          options.device = mkOption { type = types.nonEmptyStr; };
        }
      );
    };

    zramSwap.enable = mkOption {
      default = false;
      type = types.bool;
    };

    hardware.cpu.intel.updateMicrocode = mkOption {
      default = false;
      type = types.bool;
    };
  };
}
