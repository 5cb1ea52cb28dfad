#!/usr/bin/env bash
# Builds plugin.wasm from app.js. componentize-js (the StarlingMonkey engine) comes from the npm registry, into
# node_modules, on the first build. The host offers WASI 0.2 without `wasi:http`: the HTTP features are turned
# off (`-d http fetch-event`), or the upload is refused.
set -euo pipefail
cd "$(dirname "$0")"
version=0.23.0
if [ ! -x node_modules/.bin/componentize-js ]; then
  npm install --no-save --no-audit --no-fund --silent "@bytecodealliance/componentize-js@$version"
fi
node_modules/.bin/componentize-js app.js --wit wit --world-name rules --disable http fetch-event --out plugin.wasm
echo "built plugin.wasm ($(wc -c < plugin.wasm) bytes)"
