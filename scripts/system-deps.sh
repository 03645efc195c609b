#!/usr/bin/env bash
# Debian packages the full test suite needs: Chromium for the browser tests, and the
# MariaDB client headers that mysqlclient compiles against. Installs only what is missing.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg -s default-libmysqlclient-dev >/dev/null 2>&1 || missing+=(default-libmysqlclient-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
