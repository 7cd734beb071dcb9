# A small, honest stand-in for the parts of nixpkgs' `lib` that nixos/ uses,
# so that the module and the host configurations can be evaluated offline
# with Debian's nix-bin (nixpkgs itself cannot be fetched here).
#
# Semantics follow nixpkgs (lib/options.nix, lib/types.nix, lib/modules.nix)
# for everything implemented; anything not implemented is simply absent, so
# using it fails evaluation instead of being silently faked. The module
# system itself is in ./eval.nix.
let
  b = builtins;

  # --- properties (lib/modules.nix) ---------------------------------------
  mkIf = condition: content: { _type = "if"; inherit condition content; };
  mkMerge = contents: { _type = "merge"; inherit contents; };
  mkOverride = priority: content: { _type = "override"; inherit priority content; };
  mkDefault = mkOverride 1000;
  mkForce = mkOverride 50;
  mkOptionDefault = mkOverride 1500;

  # --- options (lib/options.nix) ------------------------------------------
  mkOption = attrs: attrs // { _type = "option"; type = attrs.type or types.unspecified; };
  mkEnableOption = name: mkOption {
    type = types.bool;
    default = false;
    example = true;
    description = "Whether to enable ${name}.";
  };
  # Like nixpkgs: the default is pkgs.<name>; a missing package only fails
  # when the option's value is used.
  mkPackageOption = pkgs: name: { default ? [ name ], example ? null, extraDescription ? "" }:
    let path = if b.isList default then default else [ default ];
    in mkOption {
      type = types.package;
      default = b.foldl' (s: n: s.${n}) pkgs path;
      defaultText = literalExpression "pkgs.${b.concatStringsSep "." path}";
      description = "The ${name} package to use.${extraDescription}";
    };
  literalExpression = text: { _type = "literalExpression"; inherit text; };
  literalMD = text: { _type = "literalMD"; inherit text; };

  isOption = x: b.isAttrs x && (x._type or null) == "option";
  isDerivation = x: b.isAttrs x && (x.type or null) == "derivation";
  isCoercibleToString = x:
    b.elem (b.typeOf x) [ "path" "string" "null" "int" "float" "bool" ]
    || (b.isAttrs x && x ? outPath);

  # --- types (lib/types.nix): name, description, check, merge -------------
  # merge gets the option location (a string) and the list of definition
  # values (properties already discharged) and returns the merged value.
  mergeEqual = loc: defs:
    let first = b.head defs;
    in if b.all (d: d == first) defs then first
       else b.throw "The option `${loc}' has conflicting definition values: ${b.toJSON defs}";
  mkType = name: description: check: { _type = "type"; inherit name description check; merge = mergeEqual; };

  types = rec {
    unspecified = mkType "unspecified" "unspecified value" (_: true);
    anything = unspecified;
    bool = mkType "bool" "boolean" b.isBool;
    int = mkType "int" "signed integer" b.isInt;
    # Like nixpkgs, a str with two different definitions is a conflict.
    str = mkType "str" "string" b.isString;
    nonEmptyStr = mkType "nonEmptyStr" "non-empty string" (x: b.isString x && b.match "[ \t\n]*" x == null);
    port = mkType "port" "16 bit unsigned integer; between 0 and 65535 (both inclusive)"
      (x: b.isInt x && x >= 0 && x <= 65535);
    ints = { positive = mkType "positiveInt" "positive integer, meaning >0" (x: b.isInt x && x > 0); };
    # types.path: a string coercible to an absolute path (not necessarily
    # in the store).
    path = mkType "path" "path"
      (x: isCoercibleToString x && !(b.isBool x || b.isInt x || x == null)
          && b.substring 0 1 (toString x) == "/");
    package = mkType "package" "package" (x: isDerivation x || (b.isAttrs x && x ? outPath));
    enum = values: mkType "enum" "one of ${b.concatStringsSep ", " (map (v: "\"${toString v}\"") values)}"
      (x: b.elem x values);
    nullOr = t: (mkType "nullOr" "null or ${t.description}" (x: x == null || t.check x)) // {
      merge = loc: defs:
        if b.all (d: d == null) defs then null
        else if b.any (d: d == null) defs then b.throw "The option `${loc}' is defined both null and not null"
        else t.merge loc defs;
    };
    listOf = t: (mkType "listOf" "list of ${t.description}" (x: b.isList x && b.all t.check x)) // {
      merge = _loc: defs: b.concatLists defs;
    };
    attrsOf = t: (mkType "attrsOf" "attribute set of ${t.description}"
      (x: b.isAttrs x && b.all t.check (b.attrValues x))) // {
      merge = loc: defs:
        let names = b.attrNames (b.foldl' (a: d: a // d) { } defs);
        in b.listToAttrs (map (n: {
          name = n;
          value = t.merge "${loc}.${n}" (b.concatMap (d: if d ? ${n} then [ d.${n} ] else [ ]) defs);
        }) names);
    };
  };

  # --- the plain functions the modules use --------------------------------
  optional = cond: x: if cond then [ x ] else [ ];
  optionals = cond: xs: if cond then xs else [ ];
  optionalString = cond: s: if cond then s else "";
  optionalAttrs = cond: as: if cond then as else { };
  concatStringsSep = b.concatStringsSep;
  concatMapStringsSep = sep: f: xs: b.concatStringsSep sep (map f xs);
  mapAttrs = b.mapAttrs;
  mapAttrsToList = f: as: map (n: f n as.${n}) (b.attrNames as);
  attrNames = b.attrNames;
  filterAttrs = pred: as: b.listToAttrs (b.concatMap (n: if pred n as.${n} then [ { name = n; value = as.${n}; } ] else [ ]) (b.attrNames as));
  genAttrs = names: f: b.listToAttrs (map (n: { name = n; value = f n; }) names);
  elem = b.elem;
  hasPrefix = pre: s: b.substring 0 (b.stringLength pre) s == pre;
  hasInfix = inf: s: b.match ".*${escapeRegex inf}.*" s != null;
  escapeRegex = b.replaceStrings
    [ "\\" "[" "]" "{" "}" "(" ")" "." "*" "+" "?" "^" "$" "|" ]
    [ "\\\\" "\\[" "\\]" "\\{" "\\}" "\\(" "\\)" "\\." "\\*" "\\+" "\\?" "\\^" "\\$" "\\|" ];
  # lib/strings.nix: a word made only of safe characters is left bare.
  escapeShellArg = arg:
    let s = toString arg;
    in if b.match "[[:alnum:],._+:@%/=-]+" s != null then s
       else "'${b.replaceStrings [ "'" ] [ "'\\''" ] s}'";
  escapeShellArgs = xs: b.concatStringsSep " " (map escapeShellArg xs);
  getExe' = pkg: name: "${pkg}/bin/${name}";
  getExe = pkg: "${pkg}/bin/${pkg.meta.mainProgram or pkg.pname or pkg.name}";
  recursiveUpdate = a: c:
    a // b.mapAttrs (n: v: if b.isAttrs v && a ? ${n} && b.isAttrs a.${n} && !isDerivation v then recursiveUpdate a.${n} v else v) c;
  toInt = s: b.fromJSON s;
  fileContents = f: let t = b.readFile f; m = b.match "(.*[^\n])\n*" t; in if m == null then t else b.head m;
  importJSON = f: b.fromJSON (b.readFile f);
  filter = b.filter;
  concatLists = b.concatLists;
  nameValuePair = name: value: { inherit name value; };
  mapAttrs' = f: as: b.listToAttrs (map (n: f n as.${n}) (b.attrNames as));
  platforms.linux = [ "x86_64-linux" "aarch64-linux" "i686-linux" "armv7l-linux" ];
  # lib.fileset: only what package.nix uses. toSource returns the root
  # unfiltered (the stub never builds, so the filtering is not exercised).
  fileset = {
    toSource = { root, fileset }: b.seq fileset root;
    unions = xs: xs;
    difference = a: _b: a;
    fileFilter = pred: root: { inherit pred root; };
    maybeMissing = p: p;
  };
  fakeHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  maintainers = { };
in
{
  inherit mkIf mkMerge mkOverride mkDefault mkForce mkOptionDefault mkOption mkEnableOption
    mkPackageOption literalExpression literalMD isOption isDerivation types optional optionals
    optionalString optionalAttrs concatStringsSep concatMapStringsSep mapAttrs mapAttrsToList
    attrNames filterAttrs genAttrs elem hasPrefix hasInfix escapeShellArg escapeShellArgs
    getExe' getExe recursiveUpdate fakeHash maintainers nameValuePair mapAttrs' platforms fileset
    toInt fileContents importJSON filter concatLists;
  # The evaluator needs these too.
  inherit mergeEqual;
  evalModules = args: import ./eval.nix { lib = import ./lib.nix; } args;
}
