#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build, run and test katachi; installs nothing that
# is already there, so a second run takes a second.
set -euo pipefail

apt_packages=(
  # Tauri (tray app): WebKitGTK, tray indicator, SVG icons, xdo
  pkg-config libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev libxdo-dev libssl-dev
  # OS keychain (Secret Service) and a D-Bus session for it
  gnome-keyring dbus-x11 libsecret-1-dev libdbus-1-dev
  # headless display, window automation and screenshots for the window tests
  xvfb xauth webkit2gtk-driver xdotool imagemagick x11-utils
  # an XEmbed system tray: the tray menu pictured in each state, and `make bench-app`'s tray host
  trayer
  # C toolchain for SQLCipher's vendored OpenSSL
  build-essential perl make
  # headless browser and its WebDriver for the relay's page tests
  chromium chromium-driver
  # a real SMTP server (aiosmtpd) for the relay's e-mail verification tests
  python3-aiosmtpd
  # PostgreSQL server for the relay store tests
  postgresql
  # a real load balancer in front of several relay instances (relay suite: cluster_haproxy)
  haproxy
  # `ip netns` and veth pairs: the relay suite's network-cut fault test (faults_network)
  iproute2
  # systemd-analyze verifies the relay's unit (deploy/katachi-relay.service)
  systemd
  # nginx in front of the relay in the relay's proxy tests (TLS termination, WebSocket-only upgrades)
  nginx
  # MinGW: `make cross-check` compiles the Windows code paths
  gcc-mingw-w64-x86-64
  # `make package` / check-package: the .deb's desktop entries validated (dpkg-deb, fakeroot are base)
  desktop-file-utils
)

# Node.js and npm bundle the relay's web UI at build time (crates/katachi-relay/build.rs); Debian's
# nodejs 18 and npm 9 suffice. A Node.js installed another way (it brings its own npm) is kept.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_packages+=(nodejs npm)
fi

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "install-deps: system packages present"
fi

command -v cargo >/dev/null || { echo "install-deps: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
