#!/usr/bin/env bash
# Runs inside the guest (started by the image's dockercri-guest-job unit,
# see scripts/guest/image.sh): waits for docker.service, prepares the test
# images and registries (scripts/setup.sh: every package is already in the
# image), runs the nextest archive the host handed over with the host's
# filter, writes the results to the job share and powers the guest off.
# The checkout's share is at /run/dockercri-repo; the job share
# (/run/dockercri-guest) holds `env` (written by
# scripts/guest/run.sh), tests/ (the unpacked nextest archive),
# cargo-nextest, dockercri and dockercri.deb (the package); the
# results go to its results/ directory: rc, nextest-{suite,units}.log,
# junit-{suite,units}.xml, platform.txt, journal.txt.
set -uo pipefail

job=/run/dockercri-guest
. "$job/env"
[ -z "${TRACE:-}" ] || set -x
out="$job/results"
mkdir -p "$out"

log() { printf 'guest: %s\n' "$*"; }

# Whatever happens below, the host gets an exit status, the journal, and
# a guest that powers off (qemu runs with -no-reboot).
rc=1
finish() {
  echo "$rc" >"$out/rc"
  journalctl -b --no-pager -o short-monotonic >"$out/journal.txt" 2>&1 || true
  sync
  log "done (rc $rc) at $(cut -d' ' -f1 /proc/uptime) s of uptime; powering off"
  systemctl poweroff --no-block
}
trap finish EXIT

log "job started at $(cut -d' ' -f1 /proc/uptime) s of uptime; docker.service: $(systemctl is-active docker)"
# The job is ordered after docker.service; dockerd answers at once unless
# it failed to start.
for _ in $(seq 1 60); do
  timeout 20 docker info >/dev/null 2>&1 && break
  sleep 2
done
if ! timeout 20 docker info >/dev/null 2>&1; then
  log "dockerd does not answer"
  systemctl status docker containerd --no-pager || true
  journalctl -b -u docker -u containerd -n 100 --no-pager || true
  exit 1
fi
log "dockerd answers at $(cut -d' ' -f1 /proc/uptime) s of uptime"

{
  echo "kernel: $(uname -r)"
  echo "systemd: $(systemctl --version | head -1)"
  echo "cgroup fs: $(stat -fc %T /sys/fs/cgroup)"
  docker version --format 'docker: {{.Server.Version}} (API {{.Server.APIVersion}})'
  docker info --format 'cgroup driver: {{.CgroupDriver}}, cgroup version: {{.CgroupVersion}}, storage: {{.Driver}}'
  dpkg-query -W -f 'containerd: ${Version}\nrunc: ' containerd 2>/dev/null || true
  dpkg-query -W -f '${Version}\n' runc 2>/dev/null || true
} >"$out/platform.txt" 2>&1
sed 's/^/guest: /' "$out/platform.txt"

# The test binaries were built on the host: they read the sources at the
# checkout's host path (REPO_DIR) and start the dockercri binary at the
# host's path (BIN_PATH), both compiled in. A copy of the checkout (from
# the read-only share, without .git and target) goes there, on the guest's
# own disk, where nextest can write its store too; the binary is linked.
mkdir -p "$REPO_DIR"
tar -C /run/dockercri-repo --exclude=./.git --exclude=./target -c . | tar -C "$REPO_DIR" -x
mkdir -p "$(dirname "$BIN_PATH")"
ln -sf "$job/dockercri" "$BIN_PATH"

log "scripts/setup.sh"
"$REPO_DIR/scripts/setup.sh" || { log "setup.sh failed"; exit 1; }

# Two runs: the host's filter without tests/systemd_units.rs, then that
# binary alone (it stops docker.service, which would break any test running
# beside it). A run that selects no test passes. The archive was unpacked
# on the host (tests/ in the job share).
nextest() {
  local name=$1 expr=$2
  local source=(--binaries-metadata "$job/tests/target/nextest/binaries-metadata.json"
    --cargo-metadata "$job/tests/target/nextest/cargo-metadata.json"
    --target-dir-remap "$job/tests/target")
  log "nextest ($name): $expr; $NEXTEST_ARGS"
  # shellcheck disable=SC2086 # NEXTEST_ARGS is a list of words.
  "$job/cargo-nextest" nextest run "${source[@]}" --workspace-remap "$REPO_DIR" \
    --profile guest --no-fail-fast --no-tests pass \
    $NEXTEST_ARGS -E "$expr" 2>&1 | tee "$out/nextest-$name.log"
  local status=${PIPESTATUS[0]}
  local junit
  junit=$(find "$REPO_DIR/target" -name junit.xml -path '*guest*' 2>/dev/null | head -1)
  [ -z "$junit" ] || mv "$junit" "$out/junit-$name.xml"
  return "$status"
}
rc=0
nextest suite "($FILTER) - binary(systemd_units)" || rc=$?
# The package the units test installs (scripts/guest/run.sh copies it).
[ ! -f "$job/dockercri.deb" ] || export DOCKERCRI_PACKAGE="$job/dockercri.deb"
nextest units "($FILTER) & binary(systemd_units)" || rc=$?
