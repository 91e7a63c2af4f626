#!/usr/bin/env bash
# `make bench-app` (not in `make test`): the figures of the tray app and the headless agent for
# docs/PERFORMANCE.md ("Tray app and headless agent"), on a release build, under Xvfb with a private
# D-Bus and keyring (the Makefile runs this inside scripts/with-session.sh).
#   1. release binary sizes (katachi, katachi-app, katachi-relay) and package sizes (make package);
#   2. a local relay, `katachi start` signed in to it (the device code approved through the relay's
#      forms by scripts/bench-approve.py) and idle: RSS and threads after BENCH_SETTLE s (30);
#   3. the tray app (its own agent home, signed out) idle: PSS and private dirty summed over all its
#      processes (/proc/PID/smaps_rollup of the app and every descendant), before and — where the
#      build has the window process (`katachi-app --window`) — after opening and closing the window;
#   4. wake-ups per minute of tray and agent over BENCH_WAKE_SECS s (60): voluntary + involuntary
#      context switches summed over every thread (/proc/PID/task/*/status);
#   5. where a figure misses its target (agent ≤ 15 MB RSS, tray ≤ 90 MB PSS), the mappings that
#      dominate it (/proc/PID/smaps, by PSS).
# Prints one "bench-app:" line per figure. BENCH_PROFILE=debug runs the same steps on the debug build
# (`make build`'s binaries, no package) to try the script out: its figures are not the release's.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target=$root/$target ;; esac
export CARGO_TARGET_DIR=$target
settle=${BENCH_SETTLE:-30}
wake_secs=${BENCH_WAKE_SECS:-60}
say() { echo "bench-app: $*"; }

[ -n "${DISPLAY:-}" ] || { echo "bench-app: needs a display: run it through scripts/with-session.sh (make bench-app)" >&2; exit 1; }

# 1. sizes: the packages' build is the release build of katachi-app and katachi (as users get them)
profile=${BENCH_PROFILE:-release}
case "$profile" in
  release)
    [ -n "${BENCH_SKIP_PACKAGE:-}" ] || scripts/package.sh
    cargo build --locked --release -p katachi-relay
    # the floor under the window's figure: a bare Tauri window (src-tauri/examples/window_floor.rs)
    cargo build --locked --release -p katachi-app --example window_floor ;;
  debug)
    say "DEBUG BUILD: trying the script out; these figures are not the release's"
    cargo build --locked --workspace --all-targets ;;
  *) echo "bench-app: BENCH_PROFILE must be release or debug, got '$profile'" >&2; exit 2 ;;
esac
rel="$target/$profile"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
for bin in katachi katachi-app katachi-relay; do
  say "binary $bin: $(mib "$(stat -c %s "$rel/$bin")") ($profile)"
done
for pkg in "$rel"/bundle/deb/*.deb "$rel"/bundle/appimage/*.AppImage; do
  [ -f "$pkg" ] && say "package $(basename "$pkg"): $(mib "$(stat -c %s "$pkg")")"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/katachi-bench.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# 2. relay + connected agent
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
relay_url="https://localhost:$port"
"$rel/katachi-relay" --listen "127.0.0.1:$port" --data-dir "$work/relay" --public-url "$relay_url" \
  --metrics-listen off >"$work/relay.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  [ -f "$work/relay/tls/ca.pem" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
ca="$work/relay/tls/ca.pem"
[ -f "$ca" ] || { cat "$work/relay.log" >&2; echo "bench-app: the relay did not start" >&2; exit 1; }

KATACHI_HOME="$work/agent" "$rel/katachi" start --relay "$relay_url" --ca "$ca" --no-browser \
  --device-name bench-agent >"$work/agent.log" 2>&1 &
agent=$!
pids+=("$agent")
code=""
for _ in $(seq 1 300); do
  code=$(sed -n 's/^ *code: *\([A-Z0-9-]*\).*/\1/p' "$work/agent.log" | head -n1)
  [ -n "$code" ] && break
  kill -0 "$agent" 2>/dev/null || break
  sleep 0.2
done
[ -n "$code" ] || { cat "$work/agent.log" >&2; echo "bench-app: katachi start printed no code" >&2; exit 1; }
python3 scripts/bench-approve.py "$relay_url" "$ca" "$work/relay.log" bench@example.com \
  "correct horse battery staple" "$code"
for _ in $(seq 1 300); do
  grep -qx 'online' "$work/agent.log" && break
  sleep 0.2
done
grep -qx 'online' "$work/agent.log" || { cat "$work/agent.log" >&2; echo "bench-app: the agent did not go online" >&2; exit 1; }
say "agent online (pid $agent); tray starting"

# 3. the tray (its own home: one agent per user home), on a desktop with a system tray: trayer
# (XEmbed) shows its icon, as a panel would; without a tray host the app would open its window at
# start, and the idle figure would be the window's.
trayer --edge top --align right --widthtype request --height 32 >"$work/trayer.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  xwininfo -root -tree 2>/dev/null | grep -qi '"trayer"' && break
  sleep 0.1
