#!/usr/bin/env bash
# Starts katachi locally on the embedded defaults: the tray app in this desktop session (or, on a
# headless machine, inside a private Xvfb + D-Bus + gnome-keyring session). The relay joins here when
# it exists (issue "Relay backend").
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
echo "katachi: agent state in ${KATACHI_HOME:-the platform default folders}; 'target/debug/katachi doctor' checks it"
if [ -n "${DISPLAY:-}" ] && [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
  exec "$target/debug/katachi-app"
fi
echo "katachi: no desktop session here; running the tray app under Xvfb with a private keyring (Ctrl-C stops it)"
exec scripts/with-session.sh "$target/debug/katachi-app"
