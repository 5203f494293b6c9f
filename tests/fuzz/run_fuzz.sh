#!/bin/sh
# One short libFuzzer run, as the meson test 'fuzz-<target>' does it:
#   run_fuzz.sh <fuzzer> <make_seeds> <target> <seconds> <artifact dir> <tests/fuzz source dir>
# Seeds go to a fresh temporary corpus (removed afterwards), together with any saved
# reproducers tests/fuzz/crashes/<target>-*, so a crash found once fails this test until fixed.
# A new crashing input is kept as <artifact dir>/<target>-crash-<sha1> (or -oom-, -timeout-,
# -leak-); the exit status is libFuzzer's, non-zero on any crash. DVOL_FUZZ_SECONDS, when set,
# overrides <seconds>.
set -eu
if [ $# -ne 6 ]; then
  echo "usage: $0 <fuzzer> <make_seeds> <target> <seconds> <artifact dir> <source dir>" >&2
  exit 2
fi
fuzzer=$1 seeds=$2 target=$3 seconds=${DVOL_FUZZ_SECONDS:-$4} artifacts=$5 srcdir=$6

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dvol-fuzz-$target.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
"$seeds" "$tmp/seeds"
corpus="$tmp/seeds/$target"
for f in "$srcdir/crashes/$target"-*; do
  if [ -f "$f" ]; then cp "$f" "$corpus/"; fi
done
mkdir -p "$artifacts"

dict=""
if [ -f "$srcdir/$target.dict" ]; then dict="-dict=$srcdir/$target.dict"; fi

# -rss_limit_mb / -malloc_limit_mb turn a huge allocation into a reported "oom" crash.
status=0
# shellcheck disable=SC2086
"$fuzzer" -max_total_time="$seconds" -rss_limit_mb=512 -malloc_limit_mb=256 -timeout=10 \
  -print_final_stats=1 -artifact_prefix="$artifacts/$target-" $dict "$corpus" || status=$?
if [ "$status" -ne 0 ]; then
  echo "run_fuzz: $target failed (status $status); crash inputs in $artifacts:" >&2
  ls -l "$artifacts" >&2
fi
exit "$status"