done
"$rel/katachi-app" >"$work/tray.log" 2>&1 &
tray=$!
pids+=("$tray")
for _ in $(seq 1 300); do
  grep -q 'katachi-app: tray ready' "$work/tray.log" && break
  kill -0 "$tray" 2>/dev/null || { cat "$work/tray.log" >&2; echo "bench-app: the tray app ended" >&2; exit 1; }
  sleep 0.1
done
if grep -q 'no tray host' "$work/tray.log"; then
  cat "$work/tray.log" >&2; echo "bench-app: the tray app saw no tray host (trayer did not start?)" >&2; exit 1
fi
sleep "$settle"

tree() { # PID and all its descendants
  local p=$1 c
  echo "$p"
  for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree "$c"; done
}
rollup() { # sum of FIELD (kB) over PIDS
  local field=$1; shift
  local total=0 p v
  for p in "$@"; do
    v=$(awk -v f="$field:" '$1 == f { print $2 }' /proc/"$p"/smaps_rollup 2>/dev/null || echo 0)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
kb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1000 }'; }
switches() { # voluntary + involuntary context switches of every thread of PIDS
  cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { s += $2 } END { print s + 0 }'
}
top_mappings() { # the 8 mappings with the most PSS in PID
  awk '/^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "" ? "[anon]" : $6) } $1 == "Pss:" { pss[name] += $2 }
       END { for (n in pss) printf "%8d kB  %s\n", pss[n], n }' /proc/"$1"/smaps | sort -rn | head -n 8
}

agent_rss=$(awk '/^VmRSS:/ { print $2 }' /proc/"$agent"/status)
agent_threads=$(awk '/^Threads:/ { print $2 }' /proc/"$agent"/status)
say "agent idle after ${settle}s: RSS $(kb "$agent_rss"), PSS $(kb "$(rollup Pss "$agent")"), private dirty $(kb "$(rollup Private_Dirty "$agent")"), $agent_threads threads (target ≤ 15 MB RSS)"
mapfile -t tray_pids < <(tree "$tray")
tray_pss=$(rollup Pss "${tray_pids[@]}")
tray_dirty=$(rollup Private_Dirty "${tray_pids[@]}")
say "tray idle after ${settle}s, ${#tray_pids[@]} process(es): PSS $(kb "$tray_pss"), private dirty $(kb "$tray_dirty") (target ≤ 90 MB PSS, ≤ 30 MB private dirty)"

# the window: opened from the tray's process tree as "Open Katachi" does (`katachi-app --window`),
# BENCH_WINDOW_RUNS times; each prints when its page answered (open → interactive), then is closed
# launch → interactive counts from the launch (loading the program too), with the window's
# phases after `main` as it reports them. Before each, the floor: a bare Tauri window (no plugin,
# no command) from its launch to a one-line page loaded, on this machine's WebKitGTK in this run.
for run in $(seq 1 "${BENCH_WINDOW_RUNS:-3}"); do
  launched_ms=$(($(date +%s%N) / 1000000))
  timeout 30 "$rel/examples/window_floor" >"$work/floor.log" 2>&1 || true
  floor_ready=$(sed -n 's/.*window floor: page loaded after .* at unix ms \([0-9]*\).*/\1/p' "$work/floor.log" | head -n1)
  [ -n "$floor_ready" ] || { cat "$work/floor.log" >&2; echo "bench-app: the floor window did not load its page" >&2; exit 1; }
  floor_ms=$((floor_ready - launched_ms))
  sleep 1
  launched_ms=$(($(date +%s%N) / 1000000))
  "$rel/katachi-app" --window >"$work/window.log" 2>&1 &
  window=$!
  for _ in $(seq 1 300); do
    grep -q 'window interactive after' "$work/window.log" && break
    kill -0 "$window" 2>/dev/null || break
    sleep 0.1
  done
  ms=$(sed -n 's/.*window interactive after \([0-9]*\) ms.*/\1/p' "$work/window.log" | head -n1)
  [ -n "$ms" ] || { cat "$work/window.log" >&2; echo "bench-app: the window did not become interactive" >&2; exit 1; }
  ready_ms=$(sed -n 's/.*window interactive after .* at unix ms \([0-9]*\).*/\1/p' "$work/window.log" | head -n1)
  phases=$(sed -n 's/.*window interactive after [0-9]* ms (\(.*\)) at unix ms.*/\1/p' "$work/window.log" | head -n1)
  sleep 2
  mapfile -t window_pids < <(tree "$window")
  window_ms=$((${ready_ms:-$launched_ms} - launched_ms))
  say "window $run: open → interactive $window_ms ms from the launch, $ms ms from main (target ≤ 500 ms); floor (bare Tauri window, launch → page loaded) $floor_ms ms, ratio $(awk -v a="$window_ms" -v b="$floor_ms" 'BEGIN { printf "%.2f", a / b }'); phases from main: $phases; its processes: PSS $(kb "$(rollup Pss "${window_pids[@]}")") over ${#window_pids[@]} process(es)"
  kill "$window" 2>/dev/null || true
  wait "$window" 2>/dev/null || true
