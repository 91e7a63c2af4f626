# katachi: two commands on a fresh Debian 12 machine.
#   make run   install what is missing, build, start the tray app (and, once it exists, a local relay)
#   make test  install what is missing, check formatting and lints, run every test
SHELL := /bin/bash
CARGO ?= cargo
CARGO_FLAGS ?= --locked

.PHONY: run test deps build build-tests lint bench bench-tunnel bench-chat bench-cluster bench-fleet bench-carrier faults-long cross-check bench-sandbox fuzz-smoke package check-package bench-app

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build $(CARGO_FLAGS) --workspace --all-targets

build-tests: deps
	$(CARGO) build $(CARGO_FLAGS) --workspace --bins --tests

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings

# Before the tests, only what they run is built: the test binaries, and the programs the end-to-end
# tests start from target/debug (with the dev-dependencies' features, as `cargo test` builds them,
# so nothing is compiled twice). Benches and examples are checked by clippy's --all-targets.
test: lint build-tests cross-check check-package
	scripts/with-session.sh scripts/with-postgres.sh $(CARGO) test $(CARGO_FLAGS) --workspace --lib --bins --tests
	scripts/fuzz-smoke.sh

# The Linux packages from the top-level tauri.conf.json (scripts/package.sh, Tauri CLI from npm): a .deb
# with the tray app, the `katachi` CLI, the systemd user unit katachi-agent.service and the XDG
# autostart entry, and an AppImage of the tray app (skipped, and said why, where linuxdeploy cannot
# be downloaded from GitHub). Release build; PACKAGE_PROFILE=debug for a quick one.
package: deps
	scripts/package.sh

# CI builds the .deb once and checks what it installs (scripts/check-package.sh). Debug profile: a
# release build of the app alone takes ~4 min here; the contents are the same.
check-package: deps
	PACKAGE_PROFILE=debug PACKAGE_BUNDLES=deb scripts/package.sh
	scripts/check-package.sh "$$(ls -t $${CARGO_TARGET_DIR:-target}/debug/bundle/deb/*.deb | head -n1)"

# The tray app's and headless agent's figures (issue 12, docs/PERFORMANCE.md): binary and package
# sizes, the idle agent's RSS and threads, the idle tray's PSS / private dirty over all its processes,
# wake-ups per minute. Release build under Xvfb with a local relay; not part of `make test`. ~3 min
# after the build.
bench-app: deps
	scripts/with-session.sh scripts/bench-app.sh

bench: deps
	scripts/with-session.sh $(CARGO) bench $(CARGO_FLAGS) -p katachi-core

# The tunnel's figures (issue 4, docs/PERFORMANCE.md): relay + tunnel vs direct loopback (latency at
# 1k req/s, 256 MiB streaming) and relay memory per idle agent (1,000 tunnels; needs ~1,300 fds). ~2 min.
bench-tunnel: deps
	n=$$(ulimit -Sn); if [ "$$n" != unlimited ] && [ "$$n" -lt 4096 ]; then ulimit -Sn 4096 || true; fi; \
	$(CARGO) bench $(CARGO_FLAGS) -p katachi-relay --bench tunnel

# Several relay instances (issue 14, docs/PERFORMANCE.md): two relay processes on one PostgreSQL
# behind HAProxy; the forwarded path (browser on B, tunnel on A) against the direct one. ~1 min.
bench-cluster: deps
	KATACHI_BENCH_PARTS=cluster scripts/with-postgres.sh $(CARGO) bench $(CARGO_FLAGS) -p katachi-relay --bench tunnel

# Load on one relay instance (issue 14, docs/PERFORMANCE.md "Load (issue 14)"): the relay process on
# PostgreSQL with 1,000 agents (tunnel + signed heartbeats every 10 s each) and 100 browsers streaming
# through it, against the same browsers with only their 100 agents; relay memory per idle agent ×10k.
# PostgreSQL runs with fsync on, as in production.
# Needs ~2,400 fds in the bench (and as many in the relay). ~5 min after the build.
bench-fleet: deps
	n=$$(ulimit -Sn); if [ "$$n" != unlimited ] && [ "$$n" -lt 4096 ]; then ulimit -Sn 4096 || true; fi; \
	KATACHI_BENCH_PARTS=fleet KATACHI_TEST_PG_FSYNC=on scripts/with-postgres.sh $(CARGO) bench $(CARGO_FLAGS) -p katachi-relay --bench tunnel

