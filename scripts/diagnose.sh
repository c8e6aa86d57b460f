#!/usr/bin/env bash
# What the machine and dockerd look like now: load, memory, disk, the
# containers Docker holds, the busiest processes, the end of dockerd's
# log, and dockerd's goroutines that have waited for minutes (from the
# stack dump dockerd writes on SIGUSR1). Prints only; bounded in time.
set -u
section() { printf '\n=== diagnose: %s\n' "$*"; }
section "load, memory, disk"
uptime
free -m | head -2
df -h / /var/lib/docker 2>/dev/null | awk '!seen[$1 $6]++'
section "dockerd answers?"
timeout 10 docker version --format 'server {{.Server.Version}}' || echo "docker version: no answer in 10 s"
section "containers by state"
timeout 10 docker ps -a --format '{{.State}}' | sort | uniq -c || echo "docker ps: no answer in 10 s"
section "busiest processes"
ps -eo pid,pcpu,rss,etime,comm --sort=-pcpu | head -12
ps -e --no-headers -o comm | sort | uniq -c | sort -rn | head -8
section "dockerd log (last 25 lines)"
tail -25 /var/log/dockerd.log 2>/dev/null
pid=$(pidof dockerd || true)
if [ -n "$pid" ]; then
  section "dockerd goroutines: states, lock waits, containerd calls in flight"
  before=$(ls /var/run/docker/goroutine-stacks-*.log 2>/dev/null | wc -l)
  kill -USR1 "$pid"
  for _ in $(seq 1 20); do
    [ "$(ls /var/run/docker/goroutine-stacks-*.log 2>/dev/null | wc -l)" -gt "$before" ] && break
    sleep 0.5
  done
  dump=$(ls -t /var/run/docker/goroutine-stacks-*.log 2>/dev/null | head -1)
  if [ -n "$dump" ]; then
    grep '^goroutine ' "$dump" | sed 's/^[^[]*\[\([^],]*\).*/\1/' | sort | uniq -c | sort -rn | head -10
    echo "containerd calls waiting for an answer: $(grep -c 'waitOnHeader' "$dump")"
    # Goroutines waiting on a lock: where a deadlock shows.
    awk '/^goroutine / {n=0} /^goroutine .*(semacquire|Mutex)/ {n=14} n>0 {print; n--}' "$dump" | head -150
  fi
fi
