#!/usr/bin/env bash
# Starts katachi locally on the embedded defaults: a relay on https://localhost:8443 (its data, local
# CA and SQLite database under .katachi-dev/relay) and the tray app, in this desktop session or — on a
# headless machine — inside a private Xvfb + D-Bus + gnome-keyring session. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
relay_dir=${KATACHI_RELAY_DATA:-.katachi-dev/relay}
listen=${KATACHI_RELAY_LISTEN:-127.0.0.1:8443}
mkdir -p "$relay_dir"

"$target/debug/katachi-relay" --listen "$listen" --data-dir "$relay_dir" &
relay_pid=$!
stop_relay() { kill "$relay_pid" 2>/dev/null || true; wait "$relay_pid" 2>/dev/null || true; }
trap stop_relay EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 100); do
  [ -f "$relay_dir/tls/ca.pem" ] && (exec 3<>"/dev/tcp/${listen%:*}/${listen##*:}") 2>/dev/null && break
  kill -0 "$relay_pid" 2>/dev/null || { echo "katachi: the relay did not start" >&2; exit 1; }
  sleep 0.1
done
echo "katachi: relay at https://localhost:${listen##*:} — sign up there, then connect this machine from the"
echo "katachi:   tray's menu: Sign in… → relay https://localhost:${listen##*:}, CA file $relay_dir/tls/ca.pem"
echo "katachi:   (the tray runs this user's agent; headless, without the tray: $target/debug/katachi start --relay https://localhost:${listen##*:} --ca $relay_dir/tls/ca.pem)"
echo "katachi: agent state in ${KATACHI_HOME:-the platform default folders}; '$target/debug/katachi doctor' checks it"

if [ -n "${DISPLAY:-}" ] && [ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
  "$target/debug/katachi-app"
else
  echo "katachi: no desktop session here; running the tray app under Xvfb with a private keyring (Ctrl-C stops it)"
  scripts/with-session.sh "$target/debug/katachi-app"
fi