# The AI chat's figures (issue 13, docs/PERFORMANCE.md): first streamed token provider → browser through
# relay + tunnel against the provider read directly, a 10,000-message session's latest page, agent
# memory while streaming a long answer (the tunnel bench's `chat` part); then the same session opened
# in the workbench's Chat view in headless Chromium against a 10-message one. ~3 min after the build.
bench-chat: deps
	KATACHI_BENCH_PARTS=chat $(CARGO) bench $(CARGO_FLAGS) -p katachi-relay --bench tunnel
	scripts/with-session.sh $(CARGO) bench $(CARGO_FLAGS) -p katachi-e2e --bench chat_view

# The WebSocket carrier against the direct upgrade (issue 14, docs/PERFORMANCE.md "WebSocket carrier"):
# the same download through relay + tunnel on each, alternating, one relay process. ~1 min after the build.
bench-carrier: deps
	KATACHI_BENCH_PARTS=carrier $(CARGO) bench $(CARGO_FLAGS) -p katachi-relay --bench tunnel

# The sandbox's figures (issue 5, docs/PERFORMANCE.md): sandboxed spawn of /bin/true vs a bare spawn
# (and bwrap when installed), cat of a 1 GiB file inside vs outside the sandbox. Writes 1 GiB of real
# data under target/tmp once and deletes it. ~4 min.
bench-sandbox: deps
	$(CARGO) bench $(CARGO_FLAGS) -p katachi-core --bench sandbox

# The fault tests' long runs (issue 14, docs/PERFORMANCE.md "Faults (issue 14)"); `make test` runs each
# in a short form. The network test needs root (`ip netns`). ~20 min.
faults-long: deps
	KATACHI_CRASH_ROUNDS=100 $(CARGO) test $(CARGO_FLAGS) -p katachi-core --test all kill_9_during_writes -- --nocapture
	KATACHI_RELAY_KILL_ROUNDS=20 $(CARGO) test $(CARGO_FLAGS) -p katachi-relay --test all tunnel_restart -- --nocapture
	KATACHI_NETWORK_CUT_ROUNDS=10 $(CARGO) test $(CARGO_FLAGS) -p katachi-relay --test all faults_network -- --nocapture
	KATACHI_CLOCK_SKEW_ROUNDS=10 $(CARGO) test $(CARGO_FLAGS) -p katachi-relay --test all faults_clock_skew -- --nocapture
	KATACHI_PG_RESTART_ROUNDS=9 $(CARGO) test $(CARGO_FLAGS) -p katachi-relay --test all faults_postgres -- --nocapture

run: deps
	$(CARGO) build $(CARGO_FLAGS) -p katachi-app -p katachi-cli -p katachi-relay
	scripts/run-local.sh

# The Windows code paths (fingerprint, keychain) compiled for real: `cargo check` for the
# x86_64-pc-windows-gnu target with Debian's MinGW for the C parts (SQLCipher, OpenSSL). Skipped, and
# said so, only where the target cannot be installed. macOS cannot be checked here (no Apple SDK).
cross-check: deps
	@if rustup target list --installed | grep -q x86_64-pc-windows-gnu || rustup target add x86_64-pc-windows-gnu; then \
	  $(CARGO) check $(CARGO_FLAGS) -p katachi-core -p katachi-cli --target x86_64-pc-windows-gnu; \
	else echo "cross-check: SKIPPED: the x86_64-pc-windows-gnu target cannot be installed on this machine"; fi

# Every fuzz target (fuzz/, cargo-fuzz, own workspace) built and run briefly from its seeds; fails on
# a crash. FUZZ_SECONDS per target (default 20). Stable toolchain: see the script.
fuzz-smoke: deps
	scripts/fuzz-smoke.sh
