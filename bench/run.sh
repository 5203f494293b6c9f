#!/usr/bin/env bash
# dvol benchmark: builds dvol in release mode, installs the peer tools from Debian, prepares the
# data sets and runs every tool on the same data in alternation; prints a markdown table.
#
#   bench/run.sh [--size small|full] [--runs N]
#                [--only pg|synth|files|pg-replaced|synth-replaced|smallfiles|big2g|big4g|remote-pg|remote-synth|remote-files|mount[,...]]
#                [--remote dir,s3] [--tools ...] [--record FILE]
#
# The remote-* sets push to and clone from a directory and a single-node Ceph RGW on 127.0.0.1,
# which bench.py starts from tests/e2e/rgw.sh (installing Ceph's packages when missing) and stops
# by its pid files at the end.
#
# BENCH_DIR (default /var/tmp/dvol-bench) holds the data sets and the stores; the data sets are
# kept between runs (they are generated from fixed seeds), the stores are not.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
top="$(cd "$here/.." && pwd)"

if [ "$(id -u)" != 0 ]; then
    echo "bench/run.sh must run as root (it installs packages, runs PostgreSQL as the postgres user and restores owners)" >&2
    exit 1
fi

# Peer tools and data-set tools, from Debian, only those missing.
need=()
command -v borg >/dev/null || need+=(borgbackup)
command -v restic >/dev/null || need+=(restic)
command -v rclone >/dev/null || need+=(rclone)
command -v git >/dev/null || need+=(git)
command -v rsync >/dev/null || need+=(rsync)
[ -x /usr/bin/time ] || need+=(time)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need+=(postgresql-contrib)
command -v python3 >/dev/null || need+=(python3)
/usr/bin/python3 -c 'import llfuse' 2>/dev/null || need+=(python3-llfuse)   # borg mount (--only mount), Debian's python
if [ ${#need[@]} -gt 0 ]; then
    "$top/scripts/apt-install.sh" --what "the benchmark's tools and data sets" "${need[@]}" >&2
fi

# dvol's build dependencies: the same list as the README's set-up.
"$top/scripts/setup.sh" --deps-only >&2

# dvol in release mode, in its own build directory.
builddir="$top/build-bench"
if [ ! -f "$builddir/build.ninja" ]; then
    echo "== meson setup $builddir (release)" >&2
    meson setup "$builddir" "$top" --buildtype=release --wrap-mode=nodownload -Dtests=false >&2
fi
echo "== building dvol (release)" >&2
ninja -C "$builddir" >&2

exec python3 "$here/bench.py" --dvol "$builddir/cli/dvol" "$@"
