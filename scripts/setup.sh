#!/bin/sh
# Installs dvol's build dependencies from Debian 12's packages and builds the programs - the dvol
# command (with dvol mount, FUSE) and its Docker volume plugin - into ./build. Safe to run again.
#
#   scripts/setup.sh              packages, configure ./build, build the programs only
#   scripts/setup.sh --deps-only  packages only (bench/run.sh builds its own way)
#
# Packages: only those missing, without recommended packages (scripts/apt-install.sh); that needs
# root, or sudo when not root (a fresh Debian 12 has no sudo: run it as root then). With every
# package present it needs no root at all.
# ./build is configured with the tests (so that scripts/test.sh builds them into it), but only the
# programs are built here: `ninja -C build` builds the rest, the unit tests.
# DVOL_BUILDTYPE (default debugoptimized) is the build type when ./build is configured the first
# time.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="build-essential meson ninja-build pkg-config git ca-certificates \
  libgit2-dev libzstd-dev libsqlite3-dev libssl-dev libcli11-dev libfmt-dev \
  nlohmann-json3-dev libcurl4-openssl-dev libmicrohttpd-dev libfuse3-dev fuse3 catch2 python3 man-db"

# shellcheck disable=SC2086  # a list of package names
./scripts/apt-install.sh --what "dvol's build dependencies" $PACKAGES

[ "${1:-}" = "--deps-only" ] && exit 0

BUILDTYPE="${DVOL_BUILDTYPE:-debugoptimized}"
if [ ! -f build/build.ninja ]; then
  meson setup build --buildtype="$BUILDTYPE" --wrap-mode=nodownload
fi
# `programs`: dvol, and dvol-docker-plugin when it is configured (see meson.build).
ninja -C build programs
echo "setup: built ./build/cli/dvol$([ -x build/docker-plugin/dvol-docker-plugin ] && echo ' and ./build/docker-plugin/dvol-docker-plugin');" \
  "./scripts/test.sh builds and runs the tests"
