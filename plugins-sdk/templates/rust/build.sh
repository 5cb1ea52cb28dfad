#!/usr/bin/env bash
# Builds plugin.wasm from src/. The wasm32-wasip2 target comes from rustup, the crates from crates.io (pinned
# by Cargo.lock), on the first build.
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-wasip2 >/dev/null
cargo build --release --locked --target wasm32-wasip2
cp target/wasm32-wasip2/release/rules.wasm plugin.wasm
echo "built plugin.wasm ($(wc -c < plugin.wasm) bytes)"
