#!/usr/bin/env bash
# The second platform of the test loop: runs the integration tests inside a
# Debian guest (qemu) with systemd as PID 1, cgroup v2 and Docker Engine on
# the systemd cgroup driver, where the host has Docker 20.10 on cgroup v1.
#
# Usage: scripts/guest/run.sh [--suite trixie|sid] [--filter EXPR] [--all]
#                             [-- extra cargo-nextest run arguments]
#   --suite   Debian suite of the guest (default trixie: Docker 26.1,
#             containerd 1.7; sid: Docker 28.5, containerd 2.1)
#   --filter  a nextest filter expression instead of GUEST_FILTER below
#   --all     every test, including those only the guest can run
# Environment: DOCKERCRI_GUEST_ACCEL=auto|kvm|tcg (default auto: KVM when
# it boots the guest, TCG otherwise), DOCKERCRI_GUEST_CPUS (2),
# DOCKERCRI_GUEST_MEM (4096 MiB), DOCKERCRI_GUEST_TIMEOUT (minutes the guest
# may run, default 30), DOCKERCRI_GUEST_CACHE (image cache, see image.sh),
# DOCKERCRI_GUEST_REUSE_ARCHIVE=1 (reuse the last run's test archive),
# DOCKERCRI_GUEST_TRACE=1 (the guest script traces its commands).
#
# What it does: builds or reuses the guest image (scripts/guest/image.sh),
# packs the test suite (`cargo nextest archive`, unpacked in the job
# directory), boots the image's kernel
# on a fresh qcow2 overlay with two 9p shares (the job directory and this
# checkout, read-only), streams the guest's console, and exits with the
# guest suite's status. The guest side is scripts/guest/in-guest.sh; the
# results stay in <target>/guest/<suite>/results (nextest-*.log,
# junit-*.xml, platform.txt, journal.txt). Run as root, from any directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)

# What runs in the guest. Under TCG (the only accelerator on the CI
# machines, about 12x slower than the host: a test takes 25-80 s there)
# the whole suite would take hours, so the guest runs what the platform
# (Docker 26+, cgroup v2, the systemd cgroup driver, systemd as PID 1)
# changes, about 45 tests in about 20 minutes:
#   sandbox, container: lifecycle, resources and cgroups, mounts, OOM;
#   stats: cgroup v2 stats;
#   stream's exec_* tests: ExecSync and exec over SPDY and WebSocket;
#   platform: kubelet's systemd cgroup parents, unified files, OOMKilled,
#     privileged containers, (non-)recursive read-only mounts (ignored on
#     the host);
#   kubelet_pleg: the evented PLEG's view of a pod;
#   daemon's status_features_follow_dockers_api_version: API 1.44+ features;
#   systemd_units: the units under systemd as PID 1, from the checkout and
#     from the Debian package (ignored on the host).
# Everything else (image pulls, attach/port-forward, CNI, events, the
# index, reliability, metrics, benchmarks, pure tests) runs on the host
# only (scripts/test.sh). So do the log tests: under TCG a debug build
# copies a container's output about 12x slower, past the 2 s that
# ContainerStatus waits for the CRI log of an exited container.
# GUEST_BINARIES lists the test binaries the
# filter needs (only they are packed); keep the two in step.
GUEST_FILTER='binary(sandbox) | binary(container) | binary(stats) | (binary(stream) & test(/^exec_/)) | binary(platform) | binary(kubelet_pleg) | (binary(daemon) & test(status_features_follow_dockers_api_version)) | binary(systemd_units)'
GUEST_BINARIES=(sandbox container stats stream platform kubelet_pleg daemon systemd_units)

suite=trixie
filter=$GUEST_FILTER
while [ $# -gt 0 ]; do
  case "$1" in
    --suite) suite=$2; shift 2 ;;
    --filter) filter=$2; shift 2 ;;
    --all) filter='all()'; shift ;;
    --) shift; break ;;
    *) echo "usage: $0 [--suite trixie|sid] [--filter EXPR] [--all] [-- nextest args]" >&2; exit 2 ;;
  esac
