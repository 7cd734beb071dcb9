# Replaces every store path /nix/store/<hash>-<name>[-<version>] in a
# string by @<name>@ (`coreutils-9.5` -> @coreutils@): the form in which
# rendered units are compared with the golden files and written for the
# lab (netd/lab maps @netd@ to its own binary).
{ lib }:
s:
lib.concatMapStrings (
  x: if builtins.isList x then "@${(builtins.parseDrvName (builtins.head x)).name}@" else x
) (builtins.split "/nix/store/[0-9a-z]{32}-([-A-Za-z0-9+._?=]+)" (toString s))
