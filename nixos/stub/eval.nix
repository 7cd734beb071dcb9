# A tiny module-system evaluator, the offline stand-in for nixpkgs'
# lib.evalModules. What it does, like nixpkgs:
#   - collects modules through `imports` (paths are deduplicated), calling
#     module functions with { config, options, lib } // specialArgs;
#   - accepts the shorthand form (no options/config: the whole set is config);
#   - merges option declarations (declaring one option twice is an error);
#   - pushes mkIf/mkMerge/mkOverride down attribute paths lazily, so that
#     `config = mkIf cfg.enable { ... }` does not recurse on itself;
#   - at an option: discharges the properties, keeps the definitions of the
#     highest priority (mkForce 50 < plain 100 < mkDefault 1000 < option
#     default 1500), type-checks each value and merges them with the type;
#   - `strict = true` rejects definitions of undeclared options. With
#     `strict = false` (used for whole host configurations, where the
#     nixpkgs modules that declare services.kubernetes etc. are absent)
#     undeclared attribute sets are merged recursively, lists concatenated
#     and other values must agree, at the highest priority.
# Not implemented (not needed by nixos/): submodule types, freeformType,
# disabledModules, mkBefore/mkAfter ordering, `apply` chains beyond one.
{ lib }:
{ modules, specialArgs ? { }, strict ? true }:
let
  b = builtins;

  typeOf = v: if b.isAttrs v then v._type or null else null;

  # --- 1. collect the modules ---------------------------------------------
  args = { inherit config options lib; } // specialArgs;

  load = key: m:
    let
      isFile = b.isPath m || b.isString m;
      f = if isFile then import m else m;
      v = if b.isFunction f then f args else f;
      structured = v ? config || v ? options;
      meta = [ "imports" "_file" "key" "meta" ];
      extra = b.removeAttrs v (meta ++ [ "config" "options" ]);
    in
    if structured && extra != { } then
      b.throw "module ${key} has unsupported attributes ${b.toJSON (b.attrNames extra)}: put them under config"
    else {
      inherit key;
      file = if isFile then toString m else key;
      imports = v.imports or [ ];
      options = v.options or { };
      config = if structured then v.config or { } else b.removeAttrs v meta;
    };

  keyOf = parent: i: m: if b.isPath m || b.isString m then toString m else "${parent}:anon${toString i}";

  collected = b.genericClosure {
    startSet = b.genList (i: let m = b.elemAt modules i; k = keyOf "<root>" i m; in { key = k; mod = load k m; }) (b.length modules);
    operator = item:
      b.genList
        (i: let m = b.elemAt item.mod.imports i; k = keyOf item.key i m; in { key = k; mod = load k m; })
        (b.length item.mod.imports);
  };
  mods = map (x: x.mod) collected;

  # --- 2. option declarations ---------------------------------------------
  mergeDecls = loc: a: c:
    if lib.isOption a || lib.isOption c then b.throw "The option `${loc}' is declared more than once"
    else a // b.mapAttrs (n: v: if a ? ${n} then mergeDecls "${loc}.${n}" a.${n} v else v) c;
  options = b.foldl' (acc: m: mergeDecls "" acc m.options) { } mods;

  # --- 3. definitions -----------------------------------------------------
  defs0 = map (m: { inherit (m) file; value = m.config; }) mods;

  # Attribute names a definition provides, without evaluating any condition.
  namesOf = v:
    let t = typeOf v; in
    if t == "merge" then b.concatMap namesOf v.contents
    else if t == "if" || t == "override" then namesOf v.content
    else if b.isAttrs v then b.attrNames v
    else [ ];

  # The definitions of attribute `name` inside one definition, with the
  # enclosing mkIf/mkOverride pushed down onto them.
  sub = loc: name: def:
    let v = def.value; t = typeOf v; in
    if t == "merge" then b.concatMap (c: sub loc name (def // { value = c; })) v.contents
    else if t == "if" then map (d: d // { value = lib.mkIf v.condition d.value; }) (sub loc name (def // { value = v.content; }))
    else if t == "override" then map (d: d // { value = lib.mkOverride v.priority d.value; }) (sub loc name (def // { value = v.content; }))
    else if b.isAttrs v then (if v ? ${name} then [ (def // { value = v.${name}; }) ] else [ ])
    else b.throw "The definition of `${loc}' in ${def.file} is not an attribute set";

  # At an option: evaluate the conditions, keep {priority, value}.
  discharge = prio: v:
    let t = typeOf v; in
    if t == "merge" then b.concatMap (discharge prio) v.contents
    else if t == "if" then
      (if !(b.isBool v.condition) then b.throw "mkIf called with a non-Boolean condition"
       else if v.condition then discharge prio v.content else [ ])
    else if t == "override" then discharge (if prio == null then v.priority else prio) v.content
    else [ { priority = if prio == null then 100 else prio; value = v; } ];

  dischargeAll = defs: b.concatMap (d: map (x: x // { inherit (d) file; }) (discharge null d.value)) defs;

  best = ds:
    let p = b.foldl' (m: d: if d.priority < m then d.priority else m) 9999 ds;
    in b.filter (d: d.priority == p) ds;

  mergeOption = loc: opt: defs:
    let
      ds = dischargeAll defs ++ (if opt ? default then [ { priority = 1500; value = opt.default; file = "default"; } ] else [ ]);
      chosen = best ds;
      bad = b.filter (d: !(opt.type.check d.value)) chosen;
      merged =
        if chosen == [ ] then b.throw "The option `${loc}' is used but not defined."
        else if bad != [ ] then
          b.throw "The option `${loc}' has a wrong type: expected ${opt.type.description}, got ${b.toJSON (b.head bad).value} (in ${(b.head bad).file})"
        else opt.type.merge loc (map (d: d.value) chosen);
    in
    if opt ? apply then opt.apply merged else merged;

  isPlainAttrs = v: b.isAttrs v && !(v ? _type) && !(v ? outPath) && (v.type or null) != "derivation";
  peelAll = v:
    let t = typeOf v; in
    if t == "merge" then b.concatMap peelAll v.contents
    else if t == "if" || t == "override" then peelAll v.content
    else [ v ];

  # An undeclared path (strict = false only).
  laxValue = loc: defs:
    let concrete = b.concatMap (d: peelAll d.value) defs; in
    if concrete != [ ] && b.all isPlainAttrs concrete then build loc null defs
    else
      let vals = map (d: d.value) (best (dischargeAll defs)); in
      if vals == [ ] then b.throw "The option `${loc}' is used but not defined."
      else if b.all b.isList vals then b.concatLists vals
      else lib.mergeEqual loc vals;

  unique = xs: b.attrNames (b.listToAttrs (map (n: { name = n; value = null; }) xs));

  build = loc: decls: defs:
    if lib.isOption decls then mergeOption loc decls defs
    else
      let
        names = unique ((if decls == null then [ ] else b.attrNames decls) ++ b.concatMap (d: namesOf d.value) defs);
        child = n:
          let
            l = if loc == "" then n else "${loc}.${n}";
            ds = b.concatMap (sub l n) defs;
            dc = if decls == null then null else decls.${n} or null;
          in
          if dc != null then build l dc ds
          else if strict then
            b.throw "The option `${l}' does not exist. Definition in: ${b.concatStringsSep ", " (map (d: d.file) ds)}"
          else laxValue l ds;
      in
      b.listToAttrs (map (n: { name = n; value = child n; }) names);

  config = build "" options defs0;
in
{
  inherit config options;
  modules = map (m: m.key) mods;
}
