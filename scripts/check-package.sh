#!/usr/bin/env bash
# Checks what the .deb installs (called by `make test` after `make package` built it once):
#   - control: package name, version = the workspace's, depends on WebKitGTK 4.1, GTK 3, the tray
#     indicator library and libdbus;
#   - files: /usr/bin/katachi-app and /usr/bin/katachi (executable), the systemd user unit, the XDG
#     autostart entry, the menu entry and its icons;
#   - installed into a temporary root (dpkg-deb -x, nothing touches the system): `katachi --version`
#     runs and names the package's version, every shared library of both binaries resolves, the unit
#     passes `systemd-analyze verify` and both desktop entries pass `desktop-file-validate` (each
#     where installed: said when skipped).
# Usage: scripts/check-package.sh [path/to/katachi.deb]  (default: the newest .deb under the target dir)
# Exits non-zero naming the first check that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
deb=${1:-$(ls -t "$target"/{release,debug}/bundle/deb/*.deb 2>/dev/null | head -n1 || true)}
[ -n "$deb" ] && [ -f "$deb" ] || { echo "check-package: no .deb found (run make package)" >&2; exit 1; }
fail() { echo "check-package: FAIL: $*" >&2; exit 1; }
ok() { echo "check-package: ok: $*"; }
echo "check-package: $deb"

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = katachi ] || fail "package name is '$(field Package)', not katachi"
[ "$(field Version)" = "$version" ] || fail "package version '$(field Version)' is not the workspace's $version"
depends=$(field Depends)
for dep in libwebkit2gtk-4.1-0 libgtk-3-0 libayatana-appindicator3-1 libdbus-1-3; do
  grep -qw -- "$dep" <<<"$depends" || fail "Depends lacks $dep: $depends"
done
ok "control: katachi $version, depends: $depends"

listing=$(dpkg-deb -c "$deb")
has() { # has MODE_REGEX PATH
  grep -qE "^$1 .* (\./)?${2#/}\$" <<<"$listing" || fail "$2 missing from the package (or wrong mode; want $1)"
}
exe='-rwxr-xr-x'
file='-rw-r--r--'
has "$exe" /usr/bin/katachi-app
has "$exe" /usr/bin/katachi
has "$file" /usr/lib/systemd/user/katachi-agent.service
has "$file" /etc/xdg/autostart/katachi.desktop
has "$file" /usr/share/applications/Katachi.desktop
for size in 32x32 128x128 256x256@2 512x512; do
  has "$file" "/usr/share/icons/hicolor/$size/apps/katachi-app.png"
done
ok "files: binaries, user unit, autostart entry, menu entry, icons"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"

reported=$("$root/usr/bin/katachi" --version) || fail "katachi --version failed"
[ "$reported" = "katachi $version" ] || fail "katachi --version says '$reported', want 'katachi $version'"
ok "installed katachi runs: $reported"
for bin in katachi katachi-app; do
  missing=$(ldd "$root/usr/bin/$bin" | grep 'not found' || true)
  [ -z "$missing" ] || fail "$bin needs libraries this system lacks: $missing"
done
ok "every shared library of katachi and katachi-app resolves"

unit="$root/usr/lib/systemd/user/katachi-agent.service"
grep -qx 'ExecStart=/usr/bin/katachi start' "$unit" || fail "the unit does not start /usr/bin/katachi start"
grep -qx 'Restart=on-failure' "$unit" || fail "the unit is not restarted on failure"
grep -qx 'RestartPreventExitStatus=75 77 78 79' "$unit" || fail "the unit restarts on the agent's final exit codes"
grep -qx 'Exec=katachi-app' "$root/etc/xdg/autostart/katachi.desktop" || fail "the autostart entry does not run katachi-app"
if command -v systemd-analyze >/dev/null; then
  # verify resolves ExecStart on this machine: point it at the extracted binary
  run=$(mktemp -d); chmod 700 "$run"
  sed "s#^ExecStart=/usr/bin/katachi#ExecStart=$root/usr/bin/katachi#" "$unit" >"$run/katachi-agent.service"
  out=$(XDG_RUNTIME_DIR=$run systemd-analyze verify --user "$run/katachi-agent.service" 2>&1) \
    || { rm -rf "$run"; fail "systemd-analyze verify: $out"; }
  rm -rf "$run"
  ok "systemd-analyze verify: the user unit is valid"
else
  echo "check-package: SKIPPED systemd-analyze verify (not installed)"
fi
if command -v desktop-file-validate >/dev/null; then
  for entry in etc/xdg/autostart/katachi.desktop usr/share/applications/Katachi.desktop; do
    out=$(desktop-file-validate "$root/$entry" 2>&1) || fail "desktop-file-validate $entry: $out"
  done
  ok "desktop-file-validate: autostart and menu entries are valid"
else
  echo "check-package: SKIPPED desktop-file-validate (install desktop-file-utils)"
fi
echo "check-package: $deb passes"