done
sleep 5
mapfile -t tray_pids < <(tree "$tray")
webkit=$( (for p in "${tray_pids[@]}"; do cat /proc/"$p"/comm; done; pgrep -f WebKit | tr -d '\n') | grep -ci webkit || true)
tray_pss=$(rollup Pss "${tray_pids[@]}")
tray_dirty=$(rollup Private_Dirty "${tray_pids[@]}")
say "tray after the window closed, ${#tray_pids[@]} process(es), $webkit WebKit process(es) left: PSS $(kb "$tray_pss"), private dirty $(kb "$tray_dirty") (target ≤ 90 MB PSS, ≤ 30 MB private dirty)"

# 4. wake-ups (and which threads of the agent wake: name and switches over the window)
thread_switches() {
  for t in /proc/"$1"/task/*; do
    printf '%s %s %s\n' "${t##*/}" "$(tr ' ' _ <"$t/comm")" \
      "$(awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { s += $2 } END { print s + 0 }' "$t/status")"
  done
}
thread_switches "$agent" >"$work/agent-threads.0"
thread_switches "$tray" >"$work/tray-threads.0"
a0=$(switches "$agent"); t0=0
for p in "${tray_pids[@]}"; do t0=$((t0 + $(switches "$p"))); done
sleep "$wake_secs"
a1=$(switches "$agent"); t1=0
thread_switches "$agent" >"$work/agent-threads.1"
thread_switches "$tray" >"$work/tray-threads.1"
for p in "${tray_pids[@]}"; do t1=$((t1 + $(switches "$p"))); done
per_min() { awk -v d="$1" -v s="$wake_secs" 'BEGIN { printf "%.0f", d * 60 / s }'; }
# the agent's resident size once its start-up pages were released (katachi_core::memory, 20 s after
# it came online) and a few heartbeats ran: the steady idle figure
agent_rss_later=$(awk '/^VmRSS:/ { print $2 }' /proc/"$agent"/status)
say "agent idle, later: RSS $(kb "$agent_rss_later"), PSS $(kb "$(rollup Pss "$agent")"), private dirty $(kb "$(rollup Private_Dirty "$agent")") (target ≤ 15 MB RSS)"
say "wake-ups per minute over ${wake_secs}s (context switches, all threads): agent $(per_min $((a1 - a0))), tray $(per_min $((t1 - t0)))"

for who in agent tray; do
  join "$work/$who-threads.0" "$work/$who-threads.1" | while read -r tid name before _ after; do
    say "  $who thread $tid $name: $(per_min $((after - before))) per minute"
  done
done

# wake-up instants: context switches count every thread a wake-up touches; what costs a laptop's
# battery is how often the CPU is woken at all. strace (when installed) records every return from a
# wait of every thread; returns within the same 100 ms count as one wake-up. Run after the
# context-switch count, which strace would disturb.
if command -v strace >/dev/null; then
  waits=epoll_wait,epoll_pwait,futex,poll,ppoll,select,pselect6,nanosleep,clock_nanosleep,read,recvfrom
  timeout "$wake_secs" strace -f -qq -ttt -e trace="$waits" -p "$agent" -o "$work/agent.strace" 2>/dev/null &
  s1=$!
  timeout "$wake_secs" strace -f -qq -ttt -e trace="$waits" -p "$tray" -o "$work/tray.strace" 2>/dev/null &
  s2=$!
  wait "$s1" "$s2" 2>/dev/null || true
  # the key is the time to a tenth of a second, as text: `-ttt` prints six decimals (mawk's int()
  # cannot hold tenths of a second since 1970)
  instants() { awk '/resumed>|= / && !/unfinished/ { b[substr($2, 1, length($2) - 5)] = 1 } END { n = 0; for (k in b) n++; print n }' "$1"; }
  heartbeat_secs=10 # `katachi start`'s default (--heartbeat-secs)
  say "wake-up instants per minute over ${wake_secs}s (any thread, 100 ms apart): agent $(per_min "$(instants "$work/agent.strace")") (its heartbeat: $((60 / heartbeat_secs)) per minute), tray $(per_min "$(instants "$work/tray.strace")")"
fi

# 5. what dominates a missed target
if [ "$tray_pss" -gt 90000 ]; then
  say "tray PSS after the window over target; largest mappings by PSS (main process):"
  top_mappings "$tray" | sed 's/^/bench-app:   /'
fi
if [ "$agent_rss" -gt 15000 ]; then
  say "agent RSS over target; largest mappings by PSS:"
  top_mappings "$agent" | sed 's/^/bench-app:   /'
fi
if [ "$tray_pss" -gt 90000 ]; then
  say "tray PSS over target; largest mappings by PSS (main process):"
  top_mappings "$tray" | sed 's/^/bench-app:   /'
fi
