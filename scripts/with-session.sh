#!/usr/bin/env bash
# Runs a command inside a private D-Bus session with an unlocked gnome-keyring (the real Secret
# Service), and under Xvfb when there is no display. Keyring files go to a throw-away folder, so the
# tests never touch the user's own keyring. Nested calls just run the command.
set -euo pipefail

if [ -n "${KATACHI_SESSION:-}" ]; then
  exec "$@"
fi

state=$(mktemp -d "${TMPDIR:-/tmp}/katachi-session.XXXXXX")
# Removes the session folder without changing the exit status. D-Bus may have activated
# xdg-document-portal (GTK/WebKit ask for it), which mounts a FUSE file system at runtime/doc and may
# still hold it while the session ends: unmount (lazily) whatever is mounted under the folder first,
# then retry briefly. A folder left behind is reported, never a failed run.
cleanup() {
  local mounts m i
  mounts=$(awk -v d="$state/" 'index($2, d) == 1 { print $2 }' /proc/mounts 2>/dev/null || true)
  for m in $mounts; do
    fusermount -uz "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  for i in 1 2 3 4 5; do
    rm -rf "$state" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "with-session: could not remove $state (left for the next reboot)" >&2
  return 0
}
trap cleanup EXIT
mkdir -p "$state/data" "$state/cache" "$state/runtime"
chmod 700 "$state/runtime"
export KATACHI_SESSION=1 XDG_DATA_HOME="$state/data" XDG_CACHE_HOME="$state/cache" XDG_RUNTIME_DIR="$state/runtime"

inner='printf "katachi-session" | gnome-keyring-daemon --unlock --components=secrets >/dev/null && exec "$@"'
if [ -z "${DISPLAY:-}" ]; then
  xvfb-run -a -s "-screen 0 1280x800x24" dbus-run-session -- bash -c "$inner" with-session "$@"
else
  dbus-run-session -- bash -c "$inner" with-session "$@"
fi
