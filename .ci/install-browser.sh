#!/usr/bin/env bash
# What the admin's browser tests (tests/browser) need: Debian's Chromium, and Playwright in each
# virtual environment that runs the suite. Idempotent: does nothing that is already done.
# Playwright drives /usr/bin/chromium; its own browser download (`playwright install`) is not used.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium)

for venv in "$@"; do
  "$venv/bin/python" -c "import playwright" 2>/dev/null \
    || "$venv/bin/pip" install --quiet --disable-pip-version-check "playwright>=1.40"
done
