#!/usr/bin/env bash
# Run on the VM: check out exactly the tested commit ($1, GITHUB_SHA) in the clone ($2, default ~/churn-mlops),
# then restart the serving side. Never a pull of main: it may have moved past the commit the tests passed on.
set -euo pipefail
sha="$1"
cd "${2:-$HOME/churn-mlops}"
git fetch --quiet origin "$sha"
git checkout --quiet --detach "$sha"
test "$(git rev-parse HEAD)" = "$sha" || { echo "checked out $(git rev-parse HEAD), expected $sha" >&2; exit 1; }
make stop-serve env=cloud
make start-serve env=cloud
