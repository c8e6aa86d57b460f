#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs and starts what
# the tests need (scripts/setup.sh), then runs every unit and integration
# test against the real dockerd. Extra arguments go to cargo nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --no-fail-fast "$@"
fi
exec cargo test --no-fail-fast "$@"
