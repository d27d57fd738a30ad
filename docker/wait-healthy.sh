#!/usr/bin/env bash
# Wait until the containers of a compose project are healthy (or running, for those without a health check), the
# same way with `docker compose` v2 and `docker-compose` v1 (which has no `up --wait`). Prints how long each service
# took; on failure prints the state and the last log lines of each service that is not healthy, and exits 1.
#
#   docker/wait-healthy.sh PROJECT [SERVICE ...]     (no service: every container of the project)
#
# WAIT_TIMEOUT (seconds, default 300); DOCKER (default: docker) is the client.
set -euo pipefail

DOCKER="${DOCKER:-docker}"
TIMEOUT="${WAIT_TIMEOUT:-300}"
[ $# -ge 1 ] || { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
project="$1"; shift

containers_of() {  # container ids of the project (optionally one service), running or not
  local filter=(--filter "label=com.docker.compose.project=$project")
  [ -n "${1:-}" ] && filter+=(--filter "label=com.docker.compose.service=$1")
  "$DOCKER" ps -a -q "${filter[@]}"
}

state_of() {  # healthy | starting | unhealthy | running | exited ... for one container
  "$DOCKER" inspect --format '{{ if .State.Health }}{{ .State.Health.Status }}{{ else }}{{ .State.Status }}{{ end }}' "$1"
}

service_of() {
  "$DOCKER" inspect --format '{{ index .Config.Labels "com.docker.compose.service" }}' "$1"
}

services=("$@")
if [ ${#services[@]} -eq 0 ]; then
  mapfile -t services < <(for id in $(containers_of); do service_of "$id"; done | sort -u)
fi
[ ${#services[@]} -gt 0 ] || { echo "wait-healthy: project $project has no containers" >&2; exit 1; }

started=$SECONDS
declare -A done_after=()
while :; do
  pending=() failed=()
  for service in "${services[@]}"; do
    [ -n "${done_after[$service]:-}" ] && continue
    ids="$(containers_of "$service")"
    if [ -z "$ids" ]; then pending+=("$service (no container)"); continue; fi
    ok=1
    for id in $ids; do
      case "$(state_of "$id")" in
        healthy|running) ;;
        unhealthy|exited|dead) failed+=("$service: $(state_of "$id")"); ok=0 ;;
        *) ok=0 ;;
      esac
    done
    if [ "$ok" = 1 ]; then
      done_after[$service]=$((SECONDS - started))
      echo "wait-healthy: $project/$service healthy after ${done_after[$service]} s"
    else
      pending+=("$service")
    fi
  done
  if [ ${#failed[@]} -gt 0 ] || { [ ${#pending[@]} -gt 0 ] && [ $((SECONDS - started)) -ge "$TIMEOUT" ]; }; then
    echo "wait-healthy: $project not healthy after $((SECONDS - started)) s: ${failed[*]:-} ${pending[*]:-}" >&2
    for service in "${services[@]}"; do
      [ -n "${done_after[$service]:-}" ] && continue
      for id in $(containers_of "$service"); do
        echo "---- $service ($(state_of "$id")), last log lines:" >&2
        "$DOCKER" logs --tail 40 "$id" 2>&1 | sed 's/^/    /' >&2
        "$DOCKER" inspect --format '{{ if .State.Health }}{{ range .State.Health.Log }}    health check: {{ .Output }}{{ end }}{{ end }}' "$id" 2>/dev/null | tail -n 3 >&2 || true
      done
    done
    exit 1
  fi
  [ ${#pending[@]} -eq 0 ] && break
  sleep 2
done
