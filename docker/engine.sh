#!/usr/bin/env bash
# Start a Docker engine when none answers (hosts without systemd: CI machines, containers), or stop the one this
# script started. With systemd, `systemctl start docker` is the usual way and this script is not needed.
#
#   docker/engine.sh start|stop|status
#
# DOCKER_HOST picks the socket (default unix:///var/run/docker.sock); DOCKER_ENGINE_ROOT (default /var/lib/docker)
# holds the images, so builds stay cached from one run to the next. Needs root and Debian's docker.io.
set -euo pipefail

DOCKER="${DOCKER:-docker}"
ROOT="${DOCKER_ENGINE_ROOT:-/var/lib/docker}"
HOST="${DOCKER_HOST:-unix:///var/run/docker.sock}"
case "$HOST" in unix://*) socket="${HOST#unix://}" ;; *) echo "engine.sh: only unix sockets: DOCKER_HOST=$HOST" >&2; exit 2 ;; esac
run_dir="$(dirname "$socket")"
pidfile="$ROOT.engine.pid"
logfile="$ROOT.engine.log"

answers() { DOCKER_HOST="$HOST" "$DOCKER" info >/dev/null 2>&1; }

start() {
  if answers; then echo "engine.sh: a Docker engine answers on $HOST"; return; fi
  [ "$(id -u)" = 0 ] || { echo "engine.sh: no Docker engine on $HOST, and starting one needs root" >&2; exit 1; }
  command -v dockerd >/dev/null || { echo "engine.sh: dockerd is missing: apt-get install -y docker.io" >&2; exit 1; }
  mkdir -p "$ROOT" "$ROOT.exec" "$run_dir"
  # overlay2 when the kernel and the filesystem allow it (fast, shared layers), else vfs (copies every layer)
  driver="${DOCKER_STORAGE_DRIVER:-overlay2}"
  echo "engine.sh: starting dockerd on $HOST (data root $ROOT, driver $driver, log $logfile)"
  nohup dockerd --data-root "$ROOT" --exec-root "$ROOT.exec" -H "$HOST" --pidfile "$pidfile" \
    --storage-driver "$driver" >"$logfile" 2>&1 &
  for _ in $(seq 1 60); do
    if answers; then echo "engine.sh: engine up"; return; fi
    if ! kill -0 "$!" 2>/dev/null; then break; fi
    sleep 1
  done
  echo "engine.sh: dockerd did not answer on $HOST; its log ($logfile) ends with:" >&2
  tail -n 20 "$logfile" >&2 || true
  exit 1
}

stop() {
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    pid="$(cat "$pidfile")"
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || { echo "engine.sh: engine stopped"; return; }; sleep 1; done
    kill -9 "$pid" 2>/dev/null || true
  else
    echo "engine.sh: no engine started by this script (pid file $pidfile)"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if answers; then echo "engine.sh: up on $HOST"; else echo "engine.sh: down on $HOST"; exit 1; fi ;;
  *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
