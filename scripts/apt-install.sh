#!/bin/sh
# Installs Debian packages the way every script of this project does:
#
#   scripts/apt-install.sh [--no-start] [--log FILE] [--what TEXT] PKG...
#
# - only the packages not installed yet; with none missing it does nothing and needs no root;
# - without their recommended packages (--no-install-recommends), never asking anything
#   (DEBIAN_FRONTEND=noninteractive, kept conffiles), waiting for another apt or dpkg to finish
#   rather than failing on its lock;
# - apt-get install first, and `apt-get update` then a second try only when that fails (a fresh
#   machine has no package lists; old lists name versions the mirror no longer has);
# - apt's and dpkg's per-package output goes to a log file (FILE, or a temporary one), printed
#   only when the install fails; a temporary log is removed after a success;
# - --no-start: services of the packages are not started (a policy-rc.d that refuses them, for
#   the time of the install): the tests run their own servers;
# - as root, or through sudo when not root; when not root and sudo is missing, it says what to do
#   and exits 2 without trying.
#
# Prints one line saying what it installs (with TEXT as the reason), and a few on failure.
# Exit status: 0 when everything asked for is installed, 1 when apt-get failed, 2 when it could not
# run apt-get here (not root and no sudo, or no apt-get).
set -eu

no_start=0 log="" what=""
while [ $# -gt 0 ]; do
  case $1 in
    --no-start) no_start=1; shift ;;
    --log) log=$2; shift 2 ;;
    --what) what=" ($2)"; shift 2 ;;
    --) shift; break ;;
    -*) echo "apt-install: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--no-start] [--log FILE] [--what TEXT] PKG..." >&2; exit 2; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=""
for p in "$@"; do
  installed "$p" || missing="$missing $p"
done
[ -n "$missing" ] || exit 0
missing=${missing# }

if ! command -v apt-get >/dev/null 2>&1; then
  echo "apt-install: cannot install $missing$what: there is no apt-get here (dvol's scripts expect Debian 12)" >&2
  exit 2
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
  else
    {
      echo "Missing packages$what: $missing"
      echo "Installing them needs root, and sudo is not installed. Either"
      echo "  - run this again as root, or"
      echo "  - as root: apt-get install --no-install-recommends $missing"
      echo "    then run this again, or"
      echo "  - as root: apt-get install sudo && usermod -aG sudo $(id -un)"
      echo "    then log in again and run this again."
    } >&2
    exit 2
  fi
fi

keep_log=1
if [ -z "$log" ]; then
  log=$(mktemp "${TMPDIR:-/tmp}/dvol-apt.XXXXXX")
  keep_log=0
fi
: >"$log"

policy=/usr/sbin/policy-rc.d
added_policy=0
# shellcheck disable=SC2317  # run by the trap
cleanup() {
  if [ "$added_policy" = 1 ]; then $SUDO rm -f "$policy"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ "$no_start" = 1 ] && [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod 0755 "$policy" && added_policy=1
fi

# `env` puts the variable inside sudo, which would drop it from its own environment.
run_apt() {
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=600 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" >>"$log" 2>&1 </dev/null
}

echo "installing $missing$what with apt-get (its output: $log)"
status=0
# $missing is a list of package names: split on purpose.
# shellcheck disable=SC2086
if ! run_apt install --no-install-recommends $missing; then
  echo "--- apt-get install failed; apt-get update and a second try" >>"$log"
  run_apt update || true
  # shellcheck disable=SC2086
  run_apt install --no-install-recommends $missing || status=$?
fi
still=""
for p in $missing; do
  installed "$p" || still="$still $p"
done
if [ "$status" -ne 0 ] || [ -n "$still" ]; then
  {
    echo "apt-install: installing$still$what failed (apt-get exit status $status); the end of its output ($log):"
    tail -n 40 "$log" | sed 's/^/  | /'
  } >&2
  exit 1
fi
[ "$keep_log" = 1 ] || rm -f "$log"
exit 0
