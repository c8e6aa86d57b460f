#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs and starts what
# the tests need (scripts/setup.sh), then runs every unit and integration
# test against the real dockerd. Extra arguments go to cargo nextest.
# When tests fail, the state of the machine and of dockerd is printed
# (scripts/diagnose.sh) so that a failure on a CI machine can be read.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Containers a killed test run left behind (tests label what they make).
stale=$(docker ps -aq --filter label=dockercri.test)
[ -z "$stale" ] || docker rm -f $stale >/dev/null
# A run stops after 10 failures (a dockerd that stopped answering fails
# every test after it; the diagnosis below is then taken while it still
# hangs), and .config/nextest.toml kills a test after 4 minutes.
rc=0
if cargo nextest --version >/dev/null 2>&1; then
  timeout --signal=TERM --kill-after=60 40m cargo nextest run --max-fail 10 "$@" || rc=$?
else
  timeout --signal=TERM --kill-after=60 40m cargo test --no-fail-fast "$@" || rc=$?
fi
[ "$rc" = 0 ] || scripts/diagnose.sh || true
exit "$rc"
