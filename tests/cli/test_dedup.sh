#!/usr/bin/env bash
# Identical content is stored once across volumes, and a small change inside a big file costs
# about the size of the change, not of the file.
# shellcheck source=tests/cli/lib.sh disable=SC2016  # checks eval single-quoted tests on purpose
. "$(dirname "$0")/lib.sh"

SIZE=$((100 * MIB))

avail_kib=$(df -Pk "$TEST_TMP" | awk 'NR == 2 { print $4 }')
if [ "$avail_kib" -lt $((600 * 1024)) ]; then
    echo "SKIP: needs 600 MiB free in ${TMPDIR:-/tmp}, has $((avail_kib / 1024)) MiB"
    exit 77
fi

objects_size() { du -sb "$DVOL_ROOT/objects" | cut -f1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }

random_file "$TEST_TMP/work/big" "$SIZE"
ORIG_SUM=$(sha256sum <"$TEST_TMP/work/big")

expect_ok dvol init one || abort
expect_ok dvol init two || abort
ONE=$(dvol path one)
TWO=$(dvol path two)
mkdir -p "$ONE/db" "$TWO/elsewhere/deeper"
cp "$TEST_TMP/work/big" "$ONE/db/big.dat"
cp "$TEST_TMP/work/big" "$TWO/elsewhere/deeper/other-name.bin"
echo "small one" >"$ONE/small"
echo "small two" >"$TWO/small"

START=$(objects_size)
expect_ok dvol commit -m "one" one || abort
AFTER_ONE=$(objects_size)
echo "objects: $(mib "$START") empty, $(mib "$AFTER_ONE") after the first volume"
check "the first copy is stored (random data does not compress): $(mib "$AFTER_ONE")" \
    test "$AFTER_ONE" -ge $((SIZE * 95 / 100))
check "the first copy is stored once: $(mib "$AFTER_ONE")" test "$AFTER_ONE" -lt $((SIZE * 115 / 100))

expect_ok dvol commit -m "two" two || abort
AFTER_TWO=$(objects_size)
echo "objects: $(mib "$AFTER_TWO") after both volumes"
check "two volumes with the same 100 MiB store it once: $(mib "$AFTER_TWO") < 1.15 x 100 MiB" \
    test "$AFTER_TWO" -lt $((SIZE * 115 / 100))
check "the second volume adds under 1 MiB: $(mib $((AFTER_TWO - AFTER_ONE)))" \
    test $((AFTER_TWO - AFTER_ONE)) -lt "$MIB"

# A commit with nothing changed adds next to nothing.
expect_ok dvol commit -m "again" one
AFTER_AGAIN=$(objects_size)
check "an unchanged commit adds under 64 KiB: $((AFTER_AGAIN - AFTER_TWO)) bytes" \
    test $((AFTER_AGAIN - AFTER_TWO)) -lt $((64 * 1024))

# Change 1 MiB in the middle of the file.
head -c "$MIB" /dev/urandom |
    dd of="$ONE/db/big.dat" bs="$MIB" seek=50 conv=notrunc status=none
expect_eq "the size is unchanged" "$SIZE" "$(stat -c %s "$ONE/db/big.dat")"
CHANGED_SUM=$(sha256sum <"$ONE/db/big.dat")
check "the content did change" test "$CHANGED_SUM" != "$ORIG_SUM"
expect_ok dvol status one
expect_stdout_contains "modified:   db/big.dat"
expect_ok dvol commit -m "changed 1 MiB" one || abort
CHANGED_ID=$OUT
AFTER_CHANGE=$(objects_size)
GROWTH=$((AFTER_CHANGE - AFTER_AGAIN))
echo "objects: $(mib "$AFTER_CHANGE") after changing 1 MiB (+$(mib "$GROWTH"))"
# Chunks average 1 MiB (at most 4 MiB): the changed range costs the chunks it touches and the
# few after it until the cuts fall back in step.
check "changing 1 MiB of 100 MiB stores under 8 MiB more: +$(mib "$GROWTH")" test "$GROWTH" -lt $((8 * MIB))
check "and at least the changed MiB: +$(mib "$GROWTH")" test "$GROWTH" -ge "$MIB"

# The other volume is untouched.
expect_eq "volume two still has the original bytes" "$ORIG_SUM" "$(sha256sum <"$TWO/elsewhere/deeper/other-name.bin")"

# Back and forth.
expect_ok dvol reset --hard HEAD^ one
expect_eq "reset --hard HEAD^ brings back the original bytes" "$ORIG_SUM" "$(sha256sum <"$ONE/db/big.dat")"
expect_ok dvol status one
expect_stdout_contains "nothing to commit"
expect_ok dvol reset --hard HEAD~0 one
expect_eq "still the original bytes" "$ORIG_SUM" "$(sha256sum <"$ONE/db/big.dat")"
expect_ok dvol log --json one
json_check "the changed commit left the branch" '[e["message"] for e in d] == ["again", "one"]'
FINAL=$(objects_size)
check "resetting stores nothing: $(mib "$FINAL")" test "$FINAL" -eq "$AFTER_CHANGE"

# Rewriting the file in place with the same bytes changes nothing in the store.
cp "$TEST_TMP/work/big" "$ONE/db/big.dat"
expect_ok dvol commit -m "same bytes rewritten" one
check "a rewrite with the same bytes stores under 64 KiB: $(($(objects_size) - FINAL)) bytes" \
    test $(($(objects_size) - FINAL)) -lt $((64 * 1024))
expect_ok dvol reset --hard "$CHANGED_ID" one
expect_eq "reset --hard to the changed commit's id brings the changed bytes" "$CHANGED_SUM" "$(sha256sum <"$ONE/db/big.dat")"
expect_ok dvol reset --hard HEAD^ one
expect_eq "and HEAD^ the original ones again" "$ORIG_SUM" "$(sha256sum <"$ONE/db/big.dat")"

finish
