#!/usr/bin/env bash
# Stand-in base images for hosts that reach no container registry (our CI machines do not; GitHub's runners and a
# normal Docker host do, and never need this). Every third-party image named by our Dockerfiles and compose files is
# built from Debian packages and PyPI and tagged with the exact upstream name, so the same files build and run
# unchanged. MongoDB and Grafana have neither a Debian package nor a PyPI build: they have no stand-in.
#
#   docker/stand-in-images/build.sh            (make images-offline)
#
# Idempotent: an image whose recipe has not changed (label churn-mlops.stand-in = hash of its recipe) is kept, so a
# second run takes seconds. Cold: ~1 min of debootstrap for the Python base, then ~1 min for the others.
# DOCKER (default: docker) is the client; DEBIAN_MIRROR the Debian archive (default: the host's apt source).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
DOCKER="${DOCKER:-docker}"
SUITE=bookworm
PYTHON_IMAGE="python:3.11.14-slim-bookworm"
# name | recipe folder (built FROM the Python stand-in)
IMAGES=(
  "ghcr.io/astral-sh/uv:0.13.9|uv"
  "motoserver/moto:5.2.5|moto"
  "prom/prometheus:v2.53.2|prometheus"
  "prom/alertmanager:v0.27.0|alertmanager"
  "nginxinc/nginx-unprivileged:1.27.2-alpine|nginx-unprivileged"
  "redis:7.0.15-bookworm|redis"
)

log() { printf '[stand-in images] %s\n' "$*" >&2; }

recipe_hash() {  # the Python base: this script; the others: their folder and the Python base they build on
  if [ -z "${1:-}" ]; then sha256sum <"$HERE/build.sh" | cut -c1-16; return; fi
  { "$DOCKER" image inspect --format '{{ .Id }}' "$PYTHON_IMAGE"; find "$HERE/$1" -type f | sort | xargs cat; } |
    sha256sum | cut -c1-16
}

current_hash() {
  "$DOCKER" image inspect --format '{{ index .Config.Labels "churn-mlops.stand-in" }}' "$1" 2>/dev/null || true
}

is_upstream() {  # the image is there without our label: pulled from its registry, never replaced
  "$DOCKER" image inspect "$1" >/dev/null 2>&1 && [ -z "$(current_hash "$1")" ]
}

debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri="$(grep -hsE '^URIs:' /etc/apt/sources.list.d/debian.sources | awk '{print $2}' | grep -v security | head -n1 || true)"
  if [ -z "$uri" ]; then
    uri="$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -n1 || true)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

host_ca_bundle() {
  for candidate in "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$candidate" ] && [ -s "$candidate" ]; then echo "$candidate"; return; fi
  done
}

build_python() {
  local want; want="$(recipe_hash)"
  if [ "$(current_hash "$PYTHON_IMAGE")" = "$want" ]; then log "$PYTHON_IMAGE: up to date"; return; fi
  if is_upstream "$PYTHON_IMAGE"; then log "$PYTHON_IMAGE: the upstream image is here, kept"; return; fi
  command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install -y debootstrap"; exit 1; }
  local mirror root ca
  mirror="$(debian_mirror)"
  root="$(mktemp -d "${TMPDIR:-/tmp}/stand-in-rootfs.XXXXXX")"
  log "$PYTHON_IMAGE: debootstrap $SUITE from $mirror (about a minute)"
  debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-pip,ca-certificates \
    "$SUITE" "$root" "$mirror" >"$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
  rm -f "$root.log"
  # The upstream image's interpreter lives in /usr/local/bin; ours is Debian's, linked there.
  for name in python3.11 python3 python; do ln -sf /usr/bin/python3.11 "$root/usr/local/bin/$name"; done
  ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
  # Reach the registries the way this host does: its CA bundle (kept apart, so a later ca-certificates run cannot
  # drop a proxy's CA) and its pip configuration.
  ca="$(host_ca_bundle)"
  if [ -n "$ca" ]; then
    cp "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
    cp "$ca" "$root/usr/local/share/host-ca-bundle.crt"
  fi
  [ -f /etc/pip.conf ] && sed 's#^cert *=.*#cert = /usr/local/share/host-ca-bundle.crt#' /etc/pip.conf >"$root/etc/pip.conf"
  # Debian marks its Python as externally managed; the upstream image does not.
  rm -f "$root"/usr/lib/python3.11/EXTERNALLY-MANAGED
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | "$DOCKER" import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/usr/local/share/host-ca-bundle.crt' \
    --change 'ENV PIP_CERT=/usr/local/share/host-ca-bundle.crt' \
    --change 'ENV REQUESTS_CA_BUNDLE=/usr/local/share/host-ca-bundle.crt' \
    --change "LABEL churn-mlops.stand-in=$want" \
    --change 'CMD ["python3"]' \
    - "$PYTHON_IMAGE" >/dev/null
  rm -rf "$root"
  log "$PYTHON_IMAGE: imported"
}

build_from_recipe() {
  local name="$1" folder="$2" want
  want="$(recipe_hash "$folder")"
  if [ "$(current_hash "$name")" = "$want" ]; then log "$name: up to date"; return; fi
  if is_upstream "$name"; then log "$name: the upstream image is here, kept"; return; fi
  log "$name: building from $folder/"
  DOCKER_BUILDKIT=1 "$DOCKER" build --quiet --label "churn-mlops.stand-in=$want" \
    --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" -t "$name" "$HERE/$folder" >/dev/null
  log "$name: built"
}

main() {
  "$DOCKER" info >/dev/null 2>&1 || { log "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-default socket})"; exit 1; }
  local started=$SECONDS
  build_python
  for entry in "${IMAGES[@]}"; do build_from_recipe "${entry%%|*}" "${entry##*|}"; done
  log "done in $((SECONDS - started)) s"
}

case "${1:-}" in
  --list) printf '%s\n' "$PYTHON_IMAGE"; for entry in "${IMAGES[@]}"; do echo "${entry%%|*}"; done ;;
  -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' ;;
  "") main ;;
  *) log "unknown argument: $1 (try --help)"; exit 2 ;;
esac