done
# The guest-only tests are #[ignore]d on the host: the guest runs them too.
nextest_args="--run-ignored all $*"

accel=${DOCKERCRI_GUEST_ACCEL:-auto}
cpus=${DOCKERCRI_GUEST_CPUS:-2}
mem=${DOCKERCRI_GUEST_MEM:-4096}
limit_min=${DOCKERCRI_GUEST_TIMEOUT:-30}

log() { printf 'guest-run: %s\n' "$*" >&2; }
t0=$(date +%s)

command -v qemu-system-x86_64 >/dev/null || {
  log "installing qemu-system-x86"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null
}

image=$(scripts/guest/image.sh "$suite")
t_image=$(date +%s)

# The job directory, shared with the guest.
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
job="$target_dir/guest/$suite"
rm -rf "$job/results" "$job/console.log" "$job/overlay.qcow2"
mkdir -p "$job/results"
if [ -n "${DOCKERCRI_GUEST_REUSE_ARCHIVE:-}" ] && [ -f "$job/tests.tar.zst" ]; then
  log "reusing $job/tests.tar.zst (DOCKERCRI_GUEST_REUSE_ARCHIVE)"
else
  # GUEST_FILTER needs only GUEST_BINARIES; another filter gets them all.
  tests=()
  if [ "$filter" = "$GUEST_FILTER" ]; then
    for name in "${GUEST_BINARIES[@]}"; do tests+=(--test "$name"); done
    tests+=(--bins)
  fi
  log "packing the test suite (cargo nextest archive ${tests[*]})"
  cargo nextest archive "${tests[@]}" --archive-file "$job/tests.tar.zst" >&2
fi
# Unpacked here, not in the guest: under TCG nextest takes 8 s a binary
# to unpack it there. The guest runs the binaries from the share.
rm -rf "$job/tests"
mkdir -p "$job/tests"
tar --zstd -xf "$job/tests.tar.zst" -C "$job/tests"
# The dockercri binary the tests start is compiled into them as this path.
bin_path="$target_dir/debug/dockercri"
cp "$bin_path" "$job/dockercri"
cp "$(command -v cargo-nextest)" "$job/cargo-nextest"
# The Debian package, for the units test that installs it (a release
# build; CI has just built it for scripts/package-check.sh).
rm -f "$job/dockercri.deb"
if [ "$filter" = all\(\) ] || [[ "$filter" == *systemd_units* ]]; then
  log "building the package (scripts/package.sh)"
  scripts/package.sh >&2
  cp "$(ls -t "$target_dir"/debian/dockercri_*.deb | head -1)" "$job/dockercri.deb"
fi
cat >"$job/env" <<EOF
REPO_DIR=$(printf %q "$repo")
BIN_PATH=$(printf %q "$bin_path")
FILTER=$(printf %q "$filter")
NEXTEST_ARGS=$(printf %q "$nextest_args")
TRACE=${DOCKERCRI_GUEST_TRACE:-}
EOF
t_pack=$(date +%s)

# A fresh overlay on the cached image: every run starts from the same state.
qemu-img create -q -f qcow2 -b "$image/rootfs.img" -F raw "$job/overlay.qcow2"

# Boots the guest with accelerator $1; the console goes to $job/console.log.
boot() {
  local accel=$1 cpu=max
  [ "$accel" = kvm ] && cpu=host
  : >"$job/console.log"
  qemu-system-x86_64 -machine q35 -accel "$accel" -cpu "$cpu" -smp "$cpus" -m "$mem" \
    -nodefaults -display none -no-reboot \
    -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 panic=-1 quiet systemd.show_status=error" \
    -drive "file=$job/overlay.qcow2,if=virtio,format=qcow2,cache=unsafe" \
    -virtfs "local,path=$job,mount_tag=job,security_model=none,id=job" \
    -virtfs "local,path=$repo,mount_tag=repo,security_model=none,readonly=on,id=repo" \
    -serial "file:$job/console.log" \
    -device virtio-rng-pci \
    >"$job/qemu.log" 2>&1 &
  qemu_pid=$!
}

