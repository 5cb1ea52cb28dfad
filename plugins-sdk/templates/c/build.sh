#!/usr/bin/env bash
# Builds plugin.wasm from the C sources. On the first build it installs what it needs, by package name:
# clang, lld, wasi-libc and clang's wasm32 runtime from Debian; wit-bindgen (the bindings generator) from
# crates.io into .tools; jco (which wraps the compiled module into a component) from npm into node_modules.
set -euo pipefail
cd "$(dirname "$0")"
wit_bindgen=0.63.0
jco=1.35.0

missing=()
command -v clang >/dev/null || missing+=(clang)
command -v wasm-ld >/dev/null || missing+=(lld)
[ -f /usr/lib/wasm32-wasi/libc.a ] || missing+=(wasi-libc)
compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null \
  || missing+=("libclang-rt-$(clang --version 2>/dev/null | sed -n 's/.*clang version \([0-9]*\).*/\1/p' || echo 14)-dev-wasm32")
if [ ${#missing[@]} -gt 0 ]; then
  as_root=""
  if [ "$(id -u)" -ne 0 ]; then as_root="sudo"; fi
  $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
if [ ! -x .tools/bin/wit-bindgen ]; then
  cargo install --locked --quiet --root .tools "wit-bindgen-cli@$wit_bindgen" --no-default-features --features c
fi
if [ ! -x node_modules/.bin/jco ]; then
  npm install --silent --no-save --no-package-lock --no-audit --no-fund "@bytecodealliance/jco@$jco"
fi

# The contract's types and glue, generated from wit/plugin.wit: gen/rules.h, gen/rules.c and the component
# type that tells the wrapper which world the module implements.
.tools/bin/wit-bindgen c wit --world rules --out-dir gen >/dev/null
# A reactor (a library with no main), against wasi-libc; it imports nothing from WASI unless the code asks.
clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Igen \
  -o core.wasm plugin.c recado_helpers.c json.c gen/rules.c gen/rules_component_type.o
node_modules/.bin/jco new core.wasm --wasi-reactor -o plugin.wasm >/dev/null
echo "built plugin.wasm ($(wc -c < plugin.wasm) bytes)"
