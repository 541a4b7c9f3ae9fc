#!/usr/bin/env bash
# The test command (README and .ci/run): set up, lint (ruff: syntax errors, pyflakes, lines over 120 characters),
# then run the default (fast) test suite.
# Slow tests: .venv/bin/python -m pytest -m slow
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The HTML-report test renders the page in headless Chromium (Debian package); install it where we can.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "note: chromium could not be installed; the HTML rendering test will be skipped"
fi
.venv/bin/ruff check --quiet src tests benchmarks
exec .venv/bin/python -m pytest -q -m "not slow" "$@"
