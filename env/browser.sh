#!/usr/bin/env bash
# What the demo's browser test needs: Debian's chromium (apt) and npm playwright-core to drive it
# (tests/app/browser/package-lock.json, no bundled browser download). Idempotent and quick when both are
# there. Without root or apt it prints how to install chromium and carries on; the browser test then
# fails with the same hint (set SRICE_SKIP_BROWSER=1 to skip it on such a machine).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[browser] %s\n' "$*" >&2; }

if ! command -v chromium >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing chromium (apt) ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # fonts-dejavu-core: readable text in screenshots on minimal images
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
  else
    log "chromium not found and cannot apt-get install it here: run 'sudo apt-get install chromium'"
  fi
fi

if command -v npm >/dev/null; then
  dir=tests/app/browser
  stamp=$(sha256sum "$dir/package-lock.json" | cut -c1-16)
  if [[ -f $dir/node_modules/.srice-stamp && $(cat "$dir/node_modules/.srice-stamp") == "$stamp" ]]; then
    log "playwright-core up to date ($stamp)"
  else
    log "installing playwright-core (npm ci) ..."
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    echo "$stamp" >"$dir/node_modules/.srice-stamp"
  fi
else
  log "npm not found: install Node.js >= 20 for the browser test"
fi
