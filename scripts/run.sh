#!/usr/bin/env bash
# Builds dockercri and runs it against the local dockerd on
# /run/dockercri.sock (starting dockerd first when none answers).
# Extra arguments are dockercri flags.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release
exec target/release/dockercri "$@"
