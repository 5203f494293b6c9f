#!/bin/sh
# Installs, builds and runs every test: scripts/setup.sh (packages, ./build, the programs), then the
# rest of ./build (the unit tests) and `meson test -C build` (unit, CLI and end-to-end tests, which
# may install docker.io and PostgreSQL), and beside those tests/fuzz/ci_fuzz.sh (a short run of
# each fuzz target, built with clang into ./build-fuzz; its output is printed after meson's).
# Prints the slowest tests and a closing "N passed, N failed, N skipped" line; the exit status is
# non-zero when any test failed.
#
# Arguments go to `meson test -C build` only (./scripts/test.sh unit-tree runs that one test), and
# then the fuzz runs are left out. DVOL_TEST_LONG=1 gives the long forms of the CLI tests' loops.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
status=0

# The fuzz targets build and run beside the rest: builds wait on linking and the CLI and end-to-end
# tests on fsync, sleeps and daemons often enough that the two together take little more than the
# rest alone. In a session of its own (setsid), so that it can be stopped whole if this script is.
rm -f build-fuzz/meson-logs/testlog.json
fuzz_pid=""
fuzz_log=""
# shellcheck disable=SC2317  # run by the trap
stop_fuzz() {
  if [ -n "$fuzz_pid" ]; then
    kill -TERM "-$fuzz_pid" 2>/dev/null || true  # its process group: ci_fuzz.sh, meson, the fuzzers
    wait "$fuzz_pid" 2>/dev/null || true
    fuzz_pid=""
  fi
  [ -z "$fuzz_log" ] || rm -f "$fuzz_log"
}
trap stop_fuzz EXIT
trap 'exit 130' INT TERM
if [ $# -eq 0 ]; then
  fuzz_log=$(mktemp "${TMPDIR:-/tmp}/dvol-fuzz.XXXXXX")
  setsid ./tests/fuzz/ci_fuzz.sh >"$fuzz_log" 2>&1 </dev/null &
  fuzz_pid=$!
fi

ninja -C build
meson test -C build --print-errorlogs "$@" || status=$?

if [ -n "$fuzz_pid" ]; then
  fuzz_status=0
  wait "$fuzz_pid" || fuzz_status=$?
  fuzz_pid=""
  echo "--- tests/fuzz/ci_fuzz.sh (ran beside the build and the meson tests)"
  cat "$fuzz_log"
  [ "$fuzz_status" -eq 0 ] || status=$fuzz_status
fi
python3 - build/meson-logs/testlog.json build-fuzz/meson-logs/testlog.json <<'PY'
import json, os, sys
counts = {"OK": 0, "FAIL": 0, "SKIP": 0, "TIMEOUT": 0, "ERROR": 0, "EXPECTEDFAIL": 0, "UNEXPECTEDPASS": 0}
durations = []
for log in sys.argv[1:]:
    if not os.path.exists(log):
        continue
    for line in open(log):
        line = line.strip()
        if line:
            r = json.loads(line)
            counts[r["result"]] = counts.get(r["result"], 0) + 1
            durations.append((r.get("duration", 0), r["name"].split(" / ")[-1]))
durations.sort(reverse=True)
print("slowest: " + ", ".join(f"{name} {d:.0f} s" for d, name in durations[:6]))
failed = counts["FAIL"] + counts["TIMEOUT"] + counts["ERROR"] + counts["UNEXPECTEDPASS"]
print(f"{counts['OK'] + counts['EXPECTEDFAIL']} passed, {failed} failed, {counts['SKIP']} skipped")
PY
exit $status
