#!/usr/bin/env bash
# Runs a command inside a private D-Bus session with an unlocked gnome-keyring (the real Secret
# Service), and under Xvfb when there is no display. Keyring files go to a throw-away folder, so the
# tests never touch the user's own keyring. Nested calls just run the command.
set -euo pipefail

if [ -n "${KATACHI_SESSION:-}" ]; then
  exec "$@"
fi

state=$(mktemp -d "${TMPDIR:-/tmp}/katachi-session.XXXXXX")
trap 'rm -rf "$state"' EXIT
mkdir -p "$state/data" "$state/cache" "$state/runtime"
chmod 700 "$state/runtime"
export KATACHI_SESSION=1 XDG_DATA_HOME="$state/data" XDG_CACHE_HOME="$state/cache" XDG_RUNTIME_DIR="$state/runtime"

inner='printf "katachi-session" | gnome-keyring-daemon --unlock --components=secrets >/dev/null && exec "$@"'
if [ -z "${DISPLAY:-}" ]; then
  xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- bash -c "$inner" with-session "$@"
else
  dbus-run-session -- bash -c "$inner" with-session "$@"
fi
