#!/usr/bin/env bash
# What tests/process/test_pgbouncer.py needs: Debian's PgBouncer, the binary only (the test
# starts its own on a free port). Idempotent: does nothing if it is already installed.
set -euo pipefail

if command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; then exit 0; fi
apt-get install -y pgbouncer || (apt-get update && apt-get install -y pgbouncer)
