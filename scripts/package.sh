#!/usr/bin/env bash
# `make package`: builds katachi's Linux packages from the top-level tauri.conf.json with the Tauri CLI
# (npm `@tauri-apps/cli`, pinned in package.json / package-lock.json: a prebuilt binary, no 10-minute
# `cargo install tauri-cli`). The .deb holds the tray app, the `katachi` CLI, the systemd user unit
# and the XDG autostart entry (packaging/linux/); the AppImage holds the tray app.
#
#   PACKAGE_PROFILE=release (default) | debug
#     release: `tauri build` (optimised, `tauri/custom-protocol`), as users get it.
#     debug:   for CI's content check (`make check-package`): packages the binaries `make test` built
#              (`cargo build --workspace --bins --tests`, a no-op after it) with `tauri bundle`, so CI
#              compiles nothing twice. Same files, same layout; unoptimised binaries.
#   PACKAGE_BUNDLES="deb appimage" (default)     which packages to build
#
# The AppImage step downloads linuxdeploy and its plugins from GitHub at build time (the Tauri
# bundler does, into ~/.cache/tauri). Where GitHub cannot be reached the AppImage is skipped with the
# bundler's error, and the .deb is still built; the script fails only when the .deb fails.
# Prints the packages' paths, one per line, after "package:".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
profile=${PACKAGE_PROFILE:-release}
bundles=${PACKAGE_BUNDLES:-deb appimage}
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target=$root/$target ;; esac
export CARGO_TARGET_DIR=$target

case "$profile" in
  release) cargo_profile=(--release); tauri_profile=(); tauri_step=(build) ;;
  debug) cargo_profile=(); tauri_profile=(--debug); tauri_step=(bundle) ;;
  *) echo "package: PACKAGE_PROFILE must be release or debug, got '$profile'" >&2; exit 2 ;;
esac

# the Tauri CLI, exactly as locked
pinned=$(node -p 'require("./package.json").devDependencies["@tauri-apps/cli"]')
if [ "$(node_modules/.bin/tauri --version 2>/dev/null)" != "tauri-cli $pinned" ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

# the `katachi` CLI goes into the .deb next to the app (bundle.linux.deb.files below)
if [ "$profile" = debug ]; then
  cargo build --locked --workspace --bins --tests
else
  cargo build --locked --release -p katachi-cli
fi
cli="$target/$profile/katachi"

# The config at the root is the package's description. The Tauri CLI wants its config beside the
# app's Cargo.toml (the root Cargo.toml is a virtual workspace it cannot use), so this writes the same
# config, with every path made absolute, to src-tauri/tauri.conf.json for the time of the build
# (git-ignored, removed on exit; build.rs and generate_context! keep reading ../tauri.conf.json). Only
# what depends on this build is added: the version (the workspace's, so the package and
# `katachi --version` agree) and the path of the CLI just built.
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "package: no version in [workspace.package] of Cargo.toml" >&2; exit 1; }
staged=src-tauri/tauri.conf.json
trap 'rm -f "$root/$staged"' EXIT
VERSION=$version CLI=$cli node -e '
  const fs = require("fs"), path = require("path");
  const abs = (p) => path.resolve(process.cwd(), p);
  const c = JSON.parse(fs.readFileSync("tauri.conf.json", "utf8"));
  c.version = process.env.VERSION;
  c.mainBinaryName = "katachi-app";
  c.build.frontendDist = abs(c.build.frontendDist);
  c.bundle.icon = c.bundle.icon.map(abs);
  const deb = c.bundle.linux.deb;
  for (const dest of Object.keys(deb.files)) deb.files[dest] = abs(deb.files[dest]);
  deb.files["/usr/bin/katachi"] = process.env.CLI;
  fs.writeFileSync(process.argv[1], JSON.stringify(c, null, 2) + "\n");
' "$staged"
export TAURI_APP_PATH=src-tauri

bundle_dir="$target/$profile/bundle"
built=()
for bundle in $bundles; do
  log=$(mktemp)
  echo "package: building the $bundle ($profile)"
  runner_args=()
  [ "${tauri_step[0]}" = build ] && runner_args=(-- --locked)
  if node_modules/.bin/tauri "${tauri_step[@]}" "${tauri_profile[@]}" --ci --bundles "$bundle" \
       "${runner_args[@]}" 2>&1 | tee "$log"; then
    case "$bundle" in
      deb) built+=("$(ls -t "$bundle_dir"/deb/*.deb | head -n1)") ;;
      appimage) built+=("$(ls -t "$bundle_dir"/appimage/*.AppImage | head -n1)") ;;
    esac
  elif [ "$bundle" = appimage ] && grep -qiE 'github|download|linuxdeploy|appimagetool|network|dns|resolve' "$log"; then
    echo "package: AppImage SKIPPED: the Tauri bundler could not download linuxdeploy/appimagetool from GitHub:" >&2
    grep -iE 'error|failed' "$log" | tail -n 3 >&2
    echo "package: (the AppImage config stays in tauri.conf.json; on a machine that reaches github.com it is built)" >&2
  else
    rm -f "$log"
    echo "package: the $bundle failed" >&2
    exit 1
  fi
  rm -f "$log"
done

echo "package:"
printf '%s\n' "${built[@]}"
