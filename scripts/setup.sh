#!/bin/sh
# Installs what dvol needs from Debian 12's packages and builds it into ./build.
# Run as root (or with sudo) on a fresh Debian 12 machine; safe to run again.
# With --deps-only it installs the packages and stops (bench/run.sh builds its own way).
set -eu
cd "$(dirname "$0")/.."

PACKAGES="build-essential meson ninja-build pkg-config git ca-certificates \
  libgit2-dev libzstd-dev libsqlite3-dev libssl-dev libcli11-dev libfmt-dev \
  nlohmann-json3-dev libcurl4-openssl-dev libmicrohttpd-dev catch2 python3 man-db"

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

[ "${1:-}" = "--deps-only" ] && exit 0

BUILDTYPE="${DVOL_BUILDTYPE:-debugoptimized}"
if [ ! -f build/build.ninja ]; then
  meson setup build --buildtype="$BUILDTYPE" --wrap-mode=nodownload
fi
ninja -C build
