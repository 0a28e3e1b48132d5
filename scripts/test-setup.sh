#!/usr/bin/env bash
# System packages the test suite needs that pip cannot provide: headless Chromium (the
# report-page test) and the PostgreSQL server binaries (the store's tests start a private
# throwaway cluster; Debian keeps initdb/pg_ctl in /usr/lib/postgresql/<ver>/bin, off PATH).
# Installs only what is missing; quiet when all is present.
set -euo pipefail
have_initdb() {
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
have_initdb || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
