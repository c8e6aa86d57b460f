#!/usr/bin/env bash
# Prepares a Debian machine for dockercri and its tests: installs what is
# missing (Docker Engine, busybox-static, the distribution registry), starts
# dockerd when none answers, and builds the local test images. Idempotent;
# run as root.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

need_pkgs=()
# containernetworking-plugins (in /usr/lib/cni), iptables (portmap,
# firewall) and iproute2: the CNI pod-network tests. strace: the test that
# checkpoints are fsynced.
for pkg in docker.io busybox-static docker-registry apache2-utils curl systemd tar \
  containernetworking-plugins iptables iproute2 strace; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# Debian 13 (trixie) and later ship the docker CLI in its own package,
# which docker.io only recommends.
if ! command -v docker >/dev/null; then
  log "installing docker-cli"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-cli >/dev/null
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

# Two local registries for the image tests (Debian's docker-registry, the
# CNCF distribution registry): open on 127.0.0.1:5000, htpasswd auth on
# 127.0.0.1:5001. Docker treats 127.0.0.0/8 as insecure (plain HTTP) already.
REGISTRY_DIR=/var/lib/dockercri-test
REGISTRY_USER=dockercri-user
REGISTRY_PASS=dockercri-pass

# The HTTP status of GET /v2/ on 127.0.0.1:$1, or 000 when nothing answers.
registry_status() {
  curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/v2/" || true
}

start_registry() {
  local name=$1 port=$2 want=$3 auth=$4
  local status
  status=$(registry_status "$port")
  [ "$status" = "$want" ] && return 0
  if [ "$status" != 000 ]; then
    log "127.0.0.1:$port answers $status on /v2/ (want $want): not our $name registry; free the port"
    exit 1
  fi
  log "starting the $name registry on 127.0.0.1:$port"
  mkdir -p "$REGISTRY_DIR/registry-$name"
  local config="$REGISTRY_DIR/registry-$name.yml"
  {
    printf 'version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n'
    printf 'storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n' "$REGISTRY_DIR/registry-$name"
    printf 'http:\n  addr: 127.0.0.1:%s\n' "$port"
    if [ -n "$auth" ]; then
      printf 'auth:\n  htpasswd:\n    realm: dockercri-test\n    path: %s\n' "$auth"
    fi
  } >"$config"
  nohup setsid docker-registry serve "$config" >"/var/log/dockercri-registry-$name.log" 2>&1 </dev/null &
  for _ in $(seq 1 50); do
    [ "$(registry_status "$port")" = "$want" ] && return 0
    sleep 0.2
  done
  log "the $name registry did not come up; see /var/log/dockercri-registry-$name.log"
  tail -20 "/var/log/dockercri-registry-$name.log" >&2
  exit 1
}

# The package's own instance (systemd machines) listens on :5000 with a
# config that does not serve; the tests need the port.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  log "stopping the packaged docker-registry service (it holds port 5000)"
  systemctl stop docker-registry
fi
mkdir -p "$REGISTRY_DIR"
if ! htpasswd -vb "$REGISTRY_DIR/htpasswd" "$REGISTRY_USER" "$REGISTRY_PASS" >/dev/null 2>&1; then
  htpasswd -Bbn "$REGISTRY_USER" "$REGISTRY_PASS" >"$REGISTRY_DIR/htpasswd"
fi
start_registry open 5000 200 ""
start_registry auth 5001 401 "$REGISTRY_DIR/htpasswd"
log "ready"
