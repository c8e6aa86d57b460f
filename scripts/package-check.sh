#!/usr/bin/env bash
# Builds the Debian package and checks it on this machine as an operator
# would use it: `apt-get install ./dockercri_*.deb` puts the binary, the
# units, the conffile and the README in place and enables the units;
# `apt-get purge` takes them away with /var/lib/dockercri and nothing
# else. (Starting the units needs systemd as PID 1: the guest suite runs
# the installed package's units, scripts/guest.)
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf 'package-check: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

scripts/package.sh >&2
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
deb=$(ls -t "$target_dir"/debian/dockercri_*.deb | head -1)
log "installing $deb"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" >/dev/null

for path in /usr/bin/dockercri /usr/lib/systemd/system/dockercri.service \
  /usr/lib/systemd/system/dockercri.socket /etc/dockercri/config.toml \
  /usr/share/doc/dockercri/README.md; do
  [ -e "$path" ] || fail "$path is not installed"
done
dpkg-query -W -f='${Conffiles}\n' dockercri | grep -q /etc/dockercri/config.toml ||
  fail "/etc/dockercri/config.toml is not a conffile"
dpkg-query -W -f='${Depends}\n' dockercri | grep -q 'docker.io | docker-ce' ||
  fail "the package does not depend on Docker Engine"
version=$(/usr/bin/dockercri --version)
log "installed: $version"
# The service's config file parses (every key commented out).
/usr/bin/dockercri --config /etc/dockercri/config.toml --help >/dev/null
# Enabled: the [Install] symlinks are in place (systemd need not run).
[ -L /etc/systemd/system/sockets.target.wants/dockercri.socket ] || fail "dockercri.socket is not enabled"
[ -L /etc/systemd/system/multi-user.target.wants/dockercri.service ] || fail "dockercri.service is not enabled"
grep -q '^ExecStart=/usr/bin/dockercri --config /etc/dockercri/config.toml' \
  /usr/lib/systemd/system/dockercri.service || fail "the unit does not start /usr/bin/dockercri with the conffile"

# Purge: dockercri's root directory goes, a neighbour stays.
mkdir -p /var/lib/dockercri/sandboxes /var/lib/dockercri-neighbour
touch /var/lib/dockercri/sandboxes/x /var/lib/dockercri-neighbour/keep
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq dockercri >/dev/null
[ ! -e /usr/bin/dockercri ] || fail "/usr/bin/dockercri left after purge"
[ ! -e /var/lib/dockercri ] || fail "/var/lib/dockercri left after purge"
[ -e /var/lib/dockercri-neighbour/keep ] || fail "purge deleted a neighbour"
[ ! -e /etc/dockercri/config.toml ] || fail "the conffile is left after purge"
[ ! -e /etc/systemd/system/sockets.target.wants/dockercri.socket ] || fail "the socket is still enabled after purge"
rm -rf /var/lib/dockercri-neighbour
log "ok: $deb installs, enables its units, and purges only what is its own"
