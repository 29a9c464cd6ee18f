#!/usr/bin/env bash
# Run mailroom's benchmarks: `bash bench/run.sh [--quick] [options]` (see bench/README.md).
# Builds the benchmark-only environment .bench-venv on first use: the peers are installed there,
# never as dependencies of mailroom.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV=.bench-venv
if [ ! -f "$VENV/.installed" ] || [ bench/requirements.txt -nt "$VENV/.installed" ] \
    || [ pyproject.toml -nt "$VENV/.installed" ]; then
    echo "building $VENV with $("$PYTHON" --version)" >&2
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r bench/requirements.txt
    touch "$VENV/.installed"
fi
export BENCH_COMMAND="bash bench/run.sh${*:+ $*}"
exec "$VENV/bin/python" -m bench.run "$@"
