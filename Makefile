# Two entry points for a fresh machine: `make demo` and `make test`.
# Each installs what it needs first and skips what is already there.

SHELL := /bin/bash
.DEFAULT_GOAL := help
HOST ?= 127.0.0.1
PORT ?= 8080
CARGO_BIN := $(HOME)/.cargo/bin
export PATH := $(CARGO_BIN):$(CURDIR)/node_modules/.bin:$(PATH)
# The wasm-bindgen version pinned in Cargo.lock; the CLI must match it exactly.
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/"/,"",$$3); print $$3; exit}' Cargo.lock)
WASM_OPT_FLAGS := -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
	--enable-mutable-globals --enable-reference-types --enable-multivalue
PKG := www/pkg

.PHONY: help demo test e2e lint pkg size bench bench-browser tools rust-tools browser-tools node-tools pg-tools phone-metadata clean

help:
	@echo "make demo   build the module, start the relay (simulated provider) and the page on http://$(HOST):$(PORT)/"
	@echo "make test   every test: fmt, clippy (native + wasm32), cargo test, browser tests, size, .d.ts types, page e2e"
	@echo "make lint | pkg | size | bench | phone-metadata"

## ---- installs (each skips what is already there) ----
tools: rust-tools browser-tools node-tools pg-tools

# PostgreSQL for the relay's second backend (tests and bench start their own server).
pg-tools:
	@if ! command -v pg_ctl >/dev/null && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; fi

rust-tools:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@if [ "$$(wasm-bindgen --version 2>/dev/null | awk '{print $$2}')" != "$(WASM_BINDGEN_VERSION)" ]; then \
		echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION)"; \
		cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION); fi
	@command -v wasm-pack >/dev/null || cargo install wasm-pack

