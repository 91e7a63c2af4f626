# katachi: two commands on a fresh Debian 12 machine.
#   make run   install what is missing, build, start the tray app (and, once it exists, a local relay)
#   make test  install what is missing, check formatting and lints, run every test
SHELL := /bin/bash
CARGO ?= cargo
CARGO_FLAGS ?= --locked

.PHONY: run test deps build lint unit bench

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build $(CARGO_FLAGS) --workspace --all-targets

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings

test: lint build
	scripts/with-session.sh $(CARGO) test $(CARGO_FLAGS) --workspace

bench: deps
	scripts/with-session.sh $(CARGO) bench $(CARGO_FLAGS) -p katachi-core

run: deps
	$(CARGO) build $(CARGO_FLAGS) -p katachi-app -p katachi-cli
	scripts/run-local.sh
