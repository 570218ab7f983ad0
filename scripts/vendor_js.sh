#!/usr/bin/env bash
# Re-fetch the dashboard's vendored browser assets from the npm registry and check them.
#
# The files are committed under src/tokenomy/dashboard/static/vendor/ so that the dashboard
# works offline right after a clone (no build step, no CDN). This script reproduces them:
# `npm pack <package>@<exact version>`, extract the one file needed, compare its sha256 with
# the pinned one, and copy it and the package's licence into place.
#
#   scripts/vendor_js.sh           # fetch, verify, install
#   scripts/vendor_js.sh --check   # only verify the committed files
set -euo pipefail
cd "$(dirname "$0")/.."
VENDOR=src/tokenomy/dashboard/static/vendor

# package@version | file inside the package | installed name | sha256 of that file
ASSETS=(
  "chart.js@4.5.1|package/dist/chart.umd.min.js|chart.umd.min.js|48444a82d4edcb5bec0f1965faacdde18d9c17db3063d042abada2f705c9f54a"
  "@fontsource-variable/inter@5.3.0|package/files/inter-latin-wght-normal.woff2|inter-latin-wght-normal.woff2|3100e775e8616cd2611beecfa23a4263d7037586789b43f035236a2e6fbd4c62"
)
LICENSES=(
  "chart.js@4.5.1|package/LICENSE.md|chart.js.LICENSE.md"
  "@fontsource-variable/inter@5.3.0|package/LICENSE|inter.LICENSE"
)

check() {  # file expected-sha
  local actual
  actual=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$actual" != "$2" ]; then
    echo "sha256 mismatch for $1: $actual, expected $2" >&2
    return 1
  fi
}

if [ "${1:-}" = "--check" ]; then
  for entry in "${ASSETS[@]}"; do
    IFS='|' read -r _ _ name sha <<<"$entry"
    check "$VENDOR/$name" "$sha"
  done
  echo "vendored assets match their pinned sha256"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unpack() {  # package@version → directory with the package extracted
  local spec=$1 dir
  dir="$work/$(echo "$spec" | tr '/@' '__')"
  if [ ! -d "$dir" ]; then
    mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "$spec" >/dev/null && tar xzf ./*.tgz)
  fi
  echo "$dir"
}

mkdir -p "$VENDOR"
for entry in "${ASSETS[@]}"; do
  IFS='|' read -r spec inner name sha <<<"$entry"
  dir=$(unpack "$spec")
  check "$dir/$inner" "$sha"
  cp "$dir/$inner" "$VENDOR/$name"
  echo "$spec → $VENDOR/$name"
done
for entry in "${LICENSES[@]}"; do
  IFS='|' read -r spec inner name <<<"$entry"
  dir=$(unpack "$spec")
  cp "$dir/$inner" "$VENDOR/$name"
done