browser-tools:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! command -v curl >/dev/null \
		|| ! [ -x /usr/sbin/nginx ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-lohit-deva curl nginx; fi

node-tools:
	@[ -x node_modules/.bin/wasm-opt ] && [ -x node_modules/.bin/tsc ] && [ -d node_modules/sms-segments-calculator ] && [ -d node_modules/standardwebhooks ] \
		|| npm install --no-audit --no-fund

## ---- build ----
pkg: rust-tools node-tools
	wasm-pack build --release --target web --out-dir $(PKG) --no-pack
	wasm-opt $(WASM_OPT_FLAGS) $(PKG)/sms_module_bg.wasm -o $(PKG)/sms_module_bg.wasm
	@$(MAKE) --no-print-directory size

# The npm package (E6): the release module, its typed API and a manifest, packed by npm.
PACKAGE_DIR := target/package
package: rust-tools node-tools
	rm -rf $(PACKAGE_DIR) && wasm-pack build --release --target web --out-dir $(PACKAGE_DIR) --no-pack
	wasm-opt $(WASM_OPT_FLAGS) $(PACKAGE_DIR)/sms_module_bg.wasm -o $(PACKAGE_DIR)/sms_module_bg.wasm
	rm -f $(PACKAGE_DIR)/.gitignore
	node tools/package.mjs $(PACKAGE_DIR)
	cd $(PACKAGE_DIR) && npm pack --pack-destination .. --loglevel=warn

# The packed package installed with Vite into a fresh folder, a minimal page built on it
# and served by a demo relay, checked in Chromium.
EMBED_PORT ?= 18183
embed: package
	cargo build -p sms-relay
	node tests/embed/embed.mjs target/acme-sms-module-$$(node -p 'require("./$(PACKAGE_DIR)/package.json").version').tgz $(EMBED_PORT)

size:
	@wasm=$$(gzip -9c $(PKG)/sms_module_bg.wasm | wc -c); js=$$(gzip -9c $(PKG)/sms_module.js | wc -c); \
	echo "size: wasm $$(wc -c < $(PKG)/sms_module_bg.wasm) B raw, $$wasm B gzip; JS glue $$js B gzip; total $$((wasm + js)) B gzip"; \
	node tests/instantiate.mjs $(PKG)/sms_module_bg.wasm

## ---- main jobs ----
demo: pkg
	cargo build --release -p sms-relay
	@echo ""
	@echo "Demo: http://$(HOST):$(PORT)/  (relay + page; Ctrl-C to stop)"
	@echo "Customer phone: POST http://$(HOST):$(PORT)/demo/phone/send {from, to, body}"
	@echo ""
	./target/release/sms-relay --config relay/demo/relay.toml --bind $(HOST):$(PORT)

lint: rust-tools
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p sms-module -p sms-core --all-targets --target wasm32-unknown-unknown -- -D warnings

test: tools lint
	cargo test --workspace
	# The relay's suite again on PostgreSQL (a server of its own, stopped after).
	tools/pg-test.sh run cargo test -p sms-relay --tests
	wasm-pack test --headless --chrome --chromedriver /usr/bin/chromedriver
	@$(MAKE) --no-print-directory pkg
	tsc -p tests/types
	node tests/segments/twilio.mjs
	@$(MAKE) --no-print-directory e2e
	@$(MAKE) --no-print-directory embed

# The page end to end in Chromium against a demo relay on a free port and a fresh database;
# then the issue's scenarios, which start, stop and restart their own relay.
E2E_PORT ?= 18181
E2E_SCENARIO_PORT ?= 18182
e2e: node-tools
	cargo build -p sms-relay
	@db=$$(mktemp -d)/e2e.db; \
	./target/debug/sms-relay --config relay/demo/relay.toml --bind 127.0.0.1:$(E2E_PORT) --database $$db > $$db.log 2>&1 & pid=$$!; \
	for i in $$(seq 50); do curl -sf http://127.0.0.1:$(E2E_PORT)/healthz >/dev/null && break; sleep 0.2; done; \
	node tests/e2e/smoke.mjs http://127.0.0.1:$(E2E_PORT)/ && node tests/types/runtime.mjs http://127.0.0.1:$(E2E_PORT)/; \
	rc=$$?; kill $$pid; exit $$rc
	node tests/e2e/scenarios.mjs $(E2E_SCENARIO_PORT)

bench: rust-tools node-tools browser-tools pg-tools pkg
	cargo run --release -p sms-core --example bench
	cargo build --release -p sms-relay
	cargo run --release -p sms-relay --example load
	# A new device for a seller with 10,000 conversations: snapshot vs log replay (E3).
	node tests/bench/snapshot.mjs
	# The same load over two nodes sharing a PostgreSQL of its own (X9).
	tools/pg-test.sh run sh -c 'LOAD_NODES=2 LOAD_DATABASE="$$RELAY_TEST_DATABASE_URL" cargo run --release -p sms-relay --example load'
	@$(MAKE) --no-print-directory bench-browser

# Browser benchmarks: a module built with the `bench` feature, served on 127.0.0.1.
BENCH_PORT ?= 18190
bench-browser: rust-tools node-tools
	@[ -f node_modules/handlebars/dist/handlebars.min.js ] || npm install --no-audit --no-fund --no-save handlebars@4
	rm -rf target/bench-www && mkdir -p target/bench-www
	wasm-pack build --release --target web --out-dir target/bench-www/pkg --no-pack --features bench
	wasm-opt $(WASM_OPT_FLAGS) target/bench-www/pkg/sms_module_bg.wasm -o target/bench-www/pkg/sms_module_bg.wasm
	cp tests/bench/bench.html tests/bench/bench.js node_modules/handlebars/dist/handlebars.min.js target/bench-www/
	@python3 -m http.server $(BENCH_PORT) --bind 127.0.0.1 --directory target/bench-www >/dev/null 2>&1 & pid=$$!; sleep 1; \
	node tests/bench/browser.mjs http://127.0.0.1:$(BENCH_PORT)/bench.html; rc=$$?; kill $$pid; exit $$rc

## ---- maintenance ----
# Regenerates the phone metadata from the newest libphonenumber-js on npm.
phone-metadata:
	d=$$(mktemp -d) && cd $$d && npm pack libphonenumber-js >/dev/null && tar xzf libphonenumber-js-*.tgz && \
	python3 $(CURDIR)/tools/gen_phone_metadata.py package/metadata.min.json > $(CURDIR)/crates/sms-core/src/phone/metadata.rs

clean:
	cargo clean
	rm -rf $(PKG) node_modules
