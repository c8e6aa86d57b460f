#!/usr/bin/env bash
# Prepares a Debian machine for dockercri and its tests: installs what is
# missing (Docker Engine, busybox-static, the distribution registry), starts
# dockerd when none answers, and builds the local test images. Idempotent;
# run as root.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

need_pkgs=()
for pkg in docker.io busybox-static docker-registry apache2-utils systemd tar; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# dockerd: start one when nothing answers on the default socket.
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  rm -f /var/run/docker.pid
  nohup setsid dockerd >/var/log/dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not come up; see /var/log/dockerd.log"; tail -20 /var/log/dockerd.log >&2; exit 1; }
fi

# Test images: a rootfs around Debian's static busybox, imported into Docker.
make_image() {
  local name=$1 user=$2
  docker image inspect "$name" >/dev/null 2>&1 && return 0
  log "building test image $name"
  local root
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/home/app"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\napp:x:1234:\nnogroup:x:65534:\n' >"$root/etc/group"
  chmod 1777 "$root/tmp"
  local changes=(--change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin')
  [ -n "$user" ] && changes+=(--change "USER $user")
  tar -C "$root" -c . | docker import "${changes[@]}" - "$name" >/dev/null
  rm -rf "$root"
}
make_image dockercri-test/busybox:latest ""
make_image dockercri-test/busybox-user:latest "1234"
make_image dockercri-test/busybox-named:latest "app"
log "ready"
