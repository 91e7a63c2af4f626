#!/usr/bin/env bash
# Runs a command with a throw-away PostgreSQL server on 127.0.0.1 and exports its URL as
# KATACHI_TEST_POSTGRES_URL (the relay's store tests run against it as well as SQLite).
# Nested calls, or an URL already set, just run the command. fsync is off (tests need no durability)
# unless KATACHI_TEST_PG_FSYNC=on (benchmarks that stand for production).
set -euo pipefail

if [ -n "${KATACHI_TEST_POSTGRES_URL:-}" ]; then
  exec "$@"
fi

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bindir/pg_ctl" ] || { echo "with-postgres: PostgreSQL server binaries not found (apt install postgresql)" >&2; exit 1; }

state=$(mktemp -d "${TMPDIR:-/tmp}/katachi-pg.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  # PostgreSQL refuses to run as root: use the postgres system user for the server.
  chown postgres: "$state"
  as_pg=(runuser -u postgres --)
fi
cleanup() {
  "${as_pg[@]}" "$bindir/pg_ctl" -D "$state/data" -m immediate stop >/dev/null 2>&1 || true
  # a folder that cannot be removed is reported; it never turns a green run red
  rm -rf "$state" 2>/dev/null || echo "with-postgres: could not remove $state" >&2
}
trap cleanup EXIT

"${as_pg[@]}" "$bindir/initdb" -D "$state/data" -U katachi -A trust --no-sync >/dev/null
"${as_pg[@]}" "$bindir/pg_ctl" -D "$state/data" -l "$state/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -c port=$port -k $state -c fsync=${KATACHI_TEST_PG_FSYNC:-off} -c max_connections=200" start >/dev/null
export KATACHI_TEST_POSTGRES_URL="postgres://katachi@127.0.0.1:$port/postgres"
echo "with-postgres: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
"$@"
