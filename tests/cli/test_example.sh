#!/usr/bin/env bash
# shellcheck disable=SC2016  # checks eval single-quoted tests on purpose
# The walkthrough in examples/ runs as documented against the built binary and a fresh store,
# and can be run again over its own leftovers.
HERE=$(cd "$(dirname "$0")" && pwd)
EXAMPLE=$HERE/../../examples/seed-walkthrough.sh
if [ ! -f "$EXAMPLE" ]; then
    echo "SKIP: examples/seed-walkthrough.sh does not exist"
    exit 77
fi
# shellcheck source=tests/cli/lib.sh
. "$HERE/lib.sh"

export DVOL  # the example takes the binary from $DVOL and the store from $DVOL_ROOT

expect_ok sh "$EXAMPLE" || abort
check "the walkthrough reports no failure" eval '[[ "$OUT$ERR" != *FAILED* ]]'
expect_stdout_contains "Store: $DVOL_ROOT"
expect_stdout_contains "Created volume demo"
expect_stdout_contains "HEAD is now at"
expect_stdout_contains "Switched to a new branch 'experiment'"
expect_stdout_contains "Author: "
check "the walkthrough worked in the given store" test -d "$DVOL_ROOT/volumes/demo/data"

expect_ok dvol list --json
json_check "the demo volume is left, active, on master" \
    '[(v["name"], v["active"], v["branch"]) for v in d] == [("demo", True, "master")]'
expect_ok dvol log --json demo
json_check "the demo volume ends at its first commit" \
    'len(d) == 1 and d[0]["message"] == "Known good state"'
expect_ok dvol branch demo
expect_stdout_eq $'  experiment\n* master'
expect_eq "the demo data" "balance=100" "$(cat "$DVOL_ROOT/volumes/demo/data/accounts.txt" 2>&1)"

# A second run removes the leftover volume and goes through again.
expect_ok sh "$EXAMPLE"
expect_stdout_contains "left from an earlier run"
expect_stdout_contains "Deleting volume 'demo'"
expect_ok dvol log --json demo
json_check "the second run starts from scratch" 'len(d) == 1'

# Another volume name.
expect_ok env VOLUME=tour2 sh "$EXAMPLE"
expect_ok dvol list --json
json_check "VOLUME picks the volume" 'sorted(v["name"] for v in d) == ["demo", "tour2"]'

finish
