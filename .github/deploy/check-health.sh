#!/usr/bin/env bash
# Run on the VM after a deploy: wait until /health reports the pushed RUN_ID ($1; empty: any model).
# HEALTH_RETRIES, HEALTH_DELAY, HEALTH_URL override the defaults (the unit tests use them).
set -u
expected="${1:-}"
retries="${HEALTH_RETRIES:-60}"
delay="${HEALTH_DELAY:-5}"
url="${HEALTH_URL:-http://127.0.0.1:9696/health}"
body=""
i=0
while [ "$i" -lt "$retries" ]; do
  i=$((i + 1))
  if body="$(curl -fsS --max-time 5 "$url" 2>&1)"; then
    if [ -z "$expected" ] || printf '%s' "$body" | grep -q "\"$expected\""; then
      echo "healthy, serving run ${expected:-<registry alias>}: $body"
      exit 0
    fi
  fi
  sleep "$delay"
done
echo "the API does not report RUN_ID ${expected:-<any>} after $retries tries; last answer: $body"
exit 1
