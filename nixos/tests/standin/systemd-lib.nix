# Stand-in for the unit rendering of nixpkgs' nixos/lib/systemd-lib.nix
# (attrsToSection, commonUnitText, serviceToUnit, the unitConfig and
# serviceConfig submodule parts) and the option types of
# nixos/lib/systemd-unit-options.nix (unitOption, checkService,
# unitNameType). Mirrors nixpkgs as read in June 2026 (systemd-lib.nix at
# 013635633ffe, where serviceToUnit takes the unit definition only and
# writes [Install] WantedBy=). Only the parts services need; timers,
# sockets, mounts, job scripts are not mirrored.
#
# Written for nixos/check.sh: the unit text it renders is what the next
# steps (systemd-analyze, the lab, a systemd container) run, so it must
# equal NixOS's byte for byte. The flake check `module-eval` compares it
# with the real nixpkgs rendering where nixpkgs is available.
{ lib }:
let
  inherit (lib)
    any
    attrNames
    concatLists
    concatMap
    concatMapStrings
    concatStrings
    concatStringsSep
    const
    elem
    flatten
    isList
    isPath
    mapAttrs
    mapAttrsToList
    mergeEqualOption
    mkOptionType
    optional
    optionalAttrs
    optionalString
    pipe
    stringLength
    toList
    trace
    types
    ;
