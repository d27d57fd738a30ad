#!/bin/sh
# The upstream entrypoint's template step: each /etc/nginx/templates/X.conf.template becomes /etc/nginx/conf.d/X.conf,
# with only the environment's variables substituted (nginx's own $uri and the like stay).
set -eu
if [ "${1:-}" = "nginx" ] && [ -d /etc/nginx/templates ]; then
    defined="$(printf '${%s} ' $(env | cut -d= -f1))"
    for template in /etc/nginx/templates/*.template; do
        [ -f "$template" ] || continue
        output="/etc/nginx/conf.d/$(basename "$template" .template)"
        envsubst "$defined" <"$template" >"$output"
        echo "$0: rendered $template to $output"
    done
fi
exec "$@"
