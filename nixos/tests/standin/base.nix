# nixpkgs: nixos/modules/misc/assertions.nix, nixos/modules/misc/meta.nix, nixos/modules/misc/version.nix, nixos/modules/system/activation/top-level.nix, nixos/modules/config/system-path.nix, nixos/modules/system/etc/etc.nix, nixos/modules/config/locale.nix, nixos/modules/config/i18n.nix, nixos/modules/misc/documentation.nix, nixos/modules/config/nix.nix, nixos/modules/security/ca.nix, nixos/modules/system/boot/systemd/journald.nix
# Stand-in for the core of a NixOS system that every configuration meets:
#   nixos/modules/misc/assertions.nix       assertions, warnings
#   nixos/modules/misc/meta.nix             meta.maintainers
#   nixos/modules/misc/version.nix          system.stateVersion
#   nixos/modules/system/activation/top-level.nix
#                                           system.build (toplevel fails on
#                                           failed assertions, like NixOS)
#   nixos/modules/config/system-path.nix    environment.systemPackages
#   nixos/modules/system/etc/etc.nix        environment.etc
#   nixos/modules/config/locale.nix         time.timeZone; TZDIR for every
#                                           unit (systemd.globalEnvironment)
#   nixos/modules/config/i18n.nix           LOCALE_ARCHIVE for every unit,
#                                           from i18n.glibcLocales' default
#   nixos/modules/misc/documentation.nix    documentation.enable
#   nixos/modules/config/nix.nix            nix.settings
#   nixos/modules/security/ca.nix           security.pki.certificateFiles
#   nixos/modules/system/boot/systemd/journald.nix
#                                           services.journald.extraConfig
{
  config,
  options,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;

  # nix.nix: the values of nix.settings.
  confAtom =
    with types;
    nullOr (oneOf [
      bool
      int
      float
      str
      path
      package
    ])
    // {
      description = "Nix config atom (null, bool, int, float, str, path or package)";
    };
  semanticConfType = with types; attrsOf (either confAtom (listOf confAtom));

  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);

  # Building a NixOS system evaluates every option a module defines (the
  # implementations read them): here, every option with a definition
  # above the declaration's default (priority 1500) is evaluated with its
  # type checks and merge, deeply (a package only down to its path). In a
  # submodule (found through the option's valueMeta) the same rule holds
  # for its own options, so a sub-option left unset is not read, as in
  # NixOS, and a wrong one is an error.
  force =
    v:
    if lib.isDerivation v then
      builtins.seq v.outPath true
    else if builtins.isAttrs v then
      lib.all force (builtins.attrValues v)
    else if builtins.isList v then
      lib.all force v
    else
      builtins.seq v true;
  forceMeta =
    meta: v:
    if meta ? configuration then
      forceConfiguration meta.configuration
    else if meta ? attrs then
      lib.all (n: forceMeta meta.attrs.${n} v.${n}) (builtins.attrNames meta.attrs)
    else if meta ? list then
      lib.all (p: forceMeta p.fst p.snd) (lib.zipLists meta.list v)
    else
      force v;
  forceOption = o: o.highestPrio >= 1500 || builtins.seq o.value (forceMeta (o.valueMeta or { }) o.value);
  forceConfiguration =
    conf:
    let
      declared = builtins.removeAttrs conf.options [ "_module" ];
    in
    lib.all forceOption (lib.collect lib.isOption declared)
    # freeform attributes (nix.settings, sysctls)
    && force (builtins.removeAttrs conf.config (builtins.attrNames declared ++ [ "_module" ]));
  defined = lib.collect lib.isOption (
    builtins.removeAttrs options [ "_module" ]
    // {
      system = builtins.removeAttrs options.system [ "build" ];
    }
  );
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      internal = true;
      default = [ ];
    };
    warnings = mkOption {
      internal = true;
      default = [ ];
      type = types.listOf types.str;
    };

    # meta.nix's own list type merges per file; a plain list here.
    meta.maintainers = mkOption {
      type = types.listOf types.raw;
      internal = true;
      default = [ ];
    };

    system.stateVersion = mkOption {
      type = types.str;
      default = "26.05";
    };

    system.build = mkOption {
      internal = true;
      default = { };
      type = types.submoduleWith {
        modules = [ { freeformType = with types; lazyAttrsOf (uniq unspecified); } ];
      };
    };

    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };

    environment.etc = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          {
            name,
            config,
            options,
            ...
          }:
          {
            options = {
              enable = mkOption {
                type = types.bool;
                default = true;
              };
              target = mkOption { type = types.str; };
              text = mkOption {
                default = null;
                type = types.nullOr types.lines;
              };
              source = mkOption { type = types.path; };
              mode = mkOption {
                type = types.str;
                default = "symlink";
              };
            };
            config = {
              target = lib.mkDefault name;
              source = lib.mkIf (config.text != null) (
                let
                  name' = "etc-" + lib.replaceStrings [ "/" ] [ "-" ] name;
                in
                lib.mkDerivedConfig options.text (pkgs.writeText name')
              );
            };
          }
        )
      );
    };

    time.timeZone = mkOption {
      default = null;
      type = types.nullOr (types.addCheck types.str (str: !lib.hasInfix " " str));
    };

    documentation.enable = mkOption {
      type = types.bool;
      default = true;
    };

    nix.settings = mkOption {
      type = types.submodule {
        freeformType = semanticConfType;
        options = {
          max-jobs = mkOption {
            type = types.either types.int (types.enum [ "auto" ]);
            default = "auto";
          };
          cores = mkOption {
            type = types.int;
            default = 0;
          };
        };
      };
      default = { };
    };

    security.pki.certificateFiles = mkOption {
      type = types.listOf types.path;
      default = [ ];
    };

    services.journald.extraConfig = mkOption {
      default = "";
      type = types.lines;
    };
  };

  config = {
    # locale.nix: "This way services are restarted when tzdata changes."
    systemd.globalEnvironment.TZDIR = "${pkgs.tzdata}/share/zoneinfo";
    # i18n.nix, with i18n.supportedLocales' default (not empty).
    systemd.globalEnvironment.LOCALE_ARCHIVE = "${pkgs.glibcLocales}/lib/locale/locale-archive";

    system.build.toplevel =
      if failed != [ ] then
        throw "\nFailed assertions:\n${lib.concatMapStrings (m: "- ${m}\n") failed}"
      else
        builtins.seq (lib.all forceOption defined) (
          pkgs.writeText "nixos-system-${config.networking.hostName}" ""
        );
  };
}
