# netd as a Nix package: `nix build .#netd`.
{
  lib,
  stdenv,
  buildGoModule,
  installShellFiles,
  src,
  version,
}:

buildGoModule {
  pname = "netd";
  inherit version;

  # The whole Go module (every .go file matters to `go mod vendor`, and
  # files such as examples/ducksnest/policy.yaml are go:embed-ded), without
  # the Nix files and docs, so that editing nixos/ does not rebuild netd.
  src = lib.fileset.toSource {
    root = src;
    fileset = lib.fileset.difference src (
      lib.fileset.unions [
        (src + "/nixos")
        (src + "/flake.nix")
        (lib.fileset.maybeMissing (src + "/flake.lock"))
        (lib.fileset.fileFilter (f: f.hasExt "md") src)
      ]
    );
  };

  # The NAR hash of `go mod vendor` for go.mod/go.sum. nixos/check.sh
  # recomputes it (go mod vendor into a temp dir, `nix hash path`) and
  # fails when this line is stale; `nixos/check.sh --update` rewrites it.
  vendorHash = "sha256-xXOo+Femmgutj8EmZMl+kMHBtjLgjVds0ynufQhvceQ=";

  subPackages = [ "netd" ];

  env.CGO_ENABLED = 0;
  # `netd version` and netd_build_info report the flake's version (the
  # Nix build has no VCS data for Go to embed).
  ldflags = [ "-s" "-w" "-X github.com/ducksnest/netd/netd/buildinfo.version=${version}" ];

  # The man pages (docs/man, generated from the command tree) and the
  # shell completions (`netd completion SHELL`).
  nativeBuildInputs = [ installShellFiles ];
  postInstall =
    ''
      installManPage docs/man/*.1
    ''
    + lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
      installShellCompletion --cmd netd \
        --bash <($out/bin/netd completion bash) \
        --fish <($out/bin/netd completion fish) \
        --zsh <($out/bin/netd completion zsh)
    '';

  # The unit tests need root and network namespaces; they run in CI
  # (.ci/run), not in the Nix sandbox.
  doCheck = false;

  meta = {
    description = "ducksnest network daemon: BGP pod routes over Tailscale, route MTUs, Calico and tailnet policy from one file";
    homepage = "https://github.com/ducksnest/netd";
    mainProgram = "netd";
    platforms = lib.platforms.linux;
  };
}