in
rec {
  # A unit name: what after/wants/wantedBy... accept.
  unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";

  # One value in a [Unit]/[Service] section: lists are repeated keys.
  unitOption = mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if any (def: isList def.value) defs' then
        concatMap (def: toList def.value) defs'
      else
        mergeEqualOption loc defs';
  };

  assertValueOneOf =
    name: values: group: attr:
    optional (
      attr ? ${name} && !elem attr.${name} values
    ) "Systemd ${group} field `${name}' cannot have value `${toString attr.${name}}'.";

  checkUnitConfig =
    group: checks: attrs:
    let
      # Applied at the top-level type (attrsOf unitOption): values may
      # still be mkOverride/mkIf wrappers.
      defs = mapAttrs (const (
        v:
        if v._type or "" == "override" then
          v.content
        else if v._type or "" == "if" then
          v.content
        else
          v
      )) attrs;
      errors = concatMap (c: c group defs) checks;
    in
    if errors == [ ] then true else trace (concatStringsSep "\n" errors) false;

  checkService = checkUnitConfig "Service" [
    (assertValueOneOf "Type" [
      "exec"
      "simple"
      "forking"
      "oneshot"
      "dbus"
      "notify"
      "notify-reload"
      "idle"
    ])
    (assertValueOneOf "Restart" [
      "no"
      "on-success"
      "on-failure"
      "on-abnormal"
      "on-abort"
      "always"
    ])
  ];

  toOption =
    x:
    if x == true then
      "true"
    else if x == false then
      "false"
    else
      toString x;

  attrsToSection =
    as:
    concatStrings (
      concatLists (
        mapAttrsToList (
          name: value:
          map (x: ''
            ${name}=${toOption x}
          '') (if isList value then value else [ value ])
        ) as
      )
    );

  # The [Unit] keys computed from the dependency options (submodule part).
  unitConfig =
    { pkgs }:
    {
      config,
      options,
      name,
      ...
    }:
    {
      config.unitConfig =
        optionalAttrs (config.requires != [ ]) { Requires = toString config.requires; }
        // optionalAttrs (config.wants != [ ]) { Wants = toString config.wants; }
        // optionalAttrs (config.upholds != [ ]) { Upholds = toString config.upholds; }
        // optionalAttrs (config.after != [ ]) { After = toString config.after; }
        // optionalAttrs (config.before != [ ]) { Before = toString config.before; }
        // optionalAttrs (config.bindsTo != [ ]) { BindsTo = toString config.bindsTo; }
        // optionalAttrs (config.partOf != [ ]) { PartOf = toString config.partOf; }
        // optionalAttrs (config.conflicts != [ ]) { Conflicts = toString config.conflicts; }
        // optionalAttrs (config.requisite != [ ]) { Requisite = toString config.requisite; }
        // optionalAttrs (config ? restartTriggers && config.restartTriggers != [ ]) {
          X-Restart-Triggers = "${pkgs.writeText "X-Restart-Triggers-${name}" (
            pipe config.restartTriggers [
              flatten
              (map (x: if isPath x then "${x}" else x))
              toString
            ]
          )}";
        }
        // optionalAttrs (config ? reloadTriggers && config.reloadTriggers != [ ]) {
          X-Reload-Triggers = "${pkgs.writeText "X-Reload-Triggers-${name}" (
            pipe config.reloadTriggers [
              flatten
              (map (x: if isPath x then "${x}" else x))
              toString
            ]
          )}";
        }
        // optionalAttrs (config.description != "") { Description = config.description; }
        // optionalAttrs (config.documentation != [ ]) { Documentation = toString config.documentation; }
        // optionalAttrs (config.onFailure != [ ]) { OnFailure = toString config.onFailure; }
        // optionalAttrs (config.onSuccess != [ ]) { OnSuccess = toString config.onSuccess; }
        // optionalAttrs options.startLimitIntervalSec.isDefined {
          StartLimitIntervalSec = toString config.startLimitIntervalSec;
        }
        // optionalAttrs options.startLimitBurst.isDefined {
          StartLimitBurst = toString config.startLimitBurst;
        };
    };

  # The unit's name and its PATH (submodule part; stage 2 adds the
  # default path of every service).
  serviceConfig =
    { name, config, ... }:
    {
      config = {
        name = "${name}.service";
        environment.PATH = lib.mkIf (
          config.path != [ ]
        ) "${lib.makeBinPath config.path}:${lib.makeSearchPathOutput "bin" "sbin" config.path}";
      };
    };

  stage2ServiceConfig =
    { systemd, pkgs }:
    {
      imports = [ serviceConfig ];
      # Default path for systemd services. Should be quite minimal.
      config.path = lib.mkAfter [
        pkgs.coreutils
        pkgs.findutils
        pkgs.gnugrep
        pkgs.gnused
        systemd
      ];
    };

  commonUnitText =
    def: lines:
    ''
      [Unit]
      ${attrsToSection def.unitConfig}
    ''
    + lines
    + optionalString (def.wantedBy != [ ]) ''

      [Install]
      WantedBy=${concatStringsSep " " def.wantedBy}
    '';

  serviceToUnit =
    globalEnvironment: def: {
      inherit (def)
        name
        aliases
        wantedBy
        requiredBy
        upheldBy
        enable
        overrideStrategy
        ;
      text = commonUnitText def (
        ''
          [Service]
        ''
        + (
          let
            env = globalEnvironment // def.environment;
          in
          concatMapStrings (
            n:
            let
              s = optionalString (env.${n} != null) "Environment=${builtins.toJSON "${n}=${env.${n}}"}\n";
            in
            if stringLength s >= 1048576 then
              throw "The value of the environment variable ‘${n}’ in systemd service ‘${def.name}.service’ is too long."
            else
              s
          ) (attrNames env)
        )
        + (
          if def ? reloadIfChanged && def.reloadIfChanged then
            ''
              X-ReloadIfChanged=true
            ''
          else if (def ? restartIfChanged && !def.restartIfChanged) then
            ''
              X-RestartIfChanged=false
            ''
          else
            ""
        )
        + optionalString (def ? stopIfChanged && !def.stopIfChanged) ''
          X-StopIfChanged=false
        ''
        + optionalString (def ? notSocketActivated && def.notSocketActivated) ''
          X-NotSocketActivated=true
        ''
        + attrsToSection def.serviceConfig
      );
    };
}
