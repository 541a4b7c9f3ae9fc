#!/usr/bin/env bash
# Creates .venv and installs ehrdiff with everything the demo and the tests need.
# On a machine without an NVIDIA GPU the CPU wheel of PyTorch is pinned first, so pip never pulls a CUDA build.
# GPU machines: EHRDIFF_TORCH="torch" bash scripts/setup.sh  (or install the CUDA wheel you want into .venv first).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q "${EHRDIFF_TORCH:-torch==2.13.0}"
fi
.venv/bin/pip install -q -e ".[dp,meds,dev]"
