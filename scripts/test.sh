#!/bin/sh
# Installs, builds and runs every test: scripts/setup.sh (packages, ./build, the programs), then the
# rest of ./build (the unit tests), then the unit, CLI and end-to-end tests and the fuzz runs;
# prints a closing "N passed, N failed, N skipped" line. Exit status is non-zero when any test
# failed.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
ninja -C build
status=0
meson test -C build --print-errorlogs "$@" || status=$?
# A short run of every fuzz target (clang + libFuzzer, installed by the script when missing),
# unless only some tests were asked for.
rm -f build-fuzz/meson-logs/testlog.json
if [ $# -eq 0 ]; then
  ./tests/fuzz/ci_fuzz.sh || status=$?
fi
python3 - build/meson-logs/testlog.json build-fuzz/meson-logs/testlog.json <<'PY'
import json, os, sys
counts = {"OK": 0, "FAIL": 0, "SKIP": 0, "TIMEOUT": 0, "ERROR": 0, "EXPECTEDFAIL": 0, "UNEXPECTEDPASS": 0}
for log in sys.argv[1:]:
    if not os.path.exists(log):
        continue
    for line in open(log):
        line = line.strip()
        if line:
            r = json.loads(line)
            counts[r["result"]] = counts.get(r["result"], 0) + 1
failed = counts["FAIL"] + counts["TIMEOUT"] + counts["ERROR"] + counts["UNEXPECTEDPASS"]
print(f"{counts['OK'] + counts['EXPECTEDFAIL']} passed, {failed} failed, {counts['SKIP']} skipped")
PY
exit $status
