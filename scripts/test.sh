#!/bin/sh
# Installs, builds and runs every test:
#   1. scripts/setup.sh: packages, ./build configured, the programs (dvol, the Docker plugin);
#   2. the CLI and end-to-end tests (`meson test -C build --suite cli --suite e2e`), which need
#      only the programs, while the unit tests build beside them (ninja -C build);
#   3. the unit tests and the tests that run the unit test binary against a real S3 gateway and
#      sshd (`meson test -C build --suite unit --suite conformance`);
#   and beside all of these tests/fuzz/ci_fuzz.sh: the fuzz targets built with clang into
#   ./build-fuzz, then a short run of each.
# The tests may install docker.io and PostgreSQL, the fuzz step clang. The output of the unit
# tests' build and of the fuzz step is printed when they end. Then the slowest tests and a
# closing "N passed, N failed, N skipped" line; the exit status is non-zero when any test failed.
#
# With arguments it builds everything, then passes them to one `meson test -C build` run, and
# leaves the fuzz runs out: ./scripts/test.sh unit-tree runs that one test.
# DVOL_TEST_LONG=1 gives the long forms of the CLI tests' loops.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
status=0
logs=build/meson-logs
rm -f "$logs"/testlog*.json build-fuzz/meson-logs/testlog.json

# Jobs in the background, each in a session of its own (setsid) so that it can be stopped whole
# (by its process group) if this script is interrupted.
fuzz_pid="" unit_build_pid="" tmp=""
# shellcheck disable=SC2317  # run by the trap
stop_jobs() {
  for pid in $fuzz_pid $unit_build_pid; do
    kill -TERM "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [ -z "$tmp" ] || rm -rf "$tmp"
}
trap stop_jobs EXIT
trap 'exit 130' INT TERM

if [ $# -gt 0 ]; then
  ninja -C build
  meson test -C build --print-errorlogs "$@" || status=$?
else
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/dvol-test.XXXXXX")
  # The fuzz step waits on its links and then runs the fuzzers for a fixed time, the unit tests'
  # build on its last compiles and link, the CLI and end-to-end tests on fsync, sleeps and
  # daemons: side by side they keep both cores busy.
  setsid ./tests/fuzz/ci_fuzz.sh >"$tmp/fuzz.log" 2>&1 </dev/null &
  fuzz_pid=$!
  setsid ninja -C build >"$tmp/unit-build.log" 2>&1 </dev/null &
  unit_build_pid=$!
  echo "test: the unit tests build and the fuzz targets build and run beside the CLI and e2e tests"
  meson test -C build --no-rebuild --print-errorlogs --suite cli --suite e2e --logbase testlog-cli-e2e ||
    status=$?

  unit_build_status=0
  wait "$unit_build_pid" || unit_build_status=$?
  unit_build_pid=""
  echo "--- ninja -C build (the unit tests, built beside the tests above)"
  if [ "$unit_build_status" -eq 0 ]; then
    tail -n 3 "$tmp/unit-build.log"
    meson test -C build --no-rebuild --print-errorlogs --suite unit --suite conformance --logbase testlog-unit || status=$?
  else
    cat "$tmp/unit-build.log"
    echo "test: the unit tests did not build (ninja exit status $unit_build_status)"
    status=1
  fi

  fuzz_status=0
  wait "$fuzz_pid" || fuzz_status=$?
  fuzz_pid=""
  echo "--- tests/fuzz/ci_fuzz.sh (ran beside the tests above)"
  cat "$tmp/fuzz.log"
  [ "$fuzz_status" -eq 0 ] || status=$fuzz_status
fi

python3 - "$logs"/testlog*.json build-fuzz/meson-logs/testlog.json <<'PY'
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
