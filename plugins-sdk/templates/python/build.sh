#!/usr/bin/env bash
# Builds plugin.wasm from app.py. componentize-py comes from PyPI, into .venv, on the first build.
set -euo pipefail
cd "$(dirname "$0")"
version=0.25.1
if [ ! -x .venv/bin/componentize-py ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "componentize-py==$version"
fi
.venv/bin/componentize-py --wit-path wit --world rules componentize app --output plugin.wasm
echo "built plugin.wasm ($(wc -c < plugin.wasm) bytes)"
