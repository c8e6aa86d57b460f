#!/usr/bin/env bash
# Builds the Debian package: target/debian/dockercri_<version>-1_<arch>.deb
# (the binary at /usr/bin/dockercri, the systemd units, a commented
# /etc/dockercri/config.toml conffile, the README, maintainer scripts from
# packaging/debian/). Installs the pinned cargo-deb when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.6.3
if [ "$(cargo deb --version 2>/dev/null | awk '{print $2}')" != "$CARGO_DEB_VERSION" ]; then
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi
# dpkg-shlibdeps works out $auto (libc) from the binary.
command -v dpkg-shlibdeps >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev >/dev/null
}
cargo deb "$@"
