# Renders one `systemd.services.<name>` definition to unit-file text the way
# nixpkgs' nixos/lib/systemd-lib.nix does (the parts our module uses):
#   - unit-level lists (after, wants, documentation) are space-joined;
#   - serviceConfig lists become one `Key=value` line per element;
#   - booleans are "true"/"false";
#   - environment becomes Environment="K=V" lines;
#   - reloadTriggers become X-Reload-Triggers= (what switch-to-configuration
#     compares to decide on a reload).
# nixpkgs adds Environment=PATH=... and does not write [Install] (it links
# the unit into multi-user.target.wants); here [Install] carries wantedBy so
# that the file is self-contained for `systemd-analyze verify`.
{ lib }:
svc:
let
  b = builtins;
  str = v: if b.isBool v then (if v then "true" else "false") else toString v;
  line = k: v: "${k}=${str v}\n";
  lines = k: v: if b.isList v then b.concatStringsSep "" (map (line k) v) else line k v;
  section = as: b.concatStringsSep "" (map (k: lines k as.${k}) (b.attrNames as));
  joined = k: v: if v == [ ] then "" else "${k}=${b.concatStringsSep " " (map str v)}\n";
  unit =
    "Description=${svc.description}\n"
    + joined "Documentation" (svc.documentation or [ ])
    + joined "After" (svc.after or [ ])
    + joined "Wants" (svc.wants or [ ])
    + joined "Requires" (svc.requires or [ ])
    + joined "X-Reload-Triggers" (svc.reloadTriggers or [ ])
    + section (svc.unitConfig or { });
  env = svc.environment or { };
  envLines = b.concatStringsSep "" (map (k: "Environment=\"${k}=${env.${k}}\"\n") (b.attrNames env));
in
''
  [Unit]
  ${unit}
  [Service]
  ${envLines}${section svc.serviceConfig}
  [Install]
  ${joined "WantedBy" (svc.wantedBy or [ ])}''
