#!/usr/bin/env bash
# Builds (or finds in the cache) the guest image for scripts/guest/run.sh:
# a Debian root filesystem made from Debian's packages with mmdebstrap, with
# systemd as init, cgroup v2, Docker Engine (docker.io) on the systemd cgroup
# driver, and every package scripts/setup.sh would install, so the guest
# needs no network at test time. Prints the image's directory (rootfs.img,
# vmlinuz, initrd.img, packages.txt) on stdout.
#
# Usage: scripts/guest/image.sh [trixie|sid]      (default: trixie)
#
# Cache: $DOCKERCRI_GUEST_CACHE (default /var/cache/dockercri-guest), one
# directory per image, named after the suite and a key: the hash of this
# script (packages, configuration) and the suite's Release date, so the
# image is rebuilt when Debian publishes the suite again (a point release
# for trixie; sid every few hours) or when this script changes. When the
# archive cannot be reached, the newest image of the suite is reused.
# Run as root. Idempotent: a finished image is never rebuilt.
set -euo pipefail

suite=${1:-trixie}
mirror=${DOCKERCRI_GUEST_MIRROR:-http://deb.debian.org/debian}
cache=${DOCKERCRI_GUEST_CACHE:-/var/cache/dockercri-guest}

log() { printf 'guest-image: %s\n' "$*" >&2; }

case "$suite" in
  trixie | sid | forky | testing | unstable | stable) ;;
  *) log "unknown suite $suite (trixie or sid)"; exit 2 ;;
esac

# The packages of the guest. The first line is the node itself (mount: no
# longer pulled in by systemd in sid); the rest is
# what scripts/setup.sh installs for the tests (keep the two in step;
# docker-cli is only a Recommends of docker.io from trixie on).
packages=(
  systemd-sysv dbus udev kmod mount e2fsprogs linux-image-amd64 initramfs-tools apparmor
  docker.io docker-cli tini busybox-static docker-registry apache2-utils curl tar strace
  containernetworking-plugins iptables iproute2 procps
)

# Host tools: mmdebstrap, mke2fs, qemu-img (qemu-utils).
need=()
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v mke2fs >/dev/null || need+=(e2fsprogs)
command -v qemu-img >/dev/null || need+=(qemu-utils)
if [ "${#need[@]}" -gt 0 ]; then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The cache key.
release_date=$(curl -fsS -m 20 "$mirror/dists/$suite/InRelease" 2>/dev/null | sed -n 's/^Date: //p' | head -1 || true)
mkdir -p "$cache"
if [ -z "$release_date" ]; then
  newest=$(ls -dt "$cache/$suite"-*/ 2>/dev/null | head -1 || true)
  if [ -n "$newest" ] && [ -f "$newest/rootfs.img" ]; then
    log "cannot read $mirror/dists/$suite/InRelease; reusing $newest"
    echo "${newest%/}"
    exit 0
  fi
  log "cannot read $mirror/dists/$suite/InRelease and no cached $suite image"
  exit 1
fi
key=$( { cat "$0"; echo "$suite $release_date"; } | sha256sum | cut -c1-16)
dir="$cache/$suite-$key"
if [ -f "$dir/rootfs.img" ]; then
  log "cached: $dir ($suite of $release_date)"
  echo "$dir"
  exit 0
fi

log "building the $suite image of $release_date into $dir"
start=$(date +%s)
work="$cache/.build-$suite-$$"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

# The unit that runs a test job: scripts/guest/run.sh hands the guest two
# 9p shares, "job" (the test archive, binaries, an env file, results) and
# "repo" (the checkout, read-only). Everything the job does lives in the
# checkout (scripts/guest/in-guest.sh), so changing it needs no new image.
# Without a "job" share the unit does nothing: the guest just boots.
cat >"$work/dockercri-guest-job" <<'EOF'
#!/bin/bash
set -euo pipefail
opts=trans=virtio,version=9p2000.L,msize=1048576
mkdir -p /run/dockercri-guest /run/dockercri-repo
mount -t 9p -o "$opts,cache=loose" job /run/dockercri-guest || exit 0
mount -t 9p -o "$opts,ro" repo /run/dockercri-repo
exec bash /run/dockercri-repo/scripts/guest/in-guest.sh
EOF
cat >"$work/dockercri-guest-job.service" <<'EOF'
[Unit]
Description=dockercri test job from the host (scripts/guest/run.sh)
After=multi-user.target docker.service
Wants=docker.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/dockercri-guest-job
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF

# Docker on the systemd cgroup driver (the default on cgroup v2, said
# explicitly so the guest tests what a node configures).
cat >"$work/daemon.json" <<'EOF'
{
  "exec-opts": ["native.cgroupdriver=systemd"],
  "storage-driver": "overlay2"
}
EOF

# Check-Valid-Until off: a mirror that is a snapshot (as the one these
# machines reach) serves a sid Release past its Valid-Until; the image's
# key and its `release` file name the Release date it was built from.
mmdebstrap --variant=apt --components=main \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --aptopt='Acquire::Retries "3"' \
  --aptopt='Acquire::Check-Valid-Until "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='echo dockercri-guest >"$1/etc/hostname"' \
  --customize-hook='printf "/dev/vda / ext4 rw,relatime 0 0\n" >"$1/etc/fstab"' \
  --customize-hook='passwd --root "$1" -d root' \
  --customize-hook="mkdir -p \"\$1/etc/docker\" && cp $work/daemon.json \"\$1/etc/docker/daemon.json\"" \
  --customize-hook="install -m 0755 $work/dockercri-guest-job \"\$1/usr/local/sbin/\"" \
  --customize-hook="install -m 0644 $work/dockercri-guest-job.service \"\$1/etc/systemd/system/\"" \
  --customize-hook='chroot "$1" systemctl enable dockercri-guest-job.service' \
  --customize-hook='chroot "$1" systemctl disable docker-registry.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer dpkg-db-backup.timer 2>/dev/null || true' \
  --customize-hook='chroot "$1" systemctl mask systemd-networkd-wait-online.service serial-getty@ttyS0.service 2>/dev/null || true' \
  --customize-hook='printf "9p\n9pnet\n9pnet_virtio\n" >"$1/etc/modules-load.d/dockercri-guest.conf"' \
  --customize-hook="chroot \"\$1\" dpkg-query -W >$work/packages.txt" \
  --customize-hook="cp \"\$1\"/boot/vmlinuz-* $work/vmlinuz && cp \"\$1\"/boot/initrd.img-* $work/initrd.img" \
  "$suite" "$work/root" "deb $mirror $suite main" >&2

# The root filesystem as an ext4 image, without mounting anything; a run
# boots a qcow2 overlay on it, so every run starts from the same state.
truncate -s 12G "$work/rootfs.img"
mke2fs -q -t ext4 -L dockercri-guest -d "$work/root" "$work/rootfs.img"
rm -rf "$work/root"
echo "$suite $release_date" >"$work/release"
mkdir -p "$dir.tmp"
mv "$work/rootfs.img" "$work/vmlinuz" "$work/initrd.img" "$work/packages.txt" "$work/release" "$dir.tmp/"
rm -rf "$dir"
mv "$dir.tmp" "$dir"
log "built $dir in $(($(date +%s) - start)) s: docker.io $(awk '$1 == "docker.io" {print $2}' "$dir/packages.txt"), kernel $(awk '$1 ~ /^linux-image-[0-9]/ {print $1}' "$dir/packages.txt")"

# Older images of the suite: no run uses them any more.
for old in "$cache/$suite"-*; do
  [ "$old" = "$dir" ] || rm -rf "$old"
done
echo "$dir"