# auto: KVM first, when /dev/kvm exists; the stock Debian kernel does not
# run under PVM's KVM (/dev/kvm of these machines): qemu stops with
# "KVM internal error" within seconds. Then TCG.
used=tcg
if [ "$accel" != tcg ] && [ -c /dev/kvm ]; then
  boot kvm
  ok=
  for _ in $(seq 1 60); do
    if grep -q 'job started' "$job/console.log" 2>/dev/null; then ok=1; break; fi
    if ! kill -0 "$qemu_pid" 2>/dev/null || grep -q 'KVM internal error\|failed to initialize kvm\|Could not access KVM' "$job/qemu.log"; then break; fi
    sleep 1
  done
  if [ -n "$ok" ]; then
    used=kvm
  else
    log "KVM did not boot the guest: $(head -c 300 "$job/qemu.log" | tr '\n' ' ')"
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
    [ "$accel" = kvm ] && exit 1
    qemu-img create -q -f qcow2 -b "$image/rootfs.img" -F raw "$job/overlay.qcow2"
  fi
fi
# Streams the console until qemu exits (the guest powers off when done)
# or the time limit passes.
watch_guest() {
  tail -n +1 -F "$job/console.log" 2>/dev/null &
  local tail_pid=$!
  while kill -0 "$qemu_pid" 2>/dev/null; do
    [ -n "$t_job" ] || ! grep -q 'job started' "$job/console.log" || t_job=$(date +%s)
    if [ "$(date +%s)" -gt "$deadline" ]; then
      log "the guest ran for more than $limit_min minutes: stopping it"
      kill "$qemu_pid" 2>/dev/null || true
      break
    fi
    sleep 2
  done
  wait "$qemu_pid" 2>/dev/null || true
  sleep 1
  kill "$tail_pid" 2>/dev/null || true
  wait "$tail_pid" 2>/dev/null || true
  [ -s "$job/qemu.log" ] && log "qemu: $(tr '\n' ' ' <"$job/qemu.log")"
  return 0
}

deadline=$(($(date +%s) + limit_min * 60))
t_job=
[ "$used" = kvm ] || boot tcg,thread=multi
log "guest booting ($used, $cpus CPUs, $mem MiB); console: $job/console.log"
watch_guest
# The guest kernel under TCG has panicked mid-run (once in CI, in the
# scheduler, on code the kernel patches at run time, which TCG must
# retranslate on every vCPU): that is the emulator, not a test result, so
# the whole guest job runs once more from a fresh overlay. Nothing else is
# retried, and a second panic fails the run.
if [ ! -f "$job/results/rc" ] && grep -q 'Kernel panic' "$job/console.log" && [ "$(date +%s)" -lt "$deadline" ]; then
  log "the guest kernel panicked ($(grep -m1 -o 'RIP: .*' "$job/console.log" || echo 'no RIP')); booting it again"
  cp "$job/console.log" "$job/console-panic.log"
  rm -rf "$job/results"
  mkdir -p "$job/results"
  qemu-img create -q -f qcow2 -b "$image/rootfs.img" -F raw "$job/overlay.qcow2"
  t_job=
  boot "$([ "$used" = kvm ] && echo kvm || echo tcg,thread=multi)"
  watch_guest
fi
t_end=$(date +%s)
rm -rf "$job/overlay.qcow2" "$job/tests"

res="$job/results"
rc=$(cat "$res/rc" 2>/dev/null || echo 1)
log "platform: $(tr '\n' ';' <"$res/platform.txt" 2>/dev/null)"
for part in suite units; do
  summary=$(grep -E '^ *Summary ' "$res/nextest-$part.log" 2>/dev/null | tail -1 || true)
  log "guest $part ($suite, $used): ${summary:-no summary (see $job/console.log)}"
done
log "times: image $((t_image - t0))s, pack $((t_pack - t_image))s, boot to job ${t_job:+$((t_job - t_pack))}s, guest in all $((t_end - t_pack))s; results in $res"
exit "$rc"
